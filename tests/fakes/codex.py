"""Fake ChatGPT auth server + Codex backend (docs/protocols/codex.md#sign-in-chatgpt-oauth,
docs/protocols/codex.md#request-fingerprint, docs/protocols/codex.md#rate-limit-signals), on one port.

Auth (`/oauth/*`, `/api/accounts/deviceauth/*`):
- PKCE code exchange (form-encoded; S256 verifier checked; a `state` field → 400 unknown_parameter);
- rotating refresh tokens (JSON): every refresh issues a new pair and kills the old refresh
  token; reusing one → 401 `refresh_token_reused`; `refresh_count` counts real rotations;
- device code: usercode → `interval` as a string; token polls answer 403 (pending)
  `device_pending_polls` times, then the authorization code + verifier.
- `GET /oauth/authorize` plays the signed-in browser: 302 to the redirect URI with code+state.

Backend (`/backend-api/codex/*`), enforcing what the real one enforces:
- bearer access token issued here and not expired (401), `chatgpt-account-id` matching it;
- the CLI fingerprint: first-party `originator`, `user-agent` = `{originator}/{semver} (…; …) term`
  optionally followed by ` ({originator}; {version})`, nothing else; `session-id` present.
  Otherwise an HTML 403 "Just a moment..." page (the WAF);
- `store` must be false, `stream` must be true, unknown/rejected parameters → 400 Unsupported parameter;
- quirks: SSE *without* a content type, optional `codex.rate_limits` first event, `x-codex-*`
  rate-limit headers, `response.completed` with empty `output` on demand;
- `usage_limit_reached` 429 once a family is marked exhausted (`exhaust(...)`);
- `routing_unsupported` for models listed in `http_unsupported_models` (HTTP only).

WebSocket (`GET /backend-api/codex/responses` upgraded, docs/protocols/codex.md#transport-http-and-websocket; rules in
docs/fake-rules.md):
the same auth and fingerprint checks at the handshake (refused with the same status), then one
`response.create` text message per turn, validated like the HTTP body, answered with the same
events, one JSON text message each; a rejected body is an `{"type":"error","status":…}`
message and the socket stays open. The socket keeps its last response only: a later
`response.create` may send `previous_response_id` (that id) plus only new input items; any
other id is a 400 `previous_response_not_found`. `generate: false` answers created +
completed without output. A socket older than `ws_max_age` (60 minutes) answers every
`response.create` with the 400 `websocket_connection_limit_reached` error. Faults apply per
`response.create`: a status becomes an error message, a cut sends `after` events then closes
the socket with 1011, `stream_error` is a `response.failed` event. `ws_refuse = <status>`
refuses every handshake. `ws_log` logs handshakes and frames, `ws_open` counts open sockets.

Replies are deterministic: "echo: <last user text>"; "call tool" with tools → a function call;
after a tool output → "The tool returned: <output>".

Standalone: `python -m tests.fakes.codex --port 9200 --write-auth-json /tmp/auth.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson

from tests.fakes.base import (
    FakeApp,
    FakeServer,
    Fault,
    HTTPError,
    Receive,
    RecordedRequest,
    Request,
    Response,
    Scope,
    Send,
    SSEResponse,
    Violation,
    iter_split,
    json_response,
    parse_sse,
    sse_event,
    wait_for_signal,
)

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
FIRST_PARTY = ("codex_cli_rs", "codex-tui", "codex_exec", "codex_vscode")
# The top-level fields the official Codex CLI sends to this backend, from its public source
# (openai/codex, codex-rs/codex-api/src/common.rs: `ResponsesApiRequest` over HTTP;
# `ResponseCreateWsRequest` over the WebSocket adds `previous_response_id` and `generate`).
# Third-party gateways report that the backend refuses other fields by name (max_output_tokens,
# temperature, metadata, user, ...: docs/fake-rules.md), so this fake refuses every other one.
CLI_HTTP_FIELDS = frozenset(
    [
        "model",
        "instructions",
        "input",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "store",
        "stream",
        "include",
        "service_tier",
        "prompt_cache_key",
        "text",
        "client_metadata",
    ]
)
CLI_WS_FIELDS = CLI_HTTP_FIELDS | {"previous_response_id", "generate"}
# `/responses/compact`: the CLI's `CompactionInput` (codex-api common.rs): no stream/store/include.
COMPACT_FIELDS = frozenset(
    {"model", "input", "instructions", "tools", "parallel_tool_calls", "reasoning", "service_tier"}
    | {"prompt_cache_key", "text"}
)
CHALLENGE_PAGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title></head>'
    "<body><noscript>Enable JavaScript and cookies to continue</noscript></body></html>"
)
_UA_RE = re.compile(
    r"^(?P<orig>[a-z_-]+)/(?P<ver>\d+\.\d+\.\d+) \([^;()]+; [^;()]+\) \S+(?: \((?P=orig); (?P=ver)\))?$"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT (the proxy never verifies signatures; the fake checks identity)."""
    header = _b64(orjson.dumps({"alg": "RS256", "typ": "JWT", "kid": "fake"}))
    return f"{header}.{_b64(orjson.dumps(claims))}.{_b64(secrets.token_bytes(16))}"


