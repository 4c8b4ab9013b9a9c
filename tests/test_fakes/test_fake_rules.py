"""Every rule of docs/fake-rules.md, enforced by its fake: the offending request, sent straight
to the fake, gets the real service's status and body shape, and the answer is logged under the
rule's id. `test_table_matches_the_fakes` keeps the document, the fakes and the tests in step."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic import AnthropicApp
from tests.fakes.base import FakeServer, parse_sse
from tests.fakes.codex import CodexFakeApp
from tests.fakes.gitlab import GitLabFakes, serve
from tests.fakes.openai_compat import ModelSpec, OpenAICompatApp

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "fake-rules.md"
CLI_UA = "codex_cli_rs/0.169.0 (Mac OS 26.5.0; arm64) iTerm.app/3.6.10"
PAT = "glpat-rules-user-000000000000"
USER_HI = [{"role": "user", "content": "hi"}]
ITEM_HI = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]


@dataclass
class World:
    codex: FakeServer[CodexFakeApp]
    openai: FakeServer[OpenAICompatApp]
    gitlab: GitLabFakes
    anthropic: FakeServer[AnthropicApp]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def fake(self, name: str) -> FakeServer[Any]:
        fakes = {"codex": self.codex, "openai": self.openai, "gateway": self.gitlab.gateway, "api": self.anthropic}
        return fakes.get(name, self.gitlab.instance)

    # -- valid requests each case breaks in exactly one way
    def codex_request(self, *, drop: tuple[str, ...] = (), **patch: Any) -> tuple[dict[str, str], dict[str, Any]]:
        tokens = self.codex.app.issue_tokens()
        headers = {
            "authorization": f"Bearer {tokens['access_token']}",
            "chatgpt-account-id": tokens["account_id"],
            "originator": "codex_cli_rs",
            "user-agent": CLI_UA,
            "session-id": "0199aaaa-0000-7000-8000-000000000001",
        }
        body = {"model": "gpt-5.5", "instructions": "be brief", "input": ITEM_HI, "store": False, "stream": True}
        body.update(patch)
        for key in drop:
            body.pop(key, None)
        return headers, body

    def gateway_headers(self, **override: str | None) -> dict[str, str]:
        """What the instance's third-party-agents grant hands out (token + headers)."""
        grant = self.http.post(
            self.gitlab.instance_url + "/api/v4/ai/third_party_agents/direct_access",
            headers={"private-token": PAT},
        ).json()
        headers = {k.lower(): v for k, v in grant["headers"].items() if k.lower() != "authorization"}
        headers.update({"authorization": f"Bearer {grant['token']}", "anthropic-version": "2023-06-01"})
        for key, value in override.items():
            name = key.replace("_", "-")
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        return headers


@dataclass(frozen=True)
class Case:
    rule: str
    fake: str  # codex | openai | gateway | instance
    send: Callable[[World], httpx.Response]
    status: int
    check: Callable[[Any], bool]


def _post(world: World, fake: str, path: str, *, json: Any = None, content: bytes | None = None, **kw: Any) -> Any:
    return world.http.post(world.fake(fake).url + path, json=json, content=content, **kw)


def codex(*, _drop: tuple[str, ...] = (), **patch: Any) -> Callable[[World], httpx.Response]:
    def send(w: World) -> httpx.Response:
        headers, body = w.codex_request(drop=_drop, **patch)
        return _post(w, "codex", "/backend-api/codex/responses", json=body, headers=headers)

    return send


def codex_compact(**patch: Any) -> Callable[[World], httpx.Response]:
    """`POST /responses/compact` with the CLI's `CompactionInput` fields (no stream/store)."""

    def send(w: World) -> httpx.Response:
        headers, body = w.codex_request(drop=tuple(k for k in ("store", "stream") if k not in patch), **patch)
        headers = {**headers, "accept": "application/json", "x-codex-installation-id": "inst-1"}
        return _post(w, "codex", "/backend-api/codex/responses/compact", json=body, headers=headers)

    return send


def codex_headers(**headers: str) -> Callable[[World], httpx.Response]:
    def send(w: World) -> httpx.Response:
        base, body = w.codex_request()
        return _post(w, "codex", "/backend-api/codex/responses", json=body, headers={**base, **headers})

    return send


def openai(path: str, body: Any = None, *, key: str = "sk-upstream", raw: bytes | None = None) -> Any:
    def send(w: World) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        return _post(w, "openai", path, json=body, content=raw, headers=headers)

    return send


