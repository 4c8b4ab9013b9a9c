"""The flow contract: steps with forms, state carried between steps, human error messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from django import forms

from accounts.models import UpstreamAccount


class FlowError(Exception):
    """A problem the person can fix, with a message written for them (shown above the form).

    `field` attaches it to one form field instead; `detail` carries the upstream's own text.
    """

    def __init__(self, message: str, *, field: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.detail = detail[:500]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    title: str
    form_class: type[forms.Form]
    help: str = ""
    # A step that shows more than a form (e.g. "open this URL, type this code, then continue")
    # names its own template (same context as accounts/flow_step.html). Empty = the generic page.
    template: str = ""


class AccountFlow(ABC):
    """One way to add an account (e.g. "API key", "OAuth device code", "import auth.json").

    State is a JSON-able dict the views keep between steps, encrypted in the session (it may
    hold a secret the person typed). A flow never writes the database before `finish`.
    """

    key: ClassVar[str]  # unique, e.g. "openai_compat.api_key"
    provider: ClassVar[str]  # accounts.models.ProviderKind value
    title: ClassVar[str]
    description: ClassVar[str] = ""
    steps: ClassVar[tuple[Step, ...]]

    def form_kwargs(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        """Extra keyword arguments for the step's form (e.g. choices discovered earlier)."""
        return {}

    def initial(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        return {}

    def context(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        """Extra template context for the step (e.g. a verification URL and user code from the
        state); secrets must never be returned here, the page is rendered as HTML."""
        return {}

    @abstractmethod
    def process(self, step: Step, data: dict[str, Any], state: dict[str, Any]) -> None:
        """Validate the step's cleaned data against the outside world; update `state`.

        Raise FlowError with a human message when the person must change something.
        """

    @abstractmethod
    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        """Create the account through accounts.services (which writes the action log)."""
