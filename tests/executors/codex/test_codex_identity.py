"""Identity resolution (docs/protocols/codex.md#identity): every step of every chain, projection consistency,
docs/protocols/codex.md#identity ids."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from executors.codex.config import codex_config
from executors.codex.identity import (
    SEPARATOR,
    SnapshotMeta,
    TurnIds,
    content_session_id,
    resolve_identity,
    uuid7,
)
from executors.codex.request import codex_headers

INSTALL = "3af4276f-70c2-460a-92b2-c05863766552"
TURN = "01a2003d-c58f-7bf1-9992-c69487db9137"
BODY_INPUT = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]


def _resolve(
    headers: dict[str, str] | None = None,
    cm: dict[str, Any] | None = None,
    turn_meta: dict[str, Any] | None = None,
    turn_meta_in: str = "header",
    snapshot: Any = None,
    body: dict[str, Any] | None = None,
) -> Any:
    headers = dict(headers or {})
    cm = dict(cm or {})
    if turn_meta is not None:
        if turn_meta_in == "header":
            headers["x-codex-turn-metadata"] = json.dumps(turn_meta)
        else:
            cm["x-codex-turn-metadata"] = json.dumps(turn_meta)
    full = {"model": "gpt-5.5", "input": BODY_INPUT, **(body or {})}
    if cm:
        full["client_metadata"] = cm
    return resolve_identity(
        headers=headers,
        body=full,
        snapshot_meta=snapshot,
        installation_id=INSTALL,
        turn_id_default=TURN,
        model="gpt-5.5",
    )


DERIVED = content_session_id(None, BODY_INPUT)

# (case, resolve kwargs, expected session id, expected source)
SESSION_CHAIN = [
    ("header session-id", {"headers": {"session-id": "S-h"}, "cm": {"session_id": "S-b"}}, "S-h", "header"),
    (
        "legacy header session_id",
        {"headers": {"session_id": "S-legacy"}, "cm": {"session_id": "S-b"}},
        "S-legacy",
        "header",
    ),
    ("header beats legacy", {"headers": {"session-id": "S-h", "session_id": "S-legacy"}}, "S-h", "header"),
    ("body client_metadata", {"cm": {"session_id": "S-b"}, "turn_meta": {"session_id": "S-t"}}, "S-b", "body"),
    (
        "turn metadata (header)",
        {"turn_meta": {"session_id": "S-t"}, "snapshot": {"session_id": "S-s"}},
        "S-t",
        "turn_metadata",
    ),
    (
        "turn metadata (body copy)",
        {"turn_meta": {"session_id": "S-t2"}, "turn_meta_in": "body"},
        "S-t2",
        "turn_metadata",
    ),
    ("snapshot metadata", {"snapshot": {"session_id": "S-s", "window_generation": 2}}, "S-s", "snapshot"),
    ("malformed snapshot ignored", {"snapshot": {"session_id": 42}}, DERIVED, "content"),
    ("snapshot not a dict", {"snapshot": "garbage"}, DERIVED, "content"),
    ("content-derived", {}, DERIVED, "content"),
    ("blank header skipped", {"headers": {"session-id": "  "}}, DERIVED, "content"),
]


@pytest.mark.parametrize(("case", "kwargs", "expected", "source"), SESSION_CHAIN, ids=[c[0] for c in SESSION_CHAIN])
def test_session_id_chain(case: str, kwargs: dict[str, Any], expected: str, source: str) -> None:
    ident = _resolve(**kwargs)
    assert ident.session_id == expected and ident.session_source == source


def test_session_id_falls_back_to_uuid7_without_input() -> None:
    ident = _resolve(body={"input": []})
    assert ident.session_source == "new" and uuid.UUID(ident.session_id).version == 7


THREAD_CHAIN = [
    ("header", {"headers": {"thread-id": "T-h"}, "cm": {"thread_id": "T-b"}}, "T-h"),
    ("body", {"cm": {"thread_id": "T-b"}, "turn_meta": {"thread_id": "T-t"}}, "T-b"),
    ("turn metadata", {"turn_meta": {"thread_id": "T-t"}}, "T-t"),
    ("default = session", {"headers": {"session-id": "S"}}, "S"),
]


@pytest.mark.parametrize(("case", "kwargs", "expected"), THREAD_CHAIN, ids=[c[0] for c in THREAD_CHAIN])
def test_thread_id_chain(case: str, kwargs: dict[str, Any], expected: str) -> None:
    assert _resolve(**kwargs).thread_id == expected


REQUEST_ID_CHAIN = [
    ("header", {"headers": {"x-client-request-id": "R", "thread-id": "T"}}, "R"),
    ("default = thread", {"headers": {"thread-id": "T", "session-id": "S"}}, "T"),
    ("default = session via thread", {"headers": {"session-id": "S"}}, "S"),
]


@pytest.mark.parametrize(("case", "kwargs", "expected"), REQUEST_ID_CHAIN, ids=[c[0] for c in REQUEST_ID_CHAIN])
def test_client_request_id_chain(case: str, kwargs: dict[str, Any], expected: str) -> None:
    assert _resolve(**kwargs).client_request_id == expected


WINDOW_CHAIN = [
    ("header", {"headers": {"x-codex-window-id": "W:h"}, "cm": {"x-codex-window-id": "W:b"}}, "W:h"),
    ("body", {"cm": {"x-codex-window-id": "W:b"}, "turn_meta": {"window_id": "W:t"}}, "W:b"),
    ("turn metadata", {"turn_meta": {"window_id": "W:t"}, "snapshot": {"window_generation": 3}}, "W:t"),
    ("snapshot generation", {"headers": {"session-id": "S"}, "snapshot": {"window_generation": 3}}, "S:3"),
    ("default generation 0", {"headers": {"session-id": "S"}}, "S:0"),
]


@pytest.mark.parametrize(("case", "kwargs", "expected"), WINDOW_CHAIN, ids=[c[0] for c in WINDOW_CHAIN])
def test_window_id_chain(case: str, kwargs: dict[str, Any], expected: str) -> None:
    assert _resolve(**kwargs).window_id == expected


TURN_CHAIN = [
    ("body", {"cm": {"turn_id": "U-b"}, "turn_meta": {"turn_id": "U-t"}}, "U-b"),
    ("turn metadata", {"turn_meta": {"turn_id": "U-t"}}, "U-t"),
    ("per-request default", {}, TURN),
]


@pytest.mark.parametrize(("case", "kwargs", "expected"), TURN_CHAIN, ids=[c[0] for c in TURN_CHAIN])
def test_turn_id_chain(case: str, kwargs: dict[str, Any], expected: str) -> None:
    assert _resolve(**kwargs).turn_id == expected


INSTALL_CHAIN = [
    ("body", {"cm": {"x-codex-installation-id": "I-b"}, "turn_meta": {"installation_id": "I-t"}}, "I-b"),
    ("turn metadata", {"turn_meta": {"installation_id": "I-t"}}, "I-t"),
    ("account default", {}, INSTALL),
]


@pytest.mark.parametrize(("case", "kwargs", "expected"), INSTALL_CHAIN, ids=[c[0] for c in INSTALL_CHAIN])
def test_installation_id_chain(case: str, kwargs: dict[str, Any], expected: str) -> None:
    assert _resolve(**kwargs).installation_id == expected


def test_turn_id_is_reused_for_every_dispatch_of_one_request() -> None:
    turns = TurnIds()
    first = turns.for_request("req-1")
    assert turns.for_request("req-1") == first != turns.for_request("req-2")
    assert uuid.UUID(first).version == 7


def test_every_surface_carries_the_same_ids() -> None:
    # given a caller that splits its identity across surfaces
    ident = _resolve(
        headers={"session_id": "S-legacy", "thread-id": "T"},
        cm={"x-codex-window-id": "T:1", "custom_tag": "keep-me", "nested": {"a": 1}},
        turn_meta={
            "turn_id": "U",
            "sandbox": "seccomp",
            "workspaces": {"/r": {}},
            "tool_namespaces_info": {"x": 1},
            "session_id": "ignored-lower-priority",
            "request_kind": "turn",
            "note": "ünïcode",
        },
    )
    headers = codex_headers(codex_config({}), access_token="AT", chatgpt_account_id="acc", ident=ident)
    body_meta = json.loads(ident.client_metadata["x-codex-turn-metadata"])
    header_meta = json.loads(headers["x-codex-turn-metadata"])
    # then headers, flat client_metadata and both turn-metadata copies agree
    assert headers["session-id"] == ident.client_metadata["session_id"] == body_meta["session_id"] == "S-legacy"
    assert "session_id" not in headers  # legacy spelling normalised to session-id
    assert headers["thread-id"] == ident.client_metadata["thread_id"] == body_meta["thread_id"] == "T"
    assert headers["x-codex-window-id"] == ident.client_metadata["x-codex-window-id"] == body_meta["window_id"]
    assert ident.client_metadata["turn_id"] == body_meta["turn_id"] == "U"
    assert ident.client_metadata["x-codex-installation-id"] == body_meta["installation_id"] == INSTALL
    assert "x-codex-installation-id" not in headers  # body only on /responses (docs/protocols/codex.md#identity)
    # the header copy is ASCII-escaped and drops tool_namespaces_info; otherwise identical
    assert headers["x-codex-turn-metadata"].isascii() and "tool_namespaces_info" not in header_meta
    assert header_meta == {k: v for k, v in body_meta.items() if k != "tool_namespaces_info"}
    # caller extras survive; unknown turn-metadata fields are kept
    assert ident.client_metadata["custom_tag"] == "keep-me" and ident.client_metadata["nested"] == '{"a":1}'
    assert body_meta["sandbox"] == "seccomp" and body_meta["workspaces"] == {"/r": {}}
    assert body_meta["note"] == "ünïcode"


def test_compaction_trigger_sets_request_kind() -> None:
    ident = resolve_identity(
        headers={},
        body={"input": BODY_INPUT},
        snapshot_meta=None,
        installation_id=INSTALL,
        turn_id_default=TURN,
        model="m",
        compaction=True,
    )
    assert ident.turn_metadata["request_kind"] == "compaction"
    assert ident.turn_metadata["compaction"]["implementation"] == "responses_compaction_v2"


def test_provider_meta_round_trip() -> None:
    ident = _resolve(headers={"session-id": "S", "x-codex-window-id": "S:4"})
    meta = ident.provider_meta()
    assert meta == {"session_id": "S", "window_generation": 4}
    follow_up = _resolve(snapshot=meta)
    assert follow_up.session_id == "S" and follow_up.window_id == "S:4" and follow_up.session_source == "snapshot"
    assert SnapshotMeta.parse({"session_id": "x" * 500}).session_id is None  # oversized → ignored


# ------------------------------------------------------------------ docs/protocols/codex.md#identity content-derived id

MSG = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
DEV = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "base prompt"}]}


def test_content_id_is_uuid_shaped_and_stable() -> None:
    sid = content_session_id("be brief", [MSG])
    assert sid is not None and uuid.UUID(sid).version == 4 and uuid.UUID(sid).variant == uuid.RFC_4122
    assert content_session_id("be brief", [MSG]) == sid


def test_content_id_distinct_instructions_and_first_items() -> None:
    base = content_session_id("be brief", [MSG])
    assert content_session_id("be verbose", [MSG]) != base
    assert content_session_id("be brief", [DEV, MSG]) != base
    assert content_session_id(None, [MSG]) == content_session_id("", [MSG]) != base


def test_identical_stateless_conversation_resent_in_full_keeps_the_id() -> None:
    turn1 = [DEV, MSG]
    answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}
    turn2 = [*turn1, answer, {**MSG, "content": [{"type": "input_text", "text": "more"}]}]
    assert content_session_id("x", turn1) == content_session_id("x", turn2) == content_session_id("x", list(turn1))


def test_separator_prevents_collisions() -> None:
    # Without U+0001, instructions ending in the JSON of an item would hash like that item.
    item_json = json.dumps(MSG, separators=(",", ":"))
    a = content_session_id(item_json, ["tail"])
    b = content_session_id("", [MSG])
    assert a != b
    assert SEPARATOR == "\u0001"


def test_plain_string_input_is_normalised_before_hashing() -> None:
    as_item = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}]
    assert content_session_id("x", "hello") == content_session_id("x", as_item)
    assert content_session_id("x", "") is None and content_session_id("x", []) is None


def test_uuid7_is_time_ordered() -> None:
    a, b = uuid7(1_000), uuid7(2_000)
    assert a < b and uuid.UUID(a).version == 7