def gateway(path: str, body: Any, **override: str | None) -> Callable[[World], httpx.Response]:
    def send(w: World) -> httpx.Response:
        return _post(w, "gateway", "/ai/v1/proxy" + path, json=body, headers=w.gateway_headers(**override))

    return send


ANT_KEY = "sk-ant-rules"


def api(path: str, body: Any = None, *, raw: bytes | None = None, **override: str | None) -> Any:
    """A request to the Anthropic API fake with a valid key and version, `override` applied."""

    def send(w: World) -> httpx.Response:
        headers: dict[str, str] = {"x-api-key": ANT_KEY, "anthropic-version": "2023-06-01"}
        for key, value in override.items():
            if value is None:
                headers.pop(key.replace("_", "-"), None)
            else:
                headers[key.replace("_", "-")] = value
        return _post(w, "api", path, json=body, content=raw, headers=headers)

    return send


TOOL_MSG = {"role": "tool", "tool_call_id": "c1", "content": "x"}
TOOL_OUTPUT = {"type": "function_call_output", "call_id": "c1", "output": "x"}
CLAUDE = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": USER_HI}
GPT = {"model": "gpt-5.1", "messages": USER_HI}


def detail(text: str) -> Callable[[Any], bool]:
    return lambda b: b == {"detail": text}


def error_message(text: str) -> Callable[[Any], bool]:
    return lambda b: isinstance(b, dict) and text in str((b.get("error") or {}).get("message", ""))


def anthropic(text: str) -> Callable[[Any], bool]:
    return lambda b: b == {"type": "error", "error": {"type": "invalid_request_error", "message": text}}


