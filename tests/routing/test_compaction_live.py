"""Context compaction through the real proxy on every upstream path (docs/protocols/compaction.md):
a `compaction_trigger` turn (Codex CLI's remote compaction) and `POST /v1/responses/compact`
answer with exactly one `compaction` item; the next turn carrying it is accepted; a Codex blob
never reaches a non-Codex upstream; bad input is refused before any upstream call; every call
leaves one usage record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from formats.compaction import SUMMARY_HEADER
from tests.conformance.paths import CODEX, PATHS, Fakes, setup_path
from tests.fakes.base import parse_sse
from tests.support.proxy import usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DEV = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]}


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _assistant(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


HISTORY = [DEV, _user("Remember the code word PELICAN"), _assistant("Noted: PELICAN"), _user("Now list files")]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    served = Fakes.serve()
    yield served
    served.stop()


@pytest.fixture
async def run(live_proxy: Any, fakes: Fakes, request: pytest.FixtureRequest) -> dict[str, Any]:
    from accounts.services import client_key_create
    from infra.db import db_call

    fakes.reset()
    up = await db_call(setup_path, request.param, fakes)
    _, key = await db_call(client_key_create, name="compact", owner_label="compact@example.com")
    return {"url": live_proxy.url, "key": key, "up": up, "fakes": fakes}


async def _post(run: dict[str, Any], path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            run["url"] + path,
            json={"model": run["up"].model, **body},
            headers={"authorization": f"Bearer {run['key']}"},
        )


def _done_items(text: str) -> list[dict[str, Any]]:
    events = [e.json() for e in parse_sse(text) if e.data and e.data != "[DONE]"]
    assert events[-1]["type"] == "response.completed", events[-1]
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


def _last_call(run: dict[str, Any]) -> str:
    calls = run["up"].calls()
    assert calls, "the upstream got no model call"
    return json.dumps(calls[-1]["json"])


@pytest.mark.parametrize("run", PATHS, indirect=True)
async def test_trigger_turn_compacts_and_the_next_turn_carries_it(run: dict[str, Any]) -> None:
    trigger = {"type": "compaction_trigger"}
    resp = await _post(run, "/v1/responses", {"input": [*HISTORY, trigger], "stream": True})
    assert resp.status_code == 200, resp.text[:400]
    items = _done_items(resp.text)
    assert [i["type"] for i in items] == ["compaction"], items
    blob = items[0]["encrypted_content"]
    sent = _last_call(run)
    if run["up"].name == CODEX:
        assert '"compaction_trigger"' in sent  # the backend compacts itself
    else:
        assert "compaction_trigger" not in sent and "PELICAN" in sent  # the summarising turn
    # The next turn: the retained user messages, the compaction item, a new question.
    follow = [DEV, _user("Remember the code word PELICAN"), items[0], _user("Which code word?")]
    resp = await _post(run, "/v1/responses", {"input": follow, "stream": True})
    assert resp.status_code == 200, resp.text[:400]
    assert [i["type"] for i in _done_items(resp.text)] == ["message"]
    sent = _last_call(run)
    if run["up"].name == CODEX:
        assert blob in sent
    else:
        assert SUMMARY_HEADER in sent and blob not in sent
    assert not run["fakes"].violations()
    rows = await usage_rows(2)
    assert [r.outcome for r in rows] == ["ok", "ok"] and rows[0].account_id is not None
    assert rows[0].input_tokens > 0 and rows[0].output_tokens > 0


@pytest.mark.parametrize("run", PATHS, indirect=True)
async def test_compact_endpoint(run: dict[str, Any]) -> None:
    resp = await _post(run, "/v1/responses/compact", {"input": HISTORY, "instructions": "Be brief."})
    assert resp.status_code == 200, resp.text[:400]
    body = resp.json()
    assert body["object"] == "response.compaction"
    kinds = [(i.get("type"), i.get("role")) for i in body["output"]]
    assert kinds == [("message", "user"), ("message", "user"), ("compaction", None)], kinds
    if run["up"].name == CODEX:
        compact_calls = [r for r in run["fakes"].codex.requests if r["path"].endswith("/responses/compact")]
        assert len(compact_calls) == 1 and "stream" not in compact_calls[0]["json"]
        sent_headers = compact_calls[0]["headers"]
        assert sent_headers.get("accept") == "application/json" and sent_headers.get("x-codex-installation-id")
        assert not [r for r in run["fakes"].codex.requests if r["path"].endswith("/codex/responses")]
    resp = await _post(run, "/v1/responses", {"input": [*body["output"], _user("Which code word?")]})
    assert resp.status_code == 200, resp.text[:400]
    assert not run["fakes"].violations()
    rows = await usage_rows(2)
    assert rows[0].surface == "responses.compact" and rows[0].outcome == "ok"
    assert rows[0].account_id is not None and rows[0].input_tokens > 0


@pytest.mark.parametrize("run", [p for p in PATHS if p != CODEX], indirect=True)
async def test_codex_blob_is_refused_on_other_upstreams(run: dict[str, Any]) -> None:
    foreign = {"type": "compaction", "encrypted_content": "gAAAAABcodexblob"}
    resp = await _post(run, "/v1/responses", {"input": [_user("hi"), foreign, _user("go on")]})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["param"] == "input[1]" and "Codex" in err["message"]
    assert not run["up"].calls()


@pytest.mark.parametrize("run", [CODEX, PATHS[-1]], indirect=True)
async def test_compact_endpoint_bad_input_never_reaches_upstream(run: dict[str, Any]) -> None:
    for body, param in (({"input": HISTORY, "stream": True}, "stream"), ({"input": 7}, "input")):
        resp = await _post(run, "/v1/responses/compact", body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param
    assert not run["up"].calls()
    rows = await usage_rows(2)
    assert [(r.surface, r.status_code) for r in rows] == [("responses.compact", 400)] * 2


@pytest.mark.parametrize("run", ["openai-compat"], indirect=True)
async def test_large_compaction_request_is_prepared_off_the_loop(
    run: dict[str, Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large body's summarising turn is built by translations_warm (off the event loop); the
    executor then only reads it from the memo."""
    import executors.base

    settings.PROXY_INLINE_BODY_BYTES = 200

    def on_the_loop(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the compaction translation was computed on the event loop")

    monkeypatch.setattr(executors.base, "compaction_translate", on_the_loop)
    history = [*HISTORY, _user("x " * 300), {"type": "compaction_trigger"}]
    resp = await _post(run, "/v1/responses", {"input": history})
    assert resp.status_code == 200, resp.text[:400]
    assert [i["type"] for i in resp.json()["output"]] == ["compaction"]
    assert "PELICAN" in _last_call(run)


@pytest.mark.parametrize("run", [CODEX], indirect=True)
async def test_compact_endpoint_key_checks_as_for_responses(run: dict[str, Any]) -> None:
    """No key, a key without the model, a key out of requests: refused in the OpenAI dialect,
    each with its usage record, and no upstream call."""
    from accounts.services import client_key_create
    from infra.db import db_call

    _, other = await db_call(client_key_create, name="narrow", allowed_models=["gpt-4o-mini"])
    _, limited = await db_call(client_key_create, name="limited", requests_per_minute=1)
    body = {"model": run["up"].model, "input": HISTORY}
    async with httpx.AsyncClient(timeout=30) as http:
        url = run["url"] + "/v1/responses/compact"
        anonymous = await http.post(url, json=body)
        narrow = await http.post(url, json=body, headers={"authorization": f"Bearer {other}"})
        first = await http.post(url, json=body, headers={"authorization": f"Bearer {limited}"})
        second = await http.post(url, json=body, headers={"authorization": f"Bearer {limited}"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"]
    assert narrow.status_code == 403 and narrow.json()["error"]["param"] == "model"
    assert first.status_code == 200 and second.status_code == 429 and second.headers.get("retry-after")
    assert len([r for r in run["fakes"].codex.requests if r["path"].endswith("/compact")]) == 1
    rows = await usage_rows(4)
    assert [(r.surface, r.status_code) for r in rows] == [
        ("responses.compact", 401),
        ("responses.compact", 403),
        ("responses.compact", 200),
        ("responses.compact", 429),
    ]


async def test_codex_compact_fails_over_and_passes_client_errors(live_proxy: Any, fakes: Fakes) -> None:
    """A 5xx from the backend's /responses/compact fails over to the next Codex account; the
    backend's own 4xx reaches the client as a 400 in the OpenAI dialect."""
    from accounts.services import client_key_create
    from infra.db import db_call
    from tests.fakes.base import Fault

    fakes.reset()
    up = await db_call(setup_path, CODEX, fakes, accounts=2)
    _, key = await db_call(client_key_create, name="compact", owner_label="compact@example.com")
    run = {"url": live_proxy.url, "key": key, "up": up, "fakes": fakes}
    fakes.codex.faults.push(Fault.http(500).where(path="/backend-api/codex/responses/compact"))
    resp = await _post(run, "/v1/responses/compact", {"input": HISTORY})
    assert resp.status_code == 200, resp.text
    compact_calls = [r for r in fakes.codex.requests if r["path"].endswith("/responses/compact")]
    assert len(compact_calls) == 2
    foreign = {"type": "compaction", "encrypted_content": "gAAAAABnotminted"}
    resp = await _post(run, "/v1/responses/compact", {"input": [_user("hi"), foreign]})
    assert resp.status_code == 400 and "could not be verified" in resp.json()["error"]["message"], resp.text
    rows = await usage_rows(2)
    assert [r.outcome for r in rows] == ["ok", "upstream_error"] and rows[0].attempts == 2