@dataclass
class FakeChatGPTAccount:
    account_id: str = "acc-fake-0001"
    plan: str = "plus"
    email: str = "dev@example.com"
    user_id: str = "user-fake-0001"


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


class CodexFakeApp(FakeApp):
    SETTINGS = (
        "chunks",
        "interval",
        "rate_limit_event",
        "empty_output",
        "primary_used",
        "secondary_used",
        "primary_window",
        "secondary_window",
        "active_limit",
        "extra_family",
        "device_pending_polls",
        "access_ttl",
        "min_client_version",
        "http_unsupported_models",
        "reply",
        "ws_refuse",
        "ws_max_age",
        "ws_keep_frames",
    )

    def __init__(
        self,
        *,
        accounts: Iterable[FakeChatGPTAccount] = (FakeChatGPTAccount(),),
        models: Sequence[str] = ("gpt-5.5", "gpt-5.4", "gpt-5.4-mini"),
        chunks: int = 5,
        interval: float = 0.0,
        rate_limit_event: bool = True,
        empty_output: bool = False,
        primary_used: float = 42.0,
        secondary_used: float = 10.0,
        primary_window: int = 300,
        secondary_window: int = 10080,
        active_limit: str = "premium",
        extra_family: str | None = None,
        device_pending_polls: int = 2,
        access_ttl: float = 864000.0,
        min_client_version: str = "0.144.0",
        http_unsupported_models: Sequence[str] = (),
        reply: str | None = None,
        ws_refuse: int | None = None,
        ws_max_age: float = 3600.0,
        ws_keep_frames: bool = True,
    ) -> None:
        super().__init__()
        self.accounts = {a.account_id: a for a in accounts}
        self.models = list(models)
        self.chunks = chunks
        self.interval = interval
        self.rate_limit_event = rate_limit_event
        self.empty_output = empty_output
        self.primary_used = primary_used
        self.secondary_used = secondary_used
        self.primary_window = primary_window
        self.secondary_window = secondary_window
        self.active_limit = active_limit
        self.extra_family = extra_family
        self.device_pending_polls = device_pending_polls
        self.access_ttl = access_ttl
        self.min_client_version = min_client_version
        self.http_unsupported_models = tuple(http_unsupported_models)
        self.reply = reply
        self.ws_refuse = ws_refuse
        self.ws_max_age = ws_max_age  # the backend's socket lifetime cap (60 minutes)
        self.ws_keep_frames = ws_keep_frames  # ws_log keeps every frame (off in benchmarks)
        self._defaults = {k: getattr(self, k) for k in self.SETTINGS}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._state_reset()
        self.on_refresh: Callable[[str], None] | None = None  # test hook, runs before a refresh
        self.route("GET", "/oauth/authorize", self.authorize)
        self.route("POST", "/oauth/token", self.token)
        self.route("POST", "/api/accounts/deviceauth/usercode", self.device_usercode)
        self.route("POST", "/api/accounts/deviceauth/token", self.device_token)
        self.route("POST", "/backend-api/codex/responses", self.responses)
        self.route("POST", "/backend-api/codex/responses/compact", self.compact)
        self.route("GET", "/backend-api/codex/models", self.list_models)
        self.route("GET", "/_fake/transport", self.transport_stats)

    def _state_reset(self) -> None:
        self.access: dict[str, tuple[str, float]] = {}  # token -> (account id, exp)
        self.refresh: dict[str, tuple[str, bool]] = {}  # token -> (account id, still live)
        self.codes: dict[str, tuple[str, str, str]] = {}  # code -> (challenge, redirect_uri, account)
        self.devices: dict[str, dict[str, Any]] = {}
        self.exhausted: dict[tuple[str, str], float] = {}  # (account, family) -> resets_at
        self.killed: set[str] = set()  # account ids whose session was terminated
        self.refresh_count = 0
        self.token_form_log: list[dict[str, Any]] = []  # bodies of /oauth/token (form or JSON)
        # One entry per WebSocket handshake: headers, refused status (or None), received frames.
        self.ws_log: list[dict[str, Any]] = []
        self.ws_open = 0  # sockets open now (a proxy that leaks upstream sockets grows this)
        self.ws_opened_total = 0
        self.ws_bytes_in = 0  # bytes of every text message received
        self.ws_turns = 0  # response.create messages answered
        self.http_bytes_in = 0  # bytes of every POST /responses body
        self.blobs: set[str] = set()  # compaction `encrypted_content` this backend minted

    def reset(self) -> None:
        super().reset()
        for k, v in self._defaults.items():
            setattr(self, k, v)
        self.on_refresh = None
        with self._lock:
            self._state_reset()

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08x}{secrets.token_hex(4)}"

    # ------------------------------------------------------------------- token minting
    def issue_tokens(self, account_id: str | None = None, *, access_ttl: float | None = None) -> dict[str, Any]:
        """Mint a live token set (what a sign-in returns); also used to build auth.json files."""
        acct = self.accounts[account_id or next(iter(self.accounts))]
        now = time.time()
        exp = now + (self.access_ttl if access_ttl is None else access_ttl)
        auth = {"chatgpt_account_id": acct.account_id, "chatgpt_plan_type": acct.plan, "chatgpt_user_id": acct.user_id}
        access = make_jwt(
            {"exp": int(exp), "iat": int(now), "jti": secrets.token_hex(8), "https://api.openai.com/auth": auth}
        )
        id_token = make_jwt({"exp": int(now + 3600), "email": acct.email, "https://api.openai.com/auth": auth})
        refresh = "rt_" + secrets.token_urlsafe(24)
        with self._lock:
            self.access[access] = (acct.account_id, exp)
            self.refresh[refresh] = (acct.account_id, True)
        return {
            "id_token": id_token,
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": int(exp - now),
            "account_id": acct.account_id,
        }

    def auth_json(self, account_id: str | None = None, **kw: Any) -> dict[str, Any]:
        t = self.issue_tokens(account_id, **kw)
        return {
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": None,
            "tokens": {k: t[k] for k in ("id_token", "access_token", "refresh_token", "account_id")},
            "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def exhaust(self, family: str, *, account_id: str | None = None, resets_in: float = 3600.0) -> float:
        resets_at = time.time() + resets_in
        self.exhausted[(account_id or next(iter(self.accounts)), family)] = resets_at
        return resets_at

    # ---------------------------------------------------------------------------- auth
    @staticmethod
    def _oauth_error(status: int, code: str, message: str) -> HTTPError:
        return HTTPError(
            status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
        )

    async def authorize(self, req: Request) -> Response:
        q = {k: v[0] for k, v in parse_qs(req.query).items()}
        if q.get("client_id") != CLIENT_ID or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            raise self._oauth_error(400, "invalid_request", "bad authorize request")
        if "offline_access" not in q.get("scope", "").split():
            raise self._oauth_error(400, "invalid_scope", "offline_access is required")
        code = "ac_" + secrets.token_urlsafe(16)
        account = q.get("login_hint") or next(iter(self.accounts))
        self.codes[code] = (q["code_challenge"], q.get("redirect_uri", ""), account)
        query = urlencode({"code": code, "scope": q.get("scope", ""), "state": q.get("state", "")})
        location = f"{q.get('redirect_uri')}?{query}"
        return Response(302, b"", {"location": location}, None)

    async def token(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in ctype:
            form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        elif isinstance(req.json, dict):
            form = {k: v for k, v in req.json.items()}
        else:
            raise self._oauth_error(400, "invalid_request", "unsupported body")
        self.token_form_log.append(dict(form))
        if form.get("client_id") != CLIENT_ID:
            raise self._oauth_error(401, "invalid_client", "unknown client").as_rule("codex.oauth.request")
        grant = form.get("grant_type")
        if grant == "authorization_code":
            if "state" in form:
                raise self._oauth_error(400, "unknown_parameter", "Unknown parameter: 'state'.").as_rule(
                    "codex.oauth.request"
                )
            code = self.codes.pop(str(form.get("code")), None)
            if code is None:
                raise self._oauth_error(400, "invalid_grant", "Invalid authorization code")
            challenge, redirect_uri, account = code
            verifier = str(form.get("code_verifier", ""))
            if _b64(hashlib.sha256(verifier.encode()).digest()) != challenge:
                raise self._oauth_error(400, "invalid_grant", "PKCE verification failed").as_rule("codex.oauth.request")
            if form.get("redirect_uri") != redirect_uri and not (
                redirect_uri == "device" and str(form.get("redirect_uri", "")).endswith("/deviceauth/callback")
            ):
                raise self._oauth_error(400, "invalid_grant", "redirect_uri mismatch").as_rule("codex.oauth.request")
            tokens = self.issue_tokens(account)
            return json_response({k: tokens[k] for k in ("id_token", "access_token", "refresh_token", "expires_in")})
        if grant == "refresh_token":
            token = str(form.get("refresh_token", ""))
            if self.on_refresh is not None:
                self.on_refresh(token)
            with self._lock:
                entry = self.refresh.get(token)
                if entry is None:
                    raise self._oauth_error(401, "refresh_token_invalidated", "Your refresh token is invalid.")
                account, live = entry
                if not live:
                    raise self._oauth_error(
                        401,
                        "refresh_token_reused",
                        "Your refresh token has already been used to generate a new access token. Please try signing in again.",  # noqa: E501
                    )
                self.refresh[token] = (account, False)  # rotation: the old one dies now
                self.refresh_count += 1
            tokens = self.issue_tokens(account)
            return json_response({k: tokens[k] for k in ("id_token", "access_token", "refresh_token", "expires_in")})
        raise self._oauth_error(400, "unsupported_grant_type", f"unsupported grant_type {grant!r}")

    async def device_usercode(self, req: Request) -> Response:
        if not isinstance(req.json, dict) or req.json.get("client_id") != CLIENT_ID:
            raise self._oauth_error(400, "invalid_client", "unknown client")
        device_id = "deviceauth_" + secrets.token_hex(8)
        user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
        self.devices[device_id] = {"user_code": user_code, "polls_left": self.device_pending_polls}
        return json_response({"device_auth_id": device_id, "user_code": user_code, "interval": "1"})

    async def device_token(self, req: Request) -> Response:
        body = req.json if isinstance(req.json, dict) else {}
        device = self.devices.get(str(body.get("device_auth_id")))
        if device is None or device["user_code"] != body.get("user_code"):
            raise HTTPError(404, {"error": {"message": "unknown device code"}})
        if device["polls_left"] > 0:
            device["polls_left"] -= 1
            raise HTTPError(
                403, {"error": {"message": "authorization pending", "code": "deviceauth_authorization_pending"}}
            )
        verifier = _b64(secrets.token_bytes(32))
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        code = "ac_" + secrets.token_urlsafe(16)
        self.codes[code] = (challenge, "device", next(iter(self.accounts)))
        return json_response({"authorization_code": code, "code_challenge": challenge, "code_verifier": verifier})

    # ------------------------------------------------------------------------- backend
    def _check_auth(self, req: Request) -> str:
        token = req.bearer()
        entry = self.access.get(token or "")
        if entry is None:
            raise HTTPError(
                401,
                {
                    "error": {
                        "message": "Could not parse your authentication token. Please try signing in again.",
                        "type": "invalid_request_error",
                        "code": "invalid_token",
                    }
                },
                rule="codex.auth",
            )
        account, exp = entry
        if exp < time.time():
            raise HTTPError(
                401,
                {
                    "error": {
                        "message": "Provided authentication token is expired. Please try signing in again.",
                        "type": None,
                        "code": "token_expired",
                        "param": None,
                    },
                    "status": 401,
                },
                rule="codex.auth",
            )
        if account in self.killed:
            raise HTTPError(
                401, {"error": {"message": "Your session has been terminated.", "code": "token_invalidated"}}
            )
        return account

    def _check_fingerprint(self, req: Request, account: str) -> None:
        h = req.headers
        originator = h.get("originator", "")
        m = _UA_RE.match(h.get("user-agent", ""))
        ok = (
            originator in FIRST_PARTY
            and m is not None
            and m["orig"] == originator
            and _version_tuple(m["ver"]) >= _version_tuple(self.min_client_version)
            and bool(h.get("session-id"))
            and h.get("chatgpt-account-id") == account
        )
        if not ok:
            raise _HtmlError(403, CHALLENGE_PAGE, {"cf-ray": "8f00fake-AMS"}, rule="codex.fingerprint")

    def _rate_headers(self) -> dict[str, str]:
        now = int(time.time())
        h = {
            "x-codex-primary-used-percent": f"{self.primary_used:g}",
            "x-codex-secondary-used-percent": f"{self.secondary_used:g}",
            "x-codex-primary-window-minutes": str(self.primary_window),
            "x-codex-secondary-window-minutes": str(self.secondary_window),
            "x-codex-primary-reset-at": str(now + self.primary_window * 60),
            "x-codex-secondary-reset-at": str(now + self.secondary_window * 60),
            "x-codex-primary-reset-after-seconds": str(self.primary_window * 60),
            "x-codex-secondary-reset-after-seconds": str(self.secondary_window * 60),
            "x-codex-plan-type": "plus",
            "x-codex-credits-has-credits": "False",
            "x-codex-credits-unlimited": "False",
            "x-codex-credits-balance": "0",
            "x-request-id": "req_" + secrets.token_hex(8),
        }
        if self.active_limit:
            h["x-codex-active-limit"] = self.active_limit
        if self.extra_family:
            prefix = "x-" + self.extra_family.replace("_", "-")
            h[f"{prefix}-primary-used-percent"] = "7"
            h[f"{prefix}-primary-window-minutes"] = "300"
            h[f"{prefix}-primary-reset-after-seconds"] = "600"
        return h

    async def transport_stats(self, req: Request) -> Response:
        """What benchmarks read from a fake in another process (bench/ws_bench.py)."""
        keys = ("ws_open", "ws_opened_total", "ws_bytes_in", "ws_turns", "http_bytes_in")
        return json_response({k: getattr(self, k) for k in keys})

    async def responses(self, req: Request) -> Response | SSEResponse:
        self.http_bytes_in += len(req.body)
        account = self._check_auth(req)
        self._check_fingerprint(req, account)
        body = req.json
        model = self._check_body(account, body, websocket=False)
        final = self._final(body)
        events = self._events(final, req.chunks(self.chunks))
        return SSEResponse(
            events=events,
            interval=self.interval,
            headers=self._rate_headers(),
            content_type=None,
            error_event=_failed_event,
            model=model,
        )

    async def compact(self, req: Request) -> Response:
        """`POST /responses/compact`: unary JSON (docs/fake-rules.md, Codex compaction rows)."""
        account = self._check_auth(req)
        self._check_fingerprint(req, account)
        if "json" not in req.headers.get("accept", ""):
            raise HTTPError(406, {"detail": "Not Acceptable"})  # a guard of the fake (no public source)
        body = req.json
        if not isinstance(body, dict):
            raise HTTPError(400, {"detail": "Invalid JSON body"})
        for key in body:
            if key not in COMPACT_FIELDS:
                raise HTTPError(400, {"detail": f"Unsupported parameter: {key}"}, rule="codex.compact-fields")
        if body.get("model") not in self.models:
            raise HTTPError(400, {"detail": f"The '{body.get('model')}' model is not supported."}, rule="codex.model")
        items = [i for i in body.get("input") or [] if isinstance(i, dict)]
        self._check_blobs(items)
        final = self._final({**body, "input": [*items, {"type": "compaction_trigger"}]})
        users = [i for i in items if i.get("type", "message") == "message" and i.get("role") == "user"]
        out = {
            "id": self._id("resp_"),
            "object": "response.compaction",
            "created_at": int(time.time()),
            "output": [*users, *final["output"]],
            "usage": final["usage"],
        }
        return json_response(out, headers=self._rate_headers())

    def _check_blobs(self, items: list[dict[str, Any]]) -> None:
        for i, item in enumerate(items):
            if (
                item.get("type") in ("compaction", "compaction_summary")
                and item.get("encrypted_content") not in self.blobs
            ):
                raise HTTPError(
                    400,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "invalid_encrypted_content",
                            "message": f"The encrypted content for item {item.get('id') or f'input[{i}]'} could not "
                            "be verified. Reason: Encrypted content could not be decrypted or parsed.",
                            "param": None,
                        }
                    },
                    rule="codex.compaction-blob",
                )

    def _check_body(self, account: str, body: Any, *, websocket: bool) -> str:
        """The backend's body rules (docs/fake-rules.md, Codex table); returns the model."""
        if not isinstance(body, dict):
            raise HTTPError(400, {"detail": "Invalid JSON body"})  # a guard of the fake (no public source)
        if body.get("store") is not False:
            raise HTTPError(400, {"detail": "Store must be set to false"}, rule="codex.store")
        if body.get("stream") is not True:
            raise HTTPError(400, {"detail": "Stream must be set to true"}, rule="codex.stream")
        allowed = CLI_WS_FIELDS if websocket else CLI_HTTP_FIELDS
        for key in body:
            if key not in allowed:
                raise HTTPError(400, {"detail": f"Unsupported parameter: {key}"}, rule="codex.unsupported-parameter")
        if body.get("instructions") is None and not _has_developer_item(body.get("input")):
            # An empty string is accepted; a missing field with no developer item is not.
            raise HTTPError(400, {"detail": "Instructions are required"}, rule="codex.instructions")
        self._check_blobs([i for i in body.get("input") or [] if isinstance(i, dict)])
        model = body.get("model")
        if model not in self.models:
            raise HTTPError(
                400,
                {"detail": f"The '{model}' model is not supported when using Codex with a ChatGPT account."},
                rule="codex.model",
            )
        if model in self.http_unsupported_models and not websocket:
            raise HTTPError(
                400,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "routing_unsupported",
                        "message": "GPT-5.5 routing only supports Responses-compatible requests",
                    }
                },
            )
        family = self.active_limit or "codex"
        resets_at = self.exhausted.get((account, family))
        if resets_at is not None and resets_at > time.time():
            raise HTTPError(
                429,
                {
                    "error": {
                        "type": "usage_limit_reached",
                        "message": "The usage limit has been reached",
                        "plan_type": "plus",
                        "resets_at": int(resets_at),
                        "eligible_promo": None,
                        "resets_in_seconds": int(resets_at - time.time()),
                    }
                },
                {**self._rate_headers(), "x-codex-primary-used-percent": "100"},
            )
        return str(model)

    # ----------------------------------------------------------------------- websocket
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _ws_reject(self, scope: Scope, send: Send, resp: Response) -> None:
        if "websocket.http.response" in scope.get("extensions", {}):
            headers = [(k.encode(), v.encode()) for k, v in resp.headers.items()]
            if resp.content_type:
                headers.append((b"content-type", resp.content_type.encode()))
            await send({"type": "websocket.http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": resp.body})
        else:
            await send({"type": "websocket.close", "code": 1008})  # the server answers 403

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        entry: dict[str, Any] = {"path": path, "headers": headers, "refused": None, "frames": []}
        self.ws_log.append(entry)
        req = Request(
            method="GET", path=path, query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers, body=b"", json=None, json_error=False,
        )  # fmt: skip
        refuse = self.ws_refuse if path == "/backend-api/codex/responses" else (self.ws_refuse or 404)
        if refuse is not None:
            entry["refused"] = refuse
            await self._ws_reject(scope, send, Response(refuse, b"", {}, None))
            return
        try:
            account = self._check_auth(req)
            self._check_fingerprint(req, account)
        except HTTPError as err:
            entry["refused"] = err.status
            self._note_violation(err, path)
            await self._ws_reject(scope, send, err.response())
            return
        await send(
            {"type": "websocket.accept", "headers": [(k.encode(), v.encode()) for k, v in self._rate_headers().items()]}
        )
        with self._lock:
            self.ws_open += 1
            self.ws_opened_total += 1
        try:
            await self._ws_serve(_WsConn(account, req, entry, time.monotonic()), receive, send)
        finally:
            with self._lock:
                self.ws_open -= 1

    async def _ws_serve(self, conn: _WsConn, receive: Receive, send: Send) -> None:
        """One socket: `response.create` messages handled in order
        (docs/protocols/codex.md#transport-http-and-websocket), each answered
        with one event per text message; the socket keeps its last response in memory."""
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            text = msg.get("text") or (msg.get("bytes") or b"").decode()
            self.ws_bytes_in += len(text.encode())
            try:
                frame = orjson.loads(text)
            except orjson.JSONDecodeError:
                frame = None
            if self.ws_keep_frames:
                conn.entry["frames"].append(frame)
            if not isinstance(frame, dict) or frame.get("type") != "response.create":
                continue  # response.processed acknowledgements and the like
            if time.monotonic() - conn.opened >= self.ws_max_age:
                await _ws_send(send, _ws_error(400, _WS_LIMIT_ERROR))
                continue
            body = {k: v for k, v in frame.items() if k != "type"}
            self.control.record(
                RecordedRequest(
                    method="WEBSOCKET", path=conn.req.path, query=conn.req.query, headers=conn.req.headers,
                    json=body, received_at=time.time(),
                )
            )  # fmt: skip
            fault = self.control.faults.take(conn.req.path, body.get("model"))
            self.ws_turns += 1
            if not await self._ws_turn(conn, body, fault, send):
                return

    async def _ws_turn(self, conn: _WsConn, body: dict[str, Any], fault: Fault | None, send: Send) -> bool:
        """Answer one response.create; False when the socket was closed."""
        previous = body.pop("previous_response_id", None)
        if previous is not None:
            if previous != conn.last_id:
                await _ws_send(send, _ws_error(400, _not_found(str(previous))))
                return True
            body = {**body, "input": [*conn.last_items, *(body.get("input") or [])]}
        generate = body.pop("generate", True)
        try:
            self._check_body(conn.account, body, websocket=True)
        except HTTPError as err:
            self._note_violation(err, conn.req.path)
            await _ws_send(send, _ws_http_error(err))
            return True
        if fault is not None and fault.kind != "ok":
            return await self._ws_fault(fault, send)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        final = self._final(body) if generate is not False else self._final_empty(body)
        conn.last_id = None
        interval = fault.interval if fault is not None and fault.interval is not None else self.interval
        chunks = fault.chunks if fault is not None and fault.chunks is not None else self.chunks
        events = self._events(final, chunks) if generate is not False else self._empty_events(final)
        for chunk in events:
            for message in parse_sse(chunk):
                if interval > 0:
                    await asyncio.sleep(interval)
                await _ws_send(send, message.data)
        conn.last_id = final["id"]
        conn.last_items = [*(body.get("input") or []), *final["output"]]
        return True

    async def _ws_fault(self, fault: Fault, send: Send) -> bool:
        if fault.kind == "status":
            error = fault.body.get("error") if isinstance(fault.body, dict) else None
            if not isinstance(error, dict):
                error = {"type": "error", "message": str(fault.body or f"HTTP {fault.status}")}
            await _ws_send(send, _ws_error(fault.status, error, fault.headers))
            return True
        if fault.kind == "stream_error":
            await _ws_send(send, _ws_failed(fault.body or {"code": "server_error", "message": "fake failure"}))
            return True
        if fault.kind in ("cut", "malformed"):
            final = self._final({"model": self.models[0], "input": []})
            messages = [m.data for chunk in self._events(final, self.chunks) for m in parse_sse(chunk)]
            for data in messages[: fault.after]:
                await _ws_send(send, data)
            if fault.kind == "malformed":
                await _ws_send(send, "{not json")
                return True
        # cut, reset, close: the socket goes away without finishing the response
        await send({"type": "websocket.close", "code": 1011})
        return False

    def _final_empty(self, body: dict[str, Any]) -> dict[str, Any]:
        """`generate: false`: the request is set up, nothing is generated."""
        final = self._final(body)
        return {**final, "output": [], "usage": {**final["usage"], "output_tokens": 0, "total_tokens": 0}}

    def _empty_events(self, final: dict[str, Any]) -> Iterator[bytes]:
        start = {**final, "status": "in_progress", "usage": None}
        yield sse_event({"type": "response.created", "sequence_number": 0, "response": start})
        yield sse_event({"type": "response.completed", "sequence_number": 1, "response": final})

    def _note_violation(self, err: HTTPError, path: str) -> None:
        # The HTTP path logs violations in FakeApp._serve; WebSocket frames are answered here.
        if err.rule is not None:
            self.control.violated(Violation(rule=err.rule, path=path, status=err.status))

    async def list_models(self, req: Request) -> Response:
        self._check_auth(req)
        q = {k: v[0] for k, v in parse_qs(req.query).items()}
        version = _version_tuple(q.get("client_version", "0.0.0"))
        models = [
            {
                "slug": m,
                "display_name": m,
                "context_window": 272000,
                "prefer_websockets": True,
                "minimal_client_version": "0.124.0",
                "visibility": "list",
            }
            for m in self.models
            if version >= (0, 124, 0)
        ]
        return json_response({"models": models}, headers={"x-models-etag": 'W/"fake"'})

    # ------------------------------------------------------------------ reply planning
    def _final(self, body: dict[str, Any]) -> dict[str, Any]:
        items = [i for i in body.get("input") or [] if isinstance(i, dict)]
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        last = items[-1] if items else {}
        output: list[dict[str, Any]]
        if last.get("type") == "compaction_trigger":
            # Remote compaction: exactly one opaque `compaction` item (docs/fake-rules.md).
            blob = "fake-cmp-" + secrets.token_urlsafe(24)
            with self._lock:
                self.blobs.add(blob)
            output = [{"id": self._id("cmp_"), "type": "compaction", "encrypted_content": blob}]
        elif last.get("type") == "function_call_output":
            text = f"The tool returned: {last.get('output')}"
            output = [self._message(text)]
        else:
            user_text = ""
            for item in reversed(items):
                if item.get("type", "message") == "message" and item.get("role") == "user":
                    user_text = _text_of(item.get("content"))
                    break
            if tools and "call tool" in user_text:
                output = [
                    {
                        "id": self._id("fc_"),
                        "type": "function_call",
                        "status": "completed",
                        "arguments": orjson.dumps({"cmd": "echo TOOL_OK"}).decode(),
                        "call_id": self._id("call_"),
                        "name": tools[0]["name"],
                    }
                ]
            else:
                output = [self._message(self.reply if self.reply is not None else f"echo: {user_text}")]
        words_in = sum(len(_text_of(i.get("content")).split()) for i in items) + len(
            str(body.get("instructions") or "").split()
        )
        words_out = sum(len(_text_of(o.get("content")).split()) for o in output) or 5
        return {
            "id": self._id("resp_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body["model"],
            "output": output,
            "store": False,
            "usage": {
                "input_tokens": words_in,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": words_out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": words_in + words_out,
            },
        }

    def _message(self, text: str) -> dict[str, Any]:
        return {
            "id": self._id("msg_"),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }

    def _events(self, final: dict[str, Any], n: int) -> Iterator[bytes]:
        seq = itertools.count()

        def ev(type_: str, **data: Any) -> bytes:
            return sse_event({"type": type_, "sequence_number": next(seq), **data}, event=type_)

        if self.rate_limit_event:
            now = int(time.time())
            yield sse_event(
                {
                    "type": "codex.rate_limits",
                    "plan_type": "plus",
                    "rate_limits": {
                        "primary": {
                            "used_percent": self.primary_used,
                            "window_minutes": self.primary_window,
                            "reset_at": now + self.primary_window * 60,
                        },
                        "secondary": {
                            "used_percent": self.secondary_used,
                            "window_minutes": self.secondary_window,
                            "reset_at": now + self.secondary_window * 60,
                        },
                    },
                    "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
                    "metered_limit_name": self.active_limit or "codex",
                },
                event="codex.rate_limits",
            )
        start = {**final, "status": "in_progress", "output": [], "usage": None}
        yield ev("response.created", response=start)
        yield ev("response.in_progress", response=start)
        for idx, item in enumerate(final["output"]):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                yield ev(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "content": []},
                )
                loc = {"item_id": item["id"], "output_index": idx, "content_index": 0}
                yield ev(
                    "response.content_part.added", **loc, part={"type": "output_text", "text": "", "annotations": []}
                )
                for piece in iter_split(text, n):
                    yield ev("response.output_text.delta", **loc, delta=piece)
                yield ev("response.output_text.done", **loc, text=text)
                yield ev("response.content_part.done", **loc, part=item["content"][0])
            elif item["type"] != "function_call":
                yield ev("response.output_item.added", output_index=idx, item=item)
            else:
                yield ev(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "arguments": ""},
                )
                loc = {"item_id": item["id"], "output_index": idx}
                for piece in iter_split(item["arguments"], n):
                    yield ev("response.function_call_arguments.delta", **loc, delta=piece)
                yield ev("response.function_call_arguments.done", **loc, arguments=item["arguments"])
            yield ev("response.output_item.done", output_index=idx, item=item)
        yield ev("response.completed", response={**final, "output": []} if self.empty_output else final)


