"""The provider registry: the one place that knows which upstream kinds exist.

A provider is a Django app under `executors/<name>/` holding everything that kind of upstream
is (login flows and their templates, credential refresh and its Celery task, the executor,
its error table, catalog facts, admin extras). Its AppConfig.ready() registers one Provider
here; adding the app to INSTALLED_APPS is the only line outside its folder.

accounts, routing, audit and the admin ask this registry and never name a provider: the
choices of `UpstreamAccount.provider` and `Credential.kind`, the guided flows, the board's
extra columns and buttons, the periodic tasks and the executor all come from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

    from accounts.flows.base import AccountFlow
    from accounts.models import UpstreamAccount


# The one credential kind the admin edits directly (a plain {"api_key": ...} secret); sign-in
# credentials are replaced by signing in again through the provider's flow.
API_KEY_KIND = "api_key"
# `credential_kinds` of a provider whose accounts hold just an API key.
API_KEY_CREDENTIALS: Mapping[str, str] = {API_KEY_KIND: "API key"}


@dataclass(slots=True)
class ProbeResult:
    """What an admin button ("Test now", "Refresh credential now") reports."""

    ok: bool
    message: str
    upstream_text: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BoardColumn:
    """A provider's extra read-only field on the account page (e.g. GitLab's gateway token)."""

    name: str  # unique across providers
    title: str
    value: Callable[[UpstreamAccount], str]


@dataclass(frozen=True, slots=True)
class Provider:
    kind: str  # the value stored in UpstreamAccount.provider
    label: str  # what the admin shows
    # An executors.base.Executor. Only routing calls it (through executors.registry).
    executor: Any
    credential_kinds: Mapping[str, str]  # Credential.kind values this provider stores -> label
    flows: tuple[type[AccountFlow], ...] = ()
    # Catalog facts by model family (executors.base.ModelFacts fields) for this provider's
    # accounts, e.g. {"gpt-5.5": {"responses_only": True}}; admin catalog entries override them.
    model_facts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Celery beat entries: name -> {"task": ..., "schedule": seconds}.
    periodic_tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    probe: Callable[[UpstreamAccount], ProbeResult] | None = None  # "Test now"
    refresh: Callable[[UpstreamAccount], ProbeResult] | None = None  # "Refresh credential now"
    board_annotate: Callable[[QuerySet[UpstreamAccount]], QuerySet[UpstreamAccount]] | None = None
    board_columns: tuple[BoardColumn, ...] = ()
    # Models holding encrypted secrets besides Credential (re-encrypted by credentials_rotate).
    secret_models: tuple[type[Model], ...] = ()


_providers: dict[str, Provider] = {}


def provider_register(provider: Provider) -> None:
    existing = _providers.get(provider.kind)
    if existing is not None and existing is not provider:
        raise RuntimeError(f"two providers registered the kind {provider.kind!r}")
    _providers[provider.kind] = provider


def provider_get(kind: str) -> Provider | None:
    return _providers.get(kind)


def providers_all() -> list[Provider]:
    return list(_providers.values())


def provider_choices() -> list[tuple[str, str]]:
    """Choices of UpstreamAccount.provider (a callable, so migrations never list providers)."""
    return [(p.kind, p.label) for p in _providers.values()]


def credential_kind_choices() -> list[tuple[str, str]]:
    """Choices of Credential.kind: every registered provider's kinds, first label wins."""
    out: dict[str, str] = {}
    for p in _providers.values():
        for kind, label in p.credential_kinds.items():
            out.setdefault(kind, label)
    return list(out.items())
