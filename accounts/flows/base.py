"""The flow contract: steps with forms, state carried between steps, human error messages."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from django import forms

from accounts.flows.fields import allow_duplicate_field as allow_duplicate_field  # providers import it from here too
from accounts.models import UpstreamAccount
from infra.redact import redact


class FlowError(Exception):
    """A problem the person can fix, with a message written for them (shown above the form).

    `field` attaches it to one form field instead; `detail` carries the upstream's own text.
    """

    def __init__(self, message: str, *, field: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.detail = redact(detail)[:500]  # upstream text shown in the admin: no secrets


def duplicate_error(exc: Exception, *, ended: bool) -> FlowError:
    """A refused duplicate, said with what to do next."""
    again = " Start again and tick “Add even if already added” to add it anyway." if ended else ""
    return FlowError(f"{exc}{again}")


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
    provider: ClassVar[str]  # the registered provider kind (accounts.providers)
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


# Never poll an auth server faster than this, whatever interval it announced.
MIN_POLL_SECONDS = 2.0


class DeviceWaitForm(forms.Form):
    """No input: the person approves at the upstream, then continues (or the page re-polls)."""


class DeviceCodeFlow(AccountFlow):
    """Shared rules of device-code logins (GitLab, Codex): the approve step, what its page
    shows and when polling stops. Providers keep their own wording, links and error mapping."""

    APPROVE = "approve"

    @classmethod
    def approve_step(cls, upstream: str, help_text: str, *, template: str) -> Step:
        """The step after the code is issued: no input; `template` shows the code and link."""
        return Step(cls.APPROVE, f"Approve in {upstream}", DeviceWaitForm, help_text, template=template)

    def process(self, step: Step, data: dict[str, Any], state: dict[str, Any]) -> None:
        # Only the first step asks for a code; the poll happens in finish(), which is allowed
        # to create the account.
        if step.name == self.steps[0].name:
            self.device_start(data, state)

    @abstractmethod
    def device_start(self, data: dict[str, Any], state: dict[str, Any]) -> None:
        """Ask the upstream for a code with the first form's `data`; keep what polling needs in `state`."""

    def device_links(self, state: dict[str, Any]) -> dict[str, str]:
        """The links the approve page shows (the provider's names for them)."""
        return {}

    def context(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        return self.device_context(state, **self.device_links(state)) if step.name == self.APPROVE else {}

    def device_context(self, state: dict[str, Any], **links: str) -> dict[str, Any]:
        return {
            "user_code": state.get("user_code", ""),
            **links,
            "poll_seconds": max(MIN_POLL_SECONDS, float(state.get("interval") or 5)),
            "expires_in": max(0, int(float(state.get("expires_at") or 0) - time.time())),
            # After expiry, refusal or a failed exchange the code is spent: stop re-polling.
            "ended": bool(state.get("ended")),
        }

    def device_poll_begin(self, state: dict[str, Any], *, expired_message: str | None = None) -> None:
        """Refuse a poll on a spent code; with `expired_message`, also stop on our own clock
        (some auth servers keep answering "pending" for a dead code)."""
        if state.get("ended"):
            raise FlowError("This login attempt has ended. Start again to get a new code.")
        if expired_message is not None and time.time() > float(state.get("expires_at") or 0):
            state["ended"] = True
            raise FlowError(expired_message)
        state["polls"] = int(state.get("polls", 0)) + 1
