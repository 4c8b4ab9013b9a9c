"""The small interface between routing and the provider executors.

Routing hands an executor an account and a parsed client request; the executor returns an
open upstream response (events or a whole body) or raises UpstreamError, which says whether
another account may be tried and how long this one should rest. Routing never branches on
provider names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from accounts.selectors import AccountInfo
from formats import Dialect, EncodeOptions, SseEvent, decode_request, encode_request, hosted_tools_drop
from formats.compaction import compaction_expand, has_compaction_items, summarise_request
from infra.redact import redact, redact_values

# UpstreamCall.memo key: hosted tool types the last attempt's translation dropped.
DROPPED_TOOLS = "dropped_tools"

_OPTION_KEYS = ("chat_developer_role", "chat_max_tokens_field", "default_max_tokens")


def encode_options_for(account: AccountInfo) -> EncodeOptions:
    """Translation knobs an admin sets per account in provider_config
    (docs/protocols/translation.md#responses-to-chat), e.g. `chat_developer_role` for a Chat
    server that accepts role "developer"."""
    config = account.provider_config or {}
    chosen = {k: config[k] for k in _OPTION_KEYS if k in config}
    return EncodeOptions(**chosen) if chosen else _DEFAULT_OPTIONS


_DEFAULT_OPTIONS = EncodeOptions()


def translate_for(
    canonical: dict[str, Any], target: Dialect, options: EncodeOptions
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The canonical request in `target`'s dialect, and the hosted tools dropped on the way
    (a Chat or Messages target cannot run them; offered-only ones are dropped, forced ones
    raise UnsupportedFeature)."""
    dropped: tuple[str, ...] = ()
    if target is not Dialect.RESPONSES:
        canonical, dropped = hosted_tools_drop(canonical)
    return encode_request(canonical, target, options=options), dropped


def compaction_translate(
    canonical: dict[str, Any], target: Dialect, options: EncodeOptions, *, summarise: bool
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A request with compaction items (or asking for compaction) for a target that does not
    compact natively: the proxy's items expanded, a Codex blob refused (UnsupportedFeature),
    and with `summarise` the proxy's summarising turn (docs/protocols/compaction.md)."""
    expanded = compaction_expand(canonical, keep_foreign=False)
    if summarise:
        expanded = summarise_request(expanded)
    if target is Dialect.RESPONSES:
        return dict(expanded), ()
    return translate_for(expanded, target, options)


def compaction_memo_key(target: Dialect, options: EncodeOptions, *, summarise: bool) -> str:
    return f"compaction:{summarise}:{target.value}:{options!r}"


def translation_memo_key(target: Dialect, options: EncodeOptions) -> str:
    """Where a prepared translation of the request to `target` is kept in the request memo."""
    return f"translation:{target.value}:{options!r}"


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """Catalog facts about the upstream model that change how an executor calls it."""

    responses_only: bool = False  # Chat-dialect upstreams must use their /responses endpoint
    prefer_websockets: bool = False
    context_window: int | None = None


@dataclass(frozen=True, slots=True)
class Continuation:
    """The request continues a response the client already saw (`previous_response_id` on a
    client WebSocket): the first `items` input items are that response's whole conversation
    (its input and output), the rest are new. An executor whose upstream still holds that
    response on a kept connection may send only the new items."""

    response_id: str
    items: int


class UpstreamSession:
    """Transport state an executor may keep across the requests of one client conversation
    (a client WebSocket), e.g. an open upstream socket. Executors own their slot (keyed by
    their provider name); routing only closes the session when the conversation ends."""

    __slots__ = ("slots",)

    def __init__(self) -> None:
        self.slots: dict[str, Any] = {}

    async def aclose(self) -> None:
        slots, self.slots = self.slots, {}
        for value in slots.values():
            close = getattr(value, "aclose", None)
            if close is not None:
                await close()


@dataclass(slots=True)
class UpstreamCall:
    account: AccountInfo
    dialect: Dialect  # the client's dialect
    body: dict[str, Any]  # parsed, validated client body (in `dialect`)
    stream: bool
    upstream_model: str
    # Client request headers (lower-case names), e.g. session ids some providers key on.
    client_headers: Mapping[str, str] = field(default_factory=dict)
    # Opaque provider-owned state carried by a Responses snapshot (previous_response_id);
    # only the executor that wrote it reads its keys.
    provider_meta: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    facts: ModelFacts = field(default_factory=ModelFacts)
    # Shared by every attempt of one client request so the canonical form is decoded once.
    # `body_for` also leaves the hosted tools it dropped for this attempt under DROPPED_TOOLS
    # (every executor calls it once per attempt, so after dispatch it describes the answer).
    memo: dict[str, Any] = field(default_factory=dict)
    # Set for requests that arrive on a client WebSocket (see UpstreamSession, Continuation).
    session: UpstreamSession | None = None
    continuation: Continuation | None = None
    # Context compaction asked for (docs/protocols/compaction.md): "trigger" (a Responses turn
    # whose input ends with a `compaction_trigger` item) or "endpoint" (`/v1/responses/compact`).
    # An executor with `native_compaction` serves it itself; for the others `body_for` builds
    # the proxy's summarising turn and routing wraps its text into a compaction item.
    compaction: str | None = None

    @property
    def canonical(self) -> dict[str, Any]:
        """The client request in canonical (Responses) form, decoded once per request."""
        canonical = self.memo.get("canonical")
        if canonical is None:
            canonical = decode_request(self.dialect, self.body)
            self.memo["canonical"] = canonical
        return canonical

    def body_for(self, target: Dialect, *, native_compaction: bool = False) -> dict[str, Any]:
        """The request body in the upstream's dialect, with the upstream model name.

        Same dialect: a shallow copy (bytes-level passthrough stays possible). Otherwise the
        pure translators in `formats` convert via the canonical (Responses) form, with the
        account's per-target knobs (`encode_options_for`); they raise UnsupportedFeature for
        anything the target cannot express. Hosted tools a Chat or Messages target cannot run
        are dropped when only offered (recorded under DROPPED_TOOLS), refused when forced.

        Compaction (docs/protocols/compaction.md): the proxy's own compaction items become summary
        messages; a Codex blob passes only to a `native_compaction` target (else
        UnsupportedFeature); a compaction request becomes the summarising turn unless native.
        """
        if self.compaction is not None or has_compaction_items(self.body):
            return self._compaction_body(target, native_compaction)
        dropped: tuple[str, ...] = ()
        if target is self.dialect:
            body = dict(self.body)
        else:
            options = encode_options_for(self.account)
            # A large body's translation was prepared off the event loop (routing.intake).
            warm = self.memo.get(translation_memo_key(target, options))
            translated, dropped = warm if warm is not None else translate_for(self.canonical, target, options)
            body = dict(translated)
        self.memo[DROPPED_TOOLS] = dropped
        body["model"] = self.upstream_model
        return body

    def _compaction_body(self, target: Dialect, native: bool) -> dict[str, Any]:
        dropped: tuple[str, ...] = ()
        if native:  # the upstream compacts itself and reads its own blobs; a Responses target
            body = compaction_expand(self.canonical, keep_foreign=True)
        else:
            options = encode_options_for(self.account)
            summarise = self.compaction is not None
            # A large body's was prepared off the event loop (routing.intake.translations_warm).
            warm = self.memo.get(compaction_memo_key(target, options, summarise=summarise))
            body, dropped = (
                warm if warm is not None else compaction_translate(self.canonical, target, options, summarise=summarise)
            )
        body = dict(body)
        self.memo[DROPPED_TOOLS] = dropped
        body["model"] = self.upstream_model
        return body


class UpstreamStreamError(Exception):
    """The upstream stream broke after it started (cut, malformed event, error event).

    The message is redacted here: it reaches the client's error event and the usage record."""

    def __init__(self, message: str, code: str = "upstream_stream_error") -> None:
        super().__init__(redact(message))
        self.code = code


class CooldownScope(StrEnum):
    FAMILY = "family"  # rate limits, quota windows: (account, model family)
    MODEL = "model"  # "model unsupported on this account": (account, model)
    ACCOUNT = "account"  # transient account-wide trouble (5xx storms, network)


class UpstreamError(Exception):
    """An upstream failure, classified by the executor (routing never parses provider errors).

    retryable: another account may serve the same request (429, 5xx, network).
    cooldown: seconds to skip this account for `cooldown_scope`; None = no cooldown.
    account_state: a persistent state that needs a human (accounts.models.AccountState value,
        e.g. "auth_failed", "not_entitled", "quota_exhausted"); None = none.
    refresh_credential: the credential looks stale (e.g. 401): dispatch refreshes it once and
        retries the same account once; the other fields apply if that does not help.

    The message is upstream text on its way to the client, the usage record, the account's
    last error and the admin: it is redacted here, at construction (infra.redact), and
    dispatch also masks the account's own secret values (`redact_values`).
    """

    def __init__(
        self,
        *,
        status: int,
        message: str,
        code: str = "upstream_error",
        error_type: str | None = None,
        retryable: bool,
        cooldown: float | None = None,
        request_id: str = "",
        client_status: int | None = None,
        cooldown_scope: CooldownScope = CooldownScope.FAMILY,
        account_state: str | None = None,
        refresh_credential: bool = False,
        backoff: bool = False,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.error_type = error_type
        self.retryable = retryable
        self.cooldown = cooldown
        self.request_id = request_id
        # What the client sees when this is the final answer (e.g. an upstream 400 is the
        # client's own fault and passes as 400; a 401 on our credential becomes 502).
        self.client_status = client_status if client_status is not None else status
        self.cooldown_scope = cooldown_scope
        self.account_state = account_state
        self.refresh_credential = refresh_credential
        # No reset hint: cool down with escalating backoff (used when `cooldown` is None).
        self.backoff = backoff

    def redact_values(self, values: list[str]) -> UpstreamError:
        """Mask the given secret values (the account's own credential) in the message."""
        self.message = redact_values(self.message, values)
        self.args = (self.message,)
        return self


@dataclass(slots=True)
class UpstreamResponse:
    """An open upstream answer. Exactly one of `events` (stream) or `body` is set."""

    dialect: Dialect  # dialect of the payload
    request_id: str = ""
    events: AsyncIterator[SseEvent] | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Provider state to keep with the Responses snapshot of this answer (see UpstreamCall).
    provider_meta: dict[str, Any] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)

    async def aclose(self) -> None:
        for closer in self._closers:
            await closer()
        self._closers.clear()


class Executor(Protocol):
    provider: str
    # How the upstream charges: "metered" (per token, e.g. an API key) or "subscription" (a
    # flat fee: ChatGPT plans, GitLab Duo seats). Pricing's default for the provider's usage.
    billing: str
    # Optional `native_compaction = True`: the upstream compacts itself (UpstreamCall.compaction);
    # without it routing emulates compaction with a summarising turn (docs/protocols/compaction.md).

    async def open(self, call: UpstreamCall) -> UpstreamResponse:
        """Send the request once. Raises UpstreamError (classified from the provider's error
        table, executors.errors) before any event was produced; never retries a failure itself:
        dispatch alone retries, refreshes and fails over.

        For streams, read the upstream's handshake (executors.streaming.open_stream) before
        returning, so an error that arrives as the first event can still fail over.
        """
        ...

    async def refresh_credential(self, account: AccountInfo) -> bool:
        """Refresh the account's credential (single-flight across processes); True if it changed.

        Called by dispatch after an error with `refresh_credential`; a failure is raised as a
        classified UpstreamError (e.g. a dead refresh token: account_state auth_failed)."""
        ...