CASES = [
    # ----------------------------------------------------------------------- Codex backend
    Case("codex.store", "codex", codex(store=True), 400, detail("Store must be set to false")),
    Case("codex.store", "codex", codex(_drop=("store",)), 400, detail("Store must be set to false")),
    Case("codex.stream", "codex", codex(stream=False), 400, detail("Stream must be set to true")),
    Case("codex.unsupported-parameter", "codex", codex(temperature=0.2), 400,
         detail("Unsupported parameter: temperature")),
    Case("codex.unsupported-parameter", "codex", codex(max_output_tokens=9), 400,
         detail("Unsupported parameter: max_output_tokens")),
    Case("codex.unsupported-parameter", "codex", codex(metadata={"a": "b"}), 400,
         detail("Unsupported parameter: metadata")),
    Case("codex.instructions", "codex", codex(_drop=("instructions",)), 400, detail("Instructions are required")),
    Case("codex.instructions", "codex",
         codex(_drop=("instructions",), input=[{"type": "message", "role": "system", "content": "sys"}, *ITEM_HI]),
         400, detail("Instructions are required")),
    Case("codex.model", "codex", codex(model="gpt-4o"), 400,
         detail("The 'gpt-4o' model is not supported when using Codex with a ChatGPT account.")),
    Case("codex.compaction-blob", "codex",
         codex(input=[*ITEM_HI, {"type": "compaction", "encrypted_content": "llmproxy-summary-v1:aGk="}]), 400,
         lambda b: b["error"]["code"] == "invalid_encrypted_content"
         and "could not be verified" in b["error"]["message"]),
    Case("codex.compact-fields", "codex", codex_compact(stream=True), 400, detail("Unsupported parameter: stream")),
    Case("codex.compact-fields", "codex", codex_compact(client_metadata={"a": "b"}), 400,
         detail("Unsupported parameter: client_metadata")),
    Case("codex.fingerprint", "codex", codex_headers(**{"user-agent": "python-httpx/0.28"}), 403,
         lambda b: "Just a moment" in str(b)),
    Case("codex.fingerprint", "codex", codex_headers(originator="team-proxy"), 403,
         lambda b: "Just a moment" in str(b)),
    Case("codex.auth", "codex", codex_headers(authorization="Bearer not-a-token"), 401,
         lambda b: b["error"]["code"] == "invalid_token"),
    Case("codex.oauth.request", "codex",
         lambda w: _post(w, "codex", "/oauth/token", data={"grant_type": "refresh_token", "client_id": "app_other",
                                                            "refresh_token": "rt_x"}),
         401, lambda b: b["error"]["code"] == "invalid_client"),
    # ------------------------------------------------------------------ OpenAI-compatible
    Case("openai.chat.unknown-parameter", "openai",
         openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER_HI, "base_url": "x"}), 400,
         lambda b: b["error"] == {"message": "Unrecognized request argument supplied: base_url",
                                  "type": "invalid_request_error", "param": None, "code": None}),
    Case("openai.responses.unknown-parameter", "openai",
         openai("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "base_url": "x"}), 400,
         lambda b: b["error"] == {"message": "Unknown parameter: 'base_url'.", "type": "invalid_request_error",
                                  "param": "base_url", "code": "unknown_parameter"}),
    Case("openai.json", "openai", openai("/v1/chat/completions", raw=b"{not json"), 400,
         error_message("We could not parse the JSON body of your request.")),
    Case("openai.model-required", "openai", openai("/v1/chat/completions", {"messages": USER_HI}), 400,
         error_message("you must provide a model parameter")),
    Case("openai.stream-options", "openai",
         openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER_HI,
                                         "stream_options": {"include_usage": True}}), 400,
         lambda b: b["error"]["param"] == "stream_options"),
    Case("openai.tool-choice-without-tools", "openai",
         openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER_HI, "tool_choice": "auto"}), 400,
         error_message("'tool_choice' is only allowed when 'tools' are specified")),
    Case("openai.tool-choice-unknown-tool", "openai",
         openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER_HI,
                                         "tools": [{"type": "function", "function": {"name": "a"}}],
                                         "tool_choice": {"type": "function", "function": {"name": "b"}}}), 400,
         error_message("tool 'b' is not in the list of tools")),
    Case("openai.tool-call-pairing", "openai",
         openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [*USER_HI, TOOL_MSG]}),
         400, error_message("must be a response to a preceeding message with 'tool_calls'")),
    Case("openai.tool-call-pairing", "openai",
         openai("/v1/responses",
                {"model": "gpt-4o-mini", "input": [*ITEM_HI, TOOL_OUTPUT]}),
         400, error_message("No tool call found for function call output with call_id c1.")),
    Case("openai.item-reference", "openai",
         openai("/v1/responses", {"model": "gpt-4o-mini", "input": [{"type": "item_reference", "id": "msg_1"}]}), 400,
         error_message("Item with id 'msg_1' not found.")),
    Case("openai.previous-response-not-found", "openai",
         openai("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "previous_response_id": "resp_1"}), 400,
         lambda b: b["error"]["code"] == "previous_response_not_found"),
    Case("openai.responses-only-model", "openai",
         openai("/v1/chat/completions", {"model": "gpt-5.5", "messages": USER_HI}), 400,
         error_message("only supported in v1/responses")),
    Case("openai.schema", "openai", openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}), 400,
         lambda b: b["error"]["code"] == "empty_array"),
    Case("openai.schema", "openai",
         openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]}), 400,
         lambda b: b["error"]["code"] == "invalid_value"),
    Case("openai.auth", "openai", openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER_HI},
                                         key="sk-revoked-123456"), 401,
         lambda b: b["error"]["code"] == "invalid_api_key"),
    Case("openai.model-not-found", "openai", openai("/v1/chat/completions", {"model": "gpt-9", "messages": USER_HI}),
         404, lambda b: b["error"]["code"] == "model_not_found"),
    # -------------------------------------------------------------------- GitLab AI gateway
    Case("gitlab.gateway.auth", "gateway", gateway("/anthropic/v1/messages", CLAUDE, authorization=None), 401,
         lambda b: b == {"error": "No authorization header presented"}),
    Case("gitlab.gateway.auth", "gateway", gateway("/anthropic/v1/messages", CLAUDE, authorization="Bearer forged"),
         401, lambda b: b == {"error": "Forbidden by auth provider"}),
    Case("gitlab.gateway.auth-type", "gateway",
         gateway("/anthropic/v1/messages", CLAUDE, x_gitlab_authentication_type=None), 401,
         lambda b: b == {"error": "Invalid authentication token type - only OIDC is supported"}),
    Case("gitlab.gateway.header-mismatch", "gateway",
         gateway("/anthropic/v1/messages", CLAUDE, x_gitlab_realm="self-managed"), 401,
         lambda b: b == {"error": "Header mismatch 'X-Gitlab-Realm'"}),
    Case("gitlab.gateway.unit-primitive", "gateway",
         gateway("/anthropic/v1/messages", CLAUDE, x_gitlab_unit_primitive=None), 400,
         detail("Missing x-gitlab-unit-primitive header")),
    Case("gitlab.gateway.unit-primitive", "gateway",
         gateway("/anthropic/v1/messages", CLAUDE, x_gitlab_unit_primitive="duo_chat"), 403,
         detail("Unauthorized to access duo_chat")),
    Case("gitlab.gateway.id-mismatch", "gateway",
         gateway("/anthropic/v1/messages", CLAUDE, x_gitlab_project_id="999"), 403,
         detail("Gitlab project id mismatch")),
    Case("gitlab.gateway.body", "gateway", gateway("/anthropic/v1/messages", {"messages": USER_HI}), 400,
         detail("Failed to extract model name")),
    Case("gitlab.gateway.model", "gateway", gateway("/anthropic/v1/messages", {**CLAUDE, "model": "gpt-5.1"}), 400,
         detail("Unsupported model")),
    Case("gitlab.gateway.path", "gateway", gateway("/anthropic/v1/complete", CLAUDE), 404, detail("Not found")),
    Case("anthropic.version-header", "gateway", gateway("/anthropic/v1/messages", CLAUDE, anthropic_version=None), 400,
         anthropic("anthropic-version: header is required")),
    Case("anthropic.unknown-field", "gateway",
         gateway("/anthropic/v1/messages", {**CLAUDE, "response_format": {"type": "json_object"}}), 400,
         anthropic("response_format: Extra inputs are not permitted")),
    Case("anthropic.schema", "gateway",
         gateway("/anthropic/v1/messages", {"model": "claude-sonnet-4-6", "messages": USER_HI}), 400,
         anthropic("max_tokens: Field required")),
    # ------------------------------------------------------------------------ Anthropic API
    Case("anthropic.api-key", "api", api("/v1/messages", CLAUDE, x_api_key=None), 401,
         lambda b: b["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}),
    Case("anthropic.auth", "api", api("/v1/messages", CLAUDE, x_api_key="sk-ant-revoked"), 401,
         lambda b: b == {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
    Case("anthropic.version-header", "api", api("/v1/messages", CLAUDE, anthropic_version=None), 400,
         anthropic("anthropic-version: header is required")),
    Case("anthropic.unknown-field", "api", api("/v1/messages", {**CLAUDE, "user": "dev-1"}), 400,
         anthropic("user: Extra inputs are not permitted")),
    Case("anthropic.unknown-field", "api", api("/v1/messages/count_tokens", CLAUDE), 400,
         anthropic("max_tokens: Extra inputs are not permitted")),
    Case("anthropic.schema", "api", api("/v1/messages", {"model": "claude-sonnet-4-6", "messages": USER_HI}), 400,
         anthropic("max_tokens: Field required")),
    Case("anthropic.schema", "api", api("/v1/messages", {**CLAUDE, "messages": []}), 400,
         anthropic("messages: Field required")),
    Case("anthropic.size", "api", api("/v1/messages", raw=b'{"a":"' + b"x" * (32 * 1024 * 1024) + b'"}'), 413,
         lambda b: b["error"]["type"] == "request_too_large"),
    Case("anthropic.model", "api", api("/v1/messages", {**CLAUDE, "model": "claude-2"}), 404,
         lambda b: b["error"] == {"type": "not_found_error", "message": "model: claude-2"}),
    Case("anthropic.thinking-signature", "api",
         api("/v1/messages", {**CLAUDE, "messages": [*USER_HI, {"role": "assistant", "content": [
             {"type": "thinking", "thinking": "hm", "signature": "forged"}]}, *USER_HI]}), 400,
         anthropic("messages.1.content.0: Invalid `signature` in `thinking` block")),
    # --------------------------------------------------------------- GitLab instance REST
    Case("gitlab.rest.scope", "instance",
         lambda w: _post(w, "instance", "/api/v4/ai/third_party_agents/direct_access",
                         headers={"private-token": "glpat-read-only-00000000000"}), 403,
         lambda b: b["error"] == "insufficient_scope"),
    Case("gitlab.rest.completions-body", "instance",
         lambda w: _post(w, "instance", "/api/v4/code_suggestions/completions", json={"intent": "generation"},
                         headers={"private-token": PAT}), 400,
         lambda b: b == {"message": "400 Bad request - current_file is missing"}),
    Case("gitlab.oauth.request", "instance",
         lambda w: _post(w, "instance", "/oauth/token", data={"grant_type": "refresh_token", "client_id": "nobody",
                                                               "refresh_token": "x"}), 401,
         lambda b: b["error"] == "invalid_client"),
]  # fmt: skip


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[Any, Any, GitLabFakes, Any]]:
    codex_server = FakeServer(CodexFakeApp()).start()
    api_server = FakeServer(AnthropicApp(keys=(ANT_KEY,))).start()
    openai_server = FakeServer(
        OpenAICompatApp(keys=("sk-upstream",), models=("gpt-4o-mini", ModelSpec("gpt-5.5", responses_only=True)))
    ).start()
    gitlab = serve()
    yield codex_server, openai_server, gitlab, api_server
    api_server.stop()
    codex_server.stop()
    openai_server.stop()
    gitlab.stop()


@pytest.fixture
def world(_servers: tuple[Any, Any, GitLabFakes, Any]) -> Iterator[World]:
    codex_server, openai_server, gitlab, api_server = _servers
    for fake in (codex_server, openai_server, api_server):
        fake.reset()
    gitlab.reset()
    gitlab.world.add_pat(PAT, scopes=("api",))
    gitlab.world.add_pat("glpat-read-only-00000000000", scopes=("read_user",))
    w = World(codex_server, openai_server, gitlab, api_server)
    yield w
    w.http.close()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}-{i}" for i, c in enumerate(CASES)])
def test_fake_enforces_rule(world: World, case: Case) -> None:
    resp = case.send(world)
    assert resp.status_code == case.status, resp.text
    body: Any = resp.json() if "json" in resp.headers.get("content-type", "") else resp.text
    assert case.check(body), body
    logged = [v["rule"] for v in world.fake(case.fake).violations]
    assert logged == [case.rule]


def test_codex_instructions_rule_accepts_what_the_backend_accepts(world: World) -> None:
    """The other side of `codex.instructions`: an empty string, or a developer item alone."""
    developer = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "cli"}]}
    for send in (codex(instructions=""), codex(_drop=("instructions",), input=[developer, *ITEM_HI])):
        assert send(world).status_code == 200
    assert world.codex.violations == []