@dataclass
class _WsConn:
    account: str
    req: Request
    entry: dict[str, Any]
    opened: float
    last_id: str | None = None  # the socket's last response, the only one it keeps
    last_items: list[Any] = field(default_factory=list)


# The service's message at its 60-minute cap (codex-rs responses_websocket.rs).
_WS_LIMIT_ERROR = {
    "type": "invalid_request_error",
    "code": "websocket_connection_limit_reached",
    "message": "Responses websocket connection limit reached (60 minutes). "
    "Create a new websocket connection to continue.",
}


def _not_found(previous: str) -> dict[str, Any]:
    return {
        "type": "invalid_request_error",
        "code": "previous_response_not_found",
        "message": f"Previous response with id '{previous}' not found.",
        "param": "previous_response_id",
    }


def _ws_error(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    frame: dict[str, Any] = {"type": "error", "status": status, "error": error}
    if headers:
        frame["headers"] = headers
    return orjson.dumps(frame)


def _ws_http_error(err: HTTPError) -> bytes:
    error = err.body.get("error") if isinstance(err.body, dict) else None
    if not isinstance(error, dict):
        detail = err.body.get("detail") if isinstance(err.body, dict) else str(err.body)
        error = {"type": "invalid_request_error", "message": str(detail)}
    return _ws_error(err.status, error, dict(err.headers))


def _ws_failed(error: dict[str, Any]) -> str:
    return parse_sse(_failed_event(error))[0].data


async def _ws_send(send: Send, data: bytes | str) -> None:
    await send({"type": "websocket.send", "text": data if isinstance(data, str) else data.decode()})


class _HtmlError(HTTPError):
    """The WAF answers with an HTML page, not JSON."""

    def response(self) -> Response:
        return Response(self.status, str(self.body).encode(), self.headers, "text/html; charset=UTF-8")


def _failed_event(error: dict[str, Any]) -> bytes:
    # Codex reports a terminal failure inside a 200 stream as `response.failed`.
    data = {
        "type": "response.failed",
        "sequence_number": 0,
        "response": {"id": "resp_failed", "object": "response", "status": "failed", "error": error, "output": []},
    }
    return sse_event(data, event="response.failed")


def _has_developer_item(items: Any) -> bool:
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("role") == "developer" and i.get("type", "message") == "message" for i in items
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


# ------------------------------------------------------------------------ ready-made faults


def html_403_fault() -> Fault:
    return Fault.html(403, CHALLENGE_PAGE).where(path="/backend-api/codex/responses")


def token_invalidated_fault() -> Fault:
    return Fault.http(401, {"error": {"message": "Your session has been terminated.", "code": "token_invalidated"}})


def overloaded_fault() -> Fault:
    """A 200 stream whose first event is `response.failed` with server_is_overloaded."""
    return Fault.stream_error({"code": "server_is_overloaded", "message": "Our servers are currently overloaded."})


# ---------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake ChatGPT auth server + Codex backend")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--models", default="gpt-5.5,gpt-5.4,gpt-5.4-mini")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--empty-output", action="store_true", help="response.completed with empty output")
    parser.add_argument("--write-auth-json", default="", help="write a CLI auth.json with live tokens here")
    parser.add_argument("--ws-max-age", type=float, default=3600.0, help="socket lifetime cap in seconds")
    parser.add_argument("--no-ws-frames", action="store_true", help="do not keep received frames (benchmarks)")
    args = parser.parse_args(argv)
    app = CodexFakeApp(
        models=[m for m in args.models.split(",") if m],
        chunks=args.chunks,
        interval=args.interval,
        empty_output=args.empty_output,
        ws_max_age=args.ws_max_age,
        ws_keep_frames=not args.no_ws_frames,
    )
    server = FakeServer(app, port=args.port).start()
    print(f"fake Codex: backend {server.url}/backend-api/codex, auth {server.url}  (Ctrl-C to stop)", flush=True)
    if args.write_auth_json:
        with open(args.write_auth_json, "wb") as fh:
            fh.write(orjson.dumps(app.auth_json(), option=orjson.OPT_INDENT_2))
        print(f"wrote {args.write_auth_json}", flush=True)
    wait_for_signal()
    server.stop()


if __name__ == "__main__":
    main()
