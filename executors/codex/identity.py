"""Codex request identity: which session/thread/turn/window/installation ids a request carries.

docs/protocols/codex.md#identity. Every id is resolved in a fixed order — dedicated header → caller body
`client_metadata` → caller turn metadata → proxy default — and then projected onto every
surface (headers, flat `client_metadata`, the turn-metadata JSON in both places) so the
upstream never sees two values for one id. The session-id default is itself a chain:
Responses snapshot metadata → content-derived id (docs/protocols/codex.md#identity) → a new UUIDv7.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Identity keys inside the turn-metadata JSON; the proxy owns their values.
TURN_IDENTITY_KEYS = ("installation_id", "session_id", "thread_id", "turn_id", "window_id")
# client_metadata keys absorbed into the resolved identity (not forwarded as caller extras).
CM_IDENTITY_KEYS = frozenset(
    {
        "x-codex-installation-id",
        "session_id",
        "thread_id",
        "turn_id",
        "root_turn_id",
        "x-codex-window-id",
        "x-codex-turn-metadata",
    }
)
COMPACTION = {
    "trigger": "manual",
    "reason": "user_requested",
    "implementation": "responses_compaction_v2",
    "phase": "standalone_turn",
    "strategy": "memento",
}
# docs/protocols/codex.md#identity: keeps JSON-looking instructions from colliding with a first item
SEPARATOR = "\u0001"
_MAX_ID = 200


def uuid7(now_ms: int | None = None) -> str:
    """RFC 9562 UUIDv7 (time-ordered), as the CLI mints session and turn ids."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def canonical_json(value: Any) -> str:
    # Compact separators, no ASCII escaping, key order as received: JSON.stringify's output.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def first_input_item(input_value: Any) -> Any:
    """The first item, with a plain-string input normalised to its one-message form first."""
    if isinstance(input_value, str):
        if not input_value:
            return None
        return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": input_value}]}
    if isinstance(input_value, list) and input_value:
        return input_value[0]
    return None