def test_codex_compaction_round_trip_accepts_what_the_backend_minted(world: World) -> None:
    """The other side of the compaction rows: a trigger turn and `/responses/compact` both mint
    one `compaction` item, and a later turn carrying it is accepted."""
    trigger = codex(input=[*ITEM_HI, {"type": "compaction_trigger"}])(world)
    assert trigger.status_code == 200
    done = [m.json()["item"] for m in parse_sse(trigger.text) if m.event == "response.output_item.done"]
    assert [i["type"] for i in done] == ["compaction"]
    compact = codex_compact(input=ITEM_HI)(world)
    assert compact.status_code == 200, compact.text
    body = compact.json()
    assert body["object"] == "response.compaction" and body["output"][-1]["type"] == "compaction"
    follow = codex(input=[*ITEM_HI, done[0], body["output"][-1], *ITEM_HI])(world)
    assert follow.status_code == 200 and world.codex.violations == []


def test_lenient_openai_variant_ignores_unknown_fields(world: World) -> None:
    world.openai.app.unknown_fields = "ignore"
    resp = openai("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER_HI, "base_url": "x"})(world)
    assert resp.status_code == 200 and world.openai.violations == []


# ------------------------------------------------------------------------ the table itself

_ROW = re.compile(r"^\| `([a-z0-9.-]+)` \| (request|state) \|", re.M)
_RULE_IN_CODE = re.compile(r"""rule[^=\n(]*=\s*"([a-z0-9.-]+)"|as_rule\(\s*"([a-z0-9.-]+)"\s*\)""")


def table_rules() -> dict[str, str]:
    """rule id -> kind, from docs/fake-rules.md."""
    return {m.group(1): m.group(2) for m in _ROW.finditer(DOC.read_text())}


def test_table_matches_the_fakes() -> None:
    """Every rule a fake enforces is a row of docs/fake-rules.md, and every row has a case here
    and a proxy-side test (tests/routing/test_fake_rules_live.py)."""
    from tests.routing.test_fake_rules_live import PROXY_CASES

    rules = table_rules()
    in_code = set()
    for path in (ROOT / "tests" / "fakes").glob("*.py"):
        for m in _RULE_IN_CODE.finditer(path.read_text()):
            in_code.add(m.group(1) or m.group(2))
    assert in_code - set(rules) == set(), "rules enforced by a fake but missing from docs/fake-rules.md"
    assert set(rules) - in_code == set(), "rows of docs/fake-rules.md no fake enforces"
    assert {c.rule for c in CASES} == set(rules), "rows without a fake-side test"
    assert set(PROXY_CASES) == set(rules), "rows without a proxy-side test"