def content_session_id(instructions: Any, input_value: Any) -> str | None:
    """docs/protocols/codex.md#identity: UUID-shaped SHA-256 of instructions + U+0001 + JSON(first input item); None
    if no input."""
    first = first_input_item(input_value)
    if first is None:
        return None
    seed = (instructions if isinstance(instructions, str) else "") + SEPARATOR + canonical_json(first)
    digest = bytearray(hashlib.sha256(seed.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40  # version 4
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= _MAX_ID:
        return value.strip()
    return None


def _parse_turn_metadata(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return dict(raw)
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The validated subset of a Responses snapshot's provider_meta (docs/protocols/codex.md#identity)."""

    session_id: str | None = None
    window_generation: int | None = None

    @classmethod
    def parse(cls, meta: Any) -> SnapshotMeta:
        # Opaque JSON from storage: validate, and ignore whatever is malformed.
        if not isinstance(meta, Mapping):
            return cls()
        session = _text(meta.get("session_id"))
        gen = meta.get("window_generation")
        generation = gen if isinstance(gen, int) and not isinstance(gen, bool) and 0 <= gen < 1_000_000 else None
        return cls(session, generation)


@dataclass(frozen=True, slots=True)
class Identity:
    session_id: str
    thread_id: str
    client_request_id: str
    window_id: str
    turn_id: str
    root_turn_id: str
    installation_id: str
    request_kind: str
    session_source: str  # header|body|turn_metadata|snapshot|content|new: for tests and logs
    turn_metadata: dict[str, Any]  # the outbound body copy
    client_metadata: dict[str, str]  # the outbound flat map (caller extras + identity)
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def window_generation(self) -> int:
        _, _, gen = self.window_id.rpartition(":")
        return int(gen) if gen.isdigit() else 0

    def provider_meta(self) -> dict[str, Any]:
        """What a Responses snapshot keeps so a `previous_response_id` follow-up inherits it."""
        return {"session_id": self.session_id, "window_generation": self.window_generation}

    def turn_metadata_header(self) -> str:
        # The header copy is ASCII-escaped and drops `tool_namespaces_info`
        # (docs/protocols/codex.md#request-fingerprint).
        header_copy = {k: v for k, v in self.turn_metadata.items() if k != "tool_namespaces_info"}
        return json.dumps(header_copy, separators=(",", ":"), ensure_ascii=True)


def _first(*values: Any) -> tuple[str | None, int]:
    for i, value in enumerate(values):
        text = _text(value)
        if text is not None:
            return text, i
    return None, -1


def _session(
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    caller_cm: Mapping[str, Any],
    turn_meta: Mapping[str, Any],
    snap: SnapshotMeta,
) -> tuple[str, str]:
    """(session id, where it came from): header, body, turn metadata, snapshot, content, new."""
    session, idx = _first(
        headers.get("session-id"), headers.get("session_id"), caller_cm.get("session_id"), turn_meta.get("session_id")
    )
    source = ("header", "header", "body", "turn_metadata")[idx] if session else ""
    if session is None and snap.session_id:
        session, source = snap.session_id, "snapshot"
    if session is None:
        derived = content_session_id(body.get("instructions"), body.get("input"))
        if derived:
            session, source = derived, "content"
    if session is None:
        session, source = uuid7(), "new"
    return session, source


def _turn_meta_complete(
    out_meta: dict[str, Any], turn_meta: Mapping[str, Any], *, compaction: bool, root_turn: str, model: str
) -> None:
    """After the identity keys: the caller's other turn-metadata keys, then the defaults."""
    for key, value in turn_meta.items():
        if key not in out_meta and key not in TURN_IDENTITY_KEYS:
            out_meta[key] = value
    if compaction:
        out_meta["compaction"] = dict(COMPACTION)
    out_meta.setdefault("root_turn_id", root_turn)
    out_meta.setdefault("turn_started_at_unix_ms", int(time.time() * 1000))
    out_meta.setdefault("model", model)


def _client_metadata(
    caller_cm: Mapping[str, Any], ids: Mapping[str, str], out_meta: Mapping[str, Any]
) -> dict[str, str]:
    """The caller's non-identity keys, then the resolved ids and the turn metadata."""
    client_metadata: dict[str, str] = {}
    for key, value in caller_cm.items():
        if key in CM_IDENTITY_KEYS:
            continue
        # The backend takes a string -> string map (docs/protocols/codex.md#request-body-rules).
        client_metadata[key] = value if isinstance(value, str) else canonical_json(value)
    client_metadata.update(ids)
    client_metadata["x-codex-turn-metadata"] = canonical_json(out_meta)
    return client_metadata


def resolve_identity(
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    snapshot_meta: Any,
    installation_id: str,
    turn_id_default: str,
    model: str,
    compaction: bool = False,
) -> Identity:
    """Resolve every id (docs/protocols/codex.md#identity) and build the outbound client_metadata and turn metadata.

    `body` is the Responses body after translation (its `client_metadata`, `instructions`
    and `input` are read); `headers` are the caller's, lower-cased.
    """
    caller_cm_raw = body.get("client_metadata")
    caller_cm = {str(k): v for k, v in caller_cm_raw.items()} if isinstance(caller_cm_raw, Mapping) else {}
    # Turn metadata may arrive in the header and in the body copy; the header is the
    # dedicated surface, so its keys win over the body copy's.
    turn_meta = {
        **_parse_turn_metadata(caller_cm.get("x-codex-turn-metadata")),
        **_parse_turn_metadata(headers.get("x-codex-turn-metadata")),
    }
    snap = SnapshotMeta.parse(snapshot_meta)
    session, source = _session(headers, body, caller_cm, turn_meta, snap)

    thread, _ = _first(headers.get("thread-id"), caller_cm.get("thread_id"), turn_meta.get("thread_id"))
    thread = thread or session
    request_id = _text(headers.get("x-client-request-id")) or thread
    window, _ = _first(headers.get("x-codex-window-id"), caller_cm.get("x-codex-window-id"), turn_meta.get("window_id"))
    if window is None:
        window = f"{session}:{snap.window_generation if snap.window_generation is not None else 0}"
    turn, _ = _first(caller_cm.get("turn_id"), turn_meta.get("turn_id"))
    turn = turn or turn_id_default
    root_turn = _text(caller_cm.get("root_turn_id")) or _text(turn_meta.get("root_turn_id")) or turn
    install, _ = _first(caller_cm.get("x-codex-installation-id"), turn_meta.get("installation_id"))
    install = install or installation_id

    request_kind = "compaction" if compaction else (_text(turn_meta.get("request_kind")) or "turn")
    out_meta: dict[str, Any] = {}
    # Identity keys first (in the CLI's order), then whatever else the caller said.
    if request_kind in ("turn", "prewarm", "compaction"):
        out_meta["installation_id"] = install
    out_meta.update(session_id=session, thread_id=thread, turn_id=turn, window_id=window, request_kind=request_kind)
    _turn_meta_complete(out_meta, turn_meta, compaction=compaction, root_turn=root_turn, model=model)
    ids = {
        "x-codex-installation-id": install,
        "session_id": session,
        "thread_id": thread,
        "turn_id": turn,
        "root_turn_id": root_turn,
        "x-codex-window-id": window,
    }
    client_metadata = _client_metadata(caller_cm, ids, out_meta)
    extra = {}
    for name in ("x-codex-turn-state", "x-codex-parent-thread-id", "x-openai-subagent", "x-codex-beta-features"):
        value = _text(headers.get(name))
        if value:
            extra[name] = value
    return Identity(
        session_id=session,
        thread_id=thread,
        client_request_id=request_id,
        window_id=window,
        turn_id=turn,
        root_turn_id=root_turn,
        installation_id=install,
        request_kind=request_kind,
        session_source=source,
        turn_metadata=out_meta,
        client_metadata=client_metadata,
        extra_headers=extra,
    )


class TurnIds:
    """One turn id per client request, reused by every upstream dispatch of it (docs/protocols/codex.md#identity).

    Retries and failover for one request run in one process, so a bounded in-process map
    keyed by the proxy's request id is enough.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._max = maxsize

    def for_request(self, request_id: str) -> str:
        if not request_id:
            return uuid7()
        turn = self._ids.get(request_id)
        if turn is None:
            turn = uuid7()
            self._ids[request_id] = turn
            while len(self._ids) > self._max:
                self._ids.popitem(last=False)
        return turn
