"""Fake GitLab instance + fake AI gateway (docs/protocols/gitlab-duo.md#errors), for tests and demos.

Two FakeApps share one `GitLabWorld` (users, OAuth apps, tokens, signing key, counters):

- `GitLabInstanceApp` — OAuth (authorize with PKCE S256, token: authorization_code /
  refresh_token with rotation and reuse detection / device_code with authorization_pending,
  slow_down, expired_token, access_denied), /oauth/authorize_device, /oauth/token/info,
  /api/v4/user, /api/v4/personal_access_tokens/self, both direct_access grants with their
  error cases, /api/v4/code_suggestions/completions (JSON or v4 SSE), /api/v4/chat/completions.
- `GitLabGatewayApp` — /ai/v1/proxy/anthropic/v1/messages (+count_tokens) and
  /ai/v1/proxy/openai/v1/{chat/completions,responses}: checks bearer UJWT (signature, expiry),
  `X-Gitlab-Authentication-Type: oidc`, the unit primitive, realm/instance/user/id headers
  against the token's claims, JSON body, the model allow-list and GitLab credits, in
  docs/protocols/gitlab-duo.md#ai-gateway-proxy
  order with the documented statuses; answers native Anthropic SSE (with `event:` lines,
  tool_use/input_json_delta, thinking + signature) and native OpenAI streams (delegated to the
  OpenAI-compatible fake), paced; strips retry-after / rate-limit headers like the real one.

Faults: every app has the base Fault queue (`gateway.faults.push(Fault.http(402))` answers
with the gateway's own body for that status: USAGE_QUOTA_EXCEEDED, NOT_ENTITLED, vendor 429
without Retry-After, 529 overloaded, 502 {"detail": "Bad Gateway"}...).

Run standalone:
    python -m tests.fakes.gitlab --port 9200 --gateway-port 9201 --pat glpat-demo-token-000000000000
then add an account: `manage.py gitlab_add_pat --label duo --token glpat-... \
    --instance-url http://127.0.0.1:9200 --gateway-url http://127.0.0.1:9201/ai`
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson

from tests.fakes.anthropic import MESSAGES_FIELDS as ANTHROPIC_MESSAGES_FIELDS
from tests.fakes.base import (
    FakeApp,
    FakeServer,
    HTTPError,
    Request,
    Response,
    SSEResponse,
    iter_split,
    json_response,
    sse_event,
    wait_for_signal,
)
from tests.fakes.openai_compat import ModelSpec, OpenAICompatApp

UNIT_PRIMITIVE = "ai_gateway_model_provider_proxy"
KNOWN_PRIMITIVES = frozenset({UNIT_PRIMITIVE, "complete_code", "duo_chat", "generate_code"})
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

ANTHROPIC_MODELS = (
    "claude-opus-4-5-20251101",
    "claude-opus-4-6",
    "claude-opus-4-7",
    "claude-opus-4-8",
    "claude-opus-5",
    "claude-sonnet-5",
    "claude-sonnet-4-6",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
    "claude-fable-5",
)
OPENAI_MODELS = (
    "gpt-5.6-sol",
    "gpt-5.6-terra",
    "gpt-5.6-luna",
    "gpt-5.5-2026-04-23",
    "gpt-5.4-2026-03-05",
    "gpt-5.4-mini",
    "gpt-5.4-nano",
    "gpt-5.3-codex",
    "gpt-5.2-2025-12-11",
    "gpt-5.1-2025-11-13",
    "gpt-5-mini-2025-08-07",
    "gpt-5",
    "gpt-5.1",
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def gitlab_error(status: int, message: str | dict[str, Any], headers: dict[str, str] | None = None) -> HTTPError:
    """GitLab's REST error envelope: {"message": ...}."""
    return HTTPError(status, {"message": message}, headers)


def oauth_error(error: str, description: str, status: int = 400) -> HTTPError:
    return HTTPError(status, {"error": error, "error_description": description})


def detail(status: int, text: str) -> HTTPError:
    """The gateway's FastAPI envelope."""
    return HTTPError(status, {"detail": text})


# ---------------------------------------------------------------------------- the world


@dataclass
class User:
    id: int
    username: str
    duo: bool = True  # has a Duo seat / add-on (else the grants answer 401)
    agent_grant: bool = True  # FF agent_platform_claude_code + duo_agent_platform entitlement
    namespace_id: str = "123"
    project_id: str = "456"


@dataclass
class AccessToken:
    token: str
    user_id: int
    scopes: tuple[str, ...]
    expires_at: float | None
    kind: str  # "oauth" | "pat"
    client_id: str = ""
    active: bool = True
    name: str = "proxy"
    created_at: int = field(default_factory=lambda: int(time.time()))


@dataclass
class RefreshToken:
    user_id: int
    client_id: str
    scopes: tuple[str, ...]
    access_token: str
    active: bool = True


@dataclass
class DeviceAuth:
    device_code: str
    user_code: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float
    interval: float
    polls: int = 0
    last_poll: float = 0.0
    approved: bool = False
    denied: bool = False


class GitLabWorld:
    """State shared by the instance and the gateway. Tests tweak attributes directly."""

    SETTINGS = (
        "access_ttl",
        "ujwt_ttl",
        "device_pending_polls",
        "device_interval",
        "device_expires_in",
        "proxy_enabled",
        "credits",
        "direct_connections_disabled",
        "rest_chat",
        "realm",
        "enforce_slow_down",
        "revoke_family_on_reuse",
        "mint_status",
        "mint_message",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.signing_key = secrets.token_bytes(32)
        self.instance_uid = str(uuid.uuid4())
        self.host_name = "gitlab.example.com"
        self.version = "18.6.0"
        self.realm = "saas"
        self.access_ttl = 7200
        self.ujwt_ttl = 3600
        self.device_pending_polls = 2
        self.device_interval = 5.0
        self.device_expires_in = 300.0
        self.enforce_slow_down = False  # answer slow_down when polled faster than the interval
        self.proxy_enabled = True
        self.credits = "ok"  # "ok" | "exhausted" | "not_entitled"
        self.direct_connections_disabled = False
        self.rest_chat = False
        self.revoke_family_on_reuse = False
        self.mint_status: int | None = None  # force the third-party grant to answer this status
        self.mint_message = ""
        self._defaults = {k: getattr(self, k) for k in self.SETTINGS}
        self.users: dict[int, User] = {}
        self.apps: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, DeviceAuth] = {}
        self.authorize_user = 1
        self.authorize_denied = False
        self.counts: dict[str, int] = {}
        self.add_user(User(1, "duo-user"))

    def reset(self) -> None:
        with self.lock:
            for k, v in self._defaults.items():
                setattr(self, k, v)
            self.users = {}
            self.apps.clear()
            self.tokens.clear()
            self.refresh.clear()
            self.codes.clear()
            self.devices.clear()
            self.counts.clear()
            self.authorize_user = 1
            self.authorize_denied = False
            self.add_user(User(1, "duo-user"))

    def count(self, name: str) -> int:
        with self.lock:
            return self.counts.get(name, 0)

    def bump(self, name: str) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    # -- setup helpers for tests
    def add_user(self, user: User) -> User:
        with self.lock:
            self.users[user.id] = user
        return user

    def add_app(self, client_id: str, *, secret: str | None = None, redirect_uris: Iterable[str] = ()) -> None:
        with self.lock:
            self.apps[client_id] = {"secret": secret, "redirect_uris": list(redirect_uris)}

    def add_pat(
        self,
        token: str,
        *,
        user_id: int = 1,
        scopes: Sequence[str] = ("api",),
        expires_at: str | None = "2099-01-01",
        active: bool = True,
    ) -> AccessToken:
        exp = None if expires_at is None else time.mktime(time.strptime(expires_at, "%Y-%m-%d"))
        tok = AccessToken(token, user_id, tuple(scopes), exp, "pat", active=active, name="proxy-pat")
        with self.lock:
            self.tokens[token] = tok
        return tok

    def issue_oauth(self, *, user_id: int, client_id: str, scopes: Sequence[str]) -> dict[str, Any]:
        with self.lock:
            access = "gloas-" + secrets.token_hex(32)
            refresh = "glort-" + secrets.token_hex(32)
            now = int(time.time())
            self.tokens[access] = AccessToken(
                access, user_id, tuple(scopes), now + self.access_ttl, "oauth", client_id=client_id
            )
            self.refresh[refresh] = RefreshToken(user_id, client_id, tuple(scopes), access)
            return {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.access_ttl,
                "refresh_token": refresh,
                "scope": " ".join(scopes),
                "created_at": now,
            }

    def expire_access(self, token: str) -> None:
        with self.lock:
            if token in self.tokens:
                self.tokens[token].expires_at = time.time() - 1

    def approve_device(self, user_code: str, *, deny: bool = False) -> None:
        with self.lock:
            for dev in self.devices.values():
                if dev.user_code == user_code:
                    dev.approved, dev.denied = not deny, deny

    # -- tokens
    def token_user(self, token: str | None) -> tuple[AccessToken, User] | None:
        with self.lock:
            tok = self.tokens.get(token or "")
            if tok is None or not tok.active or (tok.expires_at is not None and tok.expires_at < time.time()):
                return None
            return tok, self.users[tok.user_id]

    def ujwt(self, user: User, scopes: Sequence[str]) -> tuple[str, int, dict[str, str]]:
        exp = int(time.time()) + self.ujwt_ttl
        claims = {
            "iss": "gitlab-ai-gateway",
            "sub": str(user.id),
            "exp": exp,
            "iat": int(time.time()),
            "gitlab_realm": self.realm,
            "gitlab_instance_uid": self.instance_uid,
            "gitlab_global_user_id": f"gid-{user.id}",
            "scopes": list(scopes),
            "gitlab_project_id": user.project_id,
            "gitlab_namespace_id": user.namespace_id,
            "gitlab_root_namespace_id": user.namespace_id,
            "jti": secrets.token_hex(8),
        }
        head = _b64(b'{"alg":"HS256","typ":"JWT"}')
        body = _b64(orjson.dumps(claims))
        sig = _b64(hmac.new(self.signing_key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        headers = {
            "x-gitlab-instance-id": self.instance_uid,
            "x-gitlab-realm": self.realm,
            "x-gitlab-global-user-id": f"gid-{user.id}",
            "x-gitlab-host-name": self.host_name,
            "x-gitlab-version": self.version,
        }
        return f"{head}.{body}.{sig}", exp, headers

    def verify_ujwt(self, token: str) -> dict[str, Any] | None:
        try:
            head, body, sig = token.split(".")
        except ValueError:
            return None
        want = _b64(hmac.new(self.signing_key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(want, sig):
            return None
        claims: dict[str, Any] = orjson.loads(_unb64(body))
        if claims.get("exp", 0) < time.time():
            return None
        return claims


def _form(req: Request) -> dict[str, str]:
    parsed = parse_qs(req.body.decode(), keep_blank_values=True) if req.body else {}
    return {k: v[0] for k, v in parsed.items()}


def _query(req: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(req.query, keep_blank_values=True).items()}


def _gitlab_token(req: Request) -> str | None:
    return req.bearer() or req.headers.get("private-token")


# ------------------------------------------------------------------------ GitLab instance


class GitLabInstanceApp(FakeApp):
    SETTINGS = ("chunks", "interval", "reply")

    def __init__(self, world: GitLabWorld | None = None, *, chunks: int = 10, interval: float = 0.0) -> None:
        super().__init__()
        self.world = world or GitLabWorld()
        self.chunks = chunks
        self.interval = interval
        self.reply: str | None = None
        self._defaults = {k: getattr(self, k) for k in self.SETTINGS}
        self.route("GET", "/oauth/authorize", self.authorize)
        self.route("POST", "/oauth/token", self.token)
        self.route("POST", "/oauth/authorize_device", self.authorize_device)
        self.route("GET", "/oauth/token/info", self.token_info)
        self.route("GET", "/api/v4/user", self.user)
        self.route("GET", "/api/v4/personal_access_tokens/self", self.pat_self)
        self.route("POST", "/api/v4/ai/third_party_agents/direct_access", self.third_party_grant)
        self.route("POST", "/api/v4/code_suggestions/direct_access", self.code_suggestions_grant)
        self.route("POST", "/api/v4/code_suggestions/completions", self.completions)
        self.route("POST", "/api/v4/chat/completions", self.rest_chat)

    def reset(self) -> None:
        super().reset()
        for k, v in self._defaults.items():
            setattr(self, k, v)

    def error_for_status(self, status: int) -> HTTPError:
        if status == 429:
            return gitlab_error(429, {"error": "This endpoint has been requested too many times. Try again later."})
        if status == 503:
            return gitlab_error(503, "Token creation failed")
        return gitlab_error(status, f"{status} {'Unauthorized' if status == 401 else 'Error'}")

    def not_found(self, req: Request) -> HTTPError:
        return gitlab_error(404, "404 Not Found")

    # -- OAuth
    async def authorize(self, req: Request) -> Response:
        q = _query(req)
        w = self.world
        app = w.apps.get(q.get("client_id", ""))
        if app is None:
            return Response(200, b"<html>The client identifier provided is invalid.</html>", content_type="text/html")
        redirect = q.get("redirect_uri", "")
        if app["redirect_uris"] and redirect not in app["redirect_uris"]:
            return Response(200, b"<html>The redirect uri included is not valid.</html>", content_type="text/html")
        sep = "&" if "?" in redirect else "?"
        if w.authorize_denied:
            location = f"{redirect}{sep}{urlencode({'error': 'access_denied', 'state': q.get('state', '')})}"
            return Response(302, b"", {"location": location}, None)
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            location = f"{redirect}{sep}{urlencode({'error': 'invalid_request', 'state': q.get('state', '')})}"
            return Response(302, b"", {"location": location}, None)
        code = secrets.token_hex(16)
        with w.lock:
            w.codes[code] = {
                "client_id": q["client_id"],
                "redirect_uri": redirect,
                "challenge": q["code_challenge"],
                "scopes": tuple(q.get("scope", "").split()),
                "user_id": w.authorize_user,
                "expires_at": time.time() + 600,
            }
        location = f"{redirect}{sep}{urlencode({'code': code, 'state': q.get('state', '')})}"
        return Response(302, b"", {"location": location}, None)

    def _client(self, form: dict[str, str]) -> dict[str, Any]:
        app = self.world.apps.get(form.get("client_id", ""))
        if app is None or (app["secret"] and form.get("client_secret") != app["secret"]):
            raise oauth_error(
                "invalid_client",
                "Client authentication failed due to unknown client, no client authentication included, "
                "or unsupported authentication method.",
                401,
            ).as_rule("gitlab.oauth.request")
        return app

    async def token(self, req: Request) -> Response:
        form = _form(req)
        grant = form.get("grant_type")
        w = self.world
        self._client(form)
        with w.lock:
            if grant == "authorization_code":
                code = w.codes.pop(form.get("code", ""), None)
                if code is None or code["expires_at"] < time.time() or code["client_id"] != form.get("client_id"):
                    raise oauth_error(
                        "invalid_grant",
                        "The provided authorization grant is invalid, expired, "
                        "revoked, does not match the redirection URI used in the authorization "
                        "request, or was issued to another client.",
                    )
                if code["redirect_uri"] != form.get("redirect_uri"):
                    raise oauth_error("invalid_grant", "The redirect uri included is not valid.").as_rule(
                        "gitlab.oauth.request"
                    )
                verifier = form.get("code_verifier", "")
                if _b64(hashlib.sha256(verifier.encode()).digest()) != code["challenge"]:
                    raise oauth_error("invalid_grant", "The code verifier does not match the code challenge.").as_rule(
                        "gitlab.oauth.request"
                    )
                w.bump("code_exchanges")
                return json_response(
                    w.issue_oauth(user_id=code["user_id"], client_id=code["client_id"], scopes=code["scopes"])
                )
            if grant == "refresh_token":
                rt = w.refresh.get(form.get("refresh_token", ""))
                if rt is None or rt.client_id != form.get("client_id"):
                    raise oauth_error(
                        "invalid_grant",
                        "The provided authorization grant is invalid, expired, "
                        "revoked, does not match the redirection URI used in the authorization "
                        "request, or was issued to another client.",
                    )
                if not rt.active:
                    # Reuse of a rotated refresh token (docs/protocols/gitlab-duo.md#sign-in-and-tokens): refused;
                    # optionally the family too.
                    w.bump("refresh_reuse")
                    if w.revoke_family_on_reuse:
                        for other in w.refresh.values():
                            if other.user_id == rt.user_id and other.client_id == rt.client_id:
                                other.active = False
                    raise oauth_error(
                        "invalid_grant",
                        "The provided authorization grant is invalid, expired, "
                        "revoked, does not match the redirection URI used in the authorization "
                        "request, or was issued to another client.",
                    )
                # Rotation invalidates the old access token and the old refresh token.
                rt.active = False
                if rt.access_token in w.tokens:
                    w.tokens[rt.access_token].active = False
                w.bump("refreshes")
                return json_response(w.issue_oauth(user_id=rt.user_id, client_id=rt.client_id, scopes=rt.scopes))
            if grant == DEVICE_GRANT:
                dev = w.devices.get(form.get("device_code", ""))
                if dev is None:
                    raise oauth_error("invalid_grant", "The provided authorization grant is invalid.")
                now = time.time()
                if dev.expires_at < now:
                    raise oauth_error("expired_token", "The device code has expired.")
                if dev.denied:
                    raise oauth_error("access_denied", "The resource owner or authorization server denied the request.")
                too_fast = w.enforce_slow_down and dev.last_poll and now - dev.last_poll < dev.interval
                dev.last_poll = now
                if too_fast:
                    dev.interval += 5
                    raise oauth_error("slow_down", "The client is polling too quickly.")
                dev.polls += 1
                if not dev.approved and dev.polls <= w.device_pending_polls:
                    raise oauth_error("authorization_pending", "The authorization request is still pending.")
                if not dev.approved and w.device_pending_polls < 0:
                    raise oauth_error("authorization_pending", "The authorization request is still pending.")
                del w.devices[dev.device_code]
                w.bump("device_logins")
                return json_response(
                    w.issue_oauth(user_id=w.authorize_user, client_id=dev.client_id, scopes=dev.scopes)
                )
        raise oauth_error("unsupported_grant_type", "The authorization grant type is not supported.").as_rule(
            "gitlab.oauth.request"
        )

    async def authorize_device(self, req: Request) -> Response:
        form = _form(req)
        self._client(form)
        w = self.world
        dev = DeviceAuth(
            device_code=secrets.token_hex(20),
            user_code=secrets.token_hex(4).upper(),
            client_id=form["client_id"],
            scopes=tuple(form.get("scope", "").split()),
            expires_at=time.time() + w.device_expires_in,
            interval=w.device_interval,
        )
        with w.lock:
            w.devices[dev.device_code] = dev
        base = f"http://{req.headers.get('host', 'gitlab.example.com')}"
        return json_response(
            {
                "device_code": dev.device_code,
                "user_code": dev.user_code,
                "verification_uri": f"{base}/oauth/device",
                "verification_uri_complete": f"{base}/oauth/device?user_code={dev.user_code}",
                "expires_in": int(w.device_expires_in),
                "interval": w.device_interval if w.device_interval < 1 else int(w.device_interval),
            }
        )

    async def token_info(self, req: Request) -> Response:
        found = self.world.token_user(req.bearer())
        if found is None:
            raise oauth_error("invalid_token", "The access token is invalid", 401)
        tok, user = found
        return json_response(
            {
                "resource_owner_id": user.id,
                "scope": list(tok.scopes),
                "expires_in": None if tok.expires_at is None else int(tok.expires_at - time.time()),
                "application": {"uid": tok.client_id or None},
                "created_at": tok.created_at,
            }
        )

    # -- REST API
    def _auth(
        self, req: Request, *, scopes: Sequence[str] = ("api", "read_user", "read_api")
    ) -> tuple[AccessToken, User]:
        found = self.world.token_user(_gitlab_token(req))
        if found is None:
            raise gitlab_error(401, "401 Unauthorized")
        tok, user = found
        if not set(tok.scopes) & set(scopes):
            raise HTTPError(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": "The request requires higher privileges than provided by the access token.",
                    "scope": " ".join(scopes),
                },
                rule="gitlab.rest.scope",
            )
        return tok, user

    async def user(self, req: Request) -> Response:
        _tok, user = self._auth(req, scopes=("api", "read_user", "read_api", "ai_features"))
        return json_response(
            {
                "id": user.id,
                "username": user.username,
                "name": user.username.title(),
                "email": f"{user.username}@example.com",
                "public_email": "",
                "state": "active",
            }
        )

    async def pat_self(self, req: Request) -> Response:
        with self.world.lock:
            tok = self.world.tokens.get(_gitlab_token(req) or "")
        if tok is None or tok.kind != "pat":
            raise gitlab_error(401, "401 Unauthorized")
        expires = None if tok.expires_at is None else time.strftime("%Y-%m-%d", time.localtime(tok.expires_at))
        return json_response(
            {
                "id": 1,
                "name": tok.name,
                "revoked": False,
                "created_at": "2026-01-01T00:00:00.000Z",
                "scopes": list(tok.scopes),
                "user_id": tok.user_id,
                "last_used_at": None,
                "active": tok.active and (tok.expires_at is None or tok.expires_at > time.time()),
                "expires_at": expires,
            }
        )

    async def third_party_grant(self, req: Request) -> Response:
        w = self.world
        w.bump("third_party_requests")
        _tok, user = self._auth(req, scopes=("api", "ai_features"))
        if w.mint_status is not None:
            raise gitlab_error(w.mint_status, w.mint_message or f"{w.mint_status} Error")
        if not user.duo:
            raise gitlab_error(401, "401 Unauthorized")
        if w.direct_connections_disabled:
            raise gitlab_error(403, "403 Forbidden - Direct connections are disabled")
        if not user.agent_grant:
            raise gitlab_error(403, "403 Forbidden")
        token, exp, headers = w.ujwt(user, [UNIT_PRIMITIVE])
        headers.update(
            {
                "x-gitlab-unit-primitive": UNIT_PRIMITIVE,
                "x-gitlab-authentication-type": "oidc",
                "x-gitlab-project-id": user.project_id,
                "x-gitlab-namespace-id": user.namespace_id,
                "x-gitlab-root-namespace-id": user.namespace_id,
                # Seen from some clients: a credential entry clients must drop before forwarding.
                "authorization": "Bearer must-not-be-forwarded",
            }
        )
        w.bump("mints")
        return json_response({"token": token, "expires_at": exp, "headers": headers}, 201)

    async def code_suggestions_grant(self, req: Request) -> Response:
        w = self.world
        _tok, user = self._auth(req, scopes=("api", "ai_features"))
        if not user.duo:
            raise gitlab_error(401, "401 Unauthorized")
        if w.direct_connections_disabled:
            raise gitlab_error(403, "403 Forbidden - Direct connections are disabled")
        token, exp, headers = w.ujwt(user, ["complete_code"])
        headers.update({"x-gitlab-feature-enablement-type": "duo_pro", "X-Gitlab-Authentication-Type": "oidc"})
        w.bump("code_suggestions_mints")
        return json_response(
            {
                "base_url": "https://cloud.gitlab.com/ai",
                "token": token,
                "expires_at": exp,
                "headers": headers,
                "model_details": {"model_provider": "fireworks_ai", "model_name": "codestral-2501"},
            },
            201,
        )

    async def completions(self, req: Request) -> Response | SSEResponse:
        found = self.world.token_user(_gitlab_token(req))
        if found is None or not found[1].duo:
            raise HTTPError(401, {"message": "401 Unauthorized"}, {"x-gitlab-error-origin": "monolith"})
        body = req.json if isinstance(req.json, dict) else None
        current = (body or {}).get("current_file")
        if not isinstance(current, dict) or "file_name" not in current or "content_above_cursor" not in current:
            raise gitlab_error(400, "400 Bad request - current_file is missing").as_rule("gitlab.rest.completions-body")
        above = str(current["content_above_cursor"])
        last = above.rsplit("user: ", 1)[-1].strip()
        text = self.reply if self.reply is not None else f"echo: {last}"
        stream = bool(body.get("stream")) and req.headers.get("x-supports-sse-streaming", "").lower() in ("true", "1")  # type: ignore[union-attr]
        if not stream:
            return json_response(
                {
                    "id": "id",
                    "model": {"engine": "vertex-ai", "name": "claude-sonnet-4-6", "lang": "markdown"},
                    "object": "text_completion",
                    "created": int(time.time()),
                    "choices": [{"text": text, "index": 0, "finish_reason": "length"}],
                }
            )

        def events() -> Iterator[bytes]:
            yield sse_event({"metadata": {"model": {"name": "claude-sonnet-4-6"}}}, event="stream_start")
            for piece in iter_split(text, req.chunks(self.chunks)):
                yield sse_event({"choices": [{"delta": {"content": piece}, "index": 0}]}, event="content_chunk")
            yield sse_event("null", event="stream_end")

        return SSEResponse(events(), interval=self.interval, headers={"x-streaming-format": "sse"})

    async def rest_chat(self, req: Request) -> Response:
        if not self.world.rest_chat:
            raise gitlab_error(404, "404 Not Found")
        self._auth(req, scopes=("api", "ai_features"))
        content = (req.json or {}).get("content") if isinstance(req.json, dict) else None
        if not isinstance(content, str) or not content or len(content) > 1000:
            raise gitlab_error(400, "content is invalid")
        return json_response(self.reply if self.reply is not None else f"echo: {content}", 201)


# ----------------------------------------------------------------------------- gateway


def _anthropic_error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _anthropic_error_event(error: dict[str, Any]) -> bytes:
    return sse_event(error if error.get("type") == "error" else {"type": "error", "error": error}, event="error")


class GitLabGatewayApp(FakeApp):
    SETTINGS = ("chunks", "interval", "reply", "thinking_text")
    _STRIP = ("retry-after", "x-ratelimit-", "anthropic-ratelimit-")

    def __init__(
        self,
        world: GitLabWorld | None = None,
        *,
        chunks: int = 10,
        interval: float = 0.0,
        responses_only: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.world = world or GitLabWorld()
        self.chunks = chunks
        self.interval = interval
        self.reply: str | None = None
        self.thinking_text = "Let me think about that."
        self._defaults = {k: getattr(self, k) for k in self.SETTINGS}
        self.anthropic_models = set(ANTHROPIC_MODELS)
        only = set(responses_only)
        # OpenAI behaviour (validation, streams, Responses events) comes from the OpenAI fake;
        # the gateway swaps the caller's UJWT for GitLab's own vendor key, as the real one does.
        self._vendor_key = "sk-gitlab-vendor-key"
        self.openai = OpenAICompatApp(
            keys=(self._vendor_key,), models=[ModelSpec(m, responses_only=m in only) for m in OPENAI_MODELS]
        )
        self._ids = itertools.count(1)
        for path, handler in (
            ("/ai/v1/proxy/anthropic/v1/messages", self.messages),
            ("/ai/v1/proxy/anthropic/v1/messages/count_tokens", self.count_tokens),
            ("/ai/v1/proxy/openai/v1/chat/completions", self.openai_chat),
            ("/ai/v1/proxy/openai/v1/responses", self.openai_responses),
        ):
            self.route("POST", path, handler)

    def reset(self) -> None:
        super().reset()
        for k, v in self._defaults.items():
            setattr(self, k, v)
        self.openai.reset()

    def error_for_status(self, status: int) -> HTTPError:
        bodies: dict[int, Any] = {
            400: {"detail": "Unsupported model"},
            401: {"error": "Forbidden by auth provider"},
            402: {
                "error": "insufficient_credits",
                "error_code": "USAGE_QUOTA_EXCEEDED",
                "message": "Consumer does not have sufficient credits for this request",
            },
            403: {
                "error": "not_entitled",
                "error_code": "USAGE_QUOTA_NOT_ENTITLED",
                "message": "Consumer is not entitled to this request",
            },
            429: _anthropic_error(
                "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
            ),
            500: _anthropic_error("api_error", "Internal server error"),
            502: {"detail": "Bad Gateway"},
            503: {"detail": "Inference failed"},
            504: {"detail": "Anthropic API Timeout Error"},
            529: _anthropic_error("overloaded_error", "Overloaded"),
        }
        return HTTPError(status, bodies.get(status, {"detail": f"HTTP {status}"}))

    def not_found(self, req: Request) -> HTTPError:
        return detail(404, "Not found").as_rule("gitlab.gateway.path")

    def default_stream_error(self) -> dict[str, Any]:
        return _anthropic_error("overloaded_error", "Overloaded")

    # -- the gateway's checks, in its order (docs/fake-rules.md, GitLab AI gateway table):
    # authentication middleware, then the proxy route's decorators, then the proxy client.
    def _check(self, req: Request, vendor_models: set[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        w = self.world
        auth = req.headers.get("authorization")
        if not auth:
            raise HTTPError(401, {"error": "No authorization header presented"}, rule="gitlab.gateway.auth")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPError(401, {"error": "Invalid authorization header"}, rule="gitlab.gateway.auth")
        if req.headers.get("x-gitlab-authentication-type") != "oidc":
            raise HTTPError(
                401,
                {"error": "Invalid authentication token type - only OIDC is supported"},
                rule="gitlab.gateway.auth-type",
            )
        claims = w.verify_ujwt(token)
        if claims is None:
            raise HTTPError(401, {"error": "Forbidden by auth provider"}, rule="gitlab.gateway.auth")
        for header, claim in (
            ("X-Gitlab-Realm", "gitlab_realm"),
            ("X-Gitlab-Instance-Id", "gitlab_instance_uid"),
            ("X-Gitlab-Global-User-Id", "gitlab_global_user_id"),
        ):
            # A claim without a value skips its header check (as in the gateway's tests).
            if claims.get(claim) not in (None, "") and req.headers.get(header.lower()) != str(claims.get(claim)):
                raise HTTPError(401, {"error": f"Header mismatch '{header}'"}, rule="gitlab.gateway.header-mismatch")
        if not w.proxy_enabled:
            raise detail(402, "Proxy endpoints are not enabled for this namespace")
        primitive = req.headers.get("x-gitlab-unit-primitive")
        if not primitive:
            raise detail(400, "Missing x-gitlab-unit-primitive header").as_rule("gitlab.gateway.unit-primitive")
        if primitive not in KNOWN_PRIMITIVES:
            raise detail(400, f"Unknown unit primitive header {primitive}").as_rule("gitlab.gateway.unit-primitive")
        if primitive not in claims.get("scopes", []) or primitive != UNIT_PRIMITIVE:
            raise detail(403, f"Unauthorized to access {primitive}").as_rule("gitlab.gateway.unit-primitive")
        for header, claim, label in (
            ("x-gitlab-project-id", "gitlab_project_id", "project"),
            ("x-gitlab-namespace-id", "gitlab_namespace_id", "namespace"),
            ("x-gitlab-root-namespace-id", "gitlab_root_namespace_id", "root namespace"),
        ):
            if req.headers.get(header) != str(claims.get(claim)):
                raise detail(403, f"Gitlab {label} id mismatch").as_rule("gitlab.gateway.id-mismatch")
        if req.json_error or not isinstance(req.json, dict):
            raise detail(400, "Invalid JSON").as_rule("gitlab.gateway.body")
        model = req.json.get("model")
        if not isinstance(model, str) or not model:
            raise detail(400, "Failed to extract model name").as_rule("gitlab.gateway.body")
        if vendor_models is not None and model not in vendor_models:
            raise detail(400, "Unsupported model").as_rule("gitlab.gateway.model")
        if w.credits == "exhausted":
            raise HTTPError(402, self.error_for_status(402).body)
        if w.credits == "not_entitled":
            raise HTTPError(403, self.error_for_status(403).body)
        return claims, req.json

    def _strip(self, resp: Response | SSEResponse) -> Response | SSEResponse:
        resp.headers = {k: v for k, v in resp.headers.items() if not k.lower().startswith(self._STRIP)}
        return resp

    # -- OpenAI path: delegate after the checks
    async def _openai(self, req: Request, handler: Any) -> Response | SSEResponse:
        self._check(req, set(OPENAI_MODELS))
        req.headers = {k: v for k, v in req.headers.items() if k in ("accept", "content-type", "user-agent")}
        req.headers["authorization"] = f"Bearer {self._vendor_key}"
        self.openai.chunks, self.openai.interval, self.openai.reply = self.chunks, self.interval, self.reply
        try:
            return self._strip(await handler(req))
        except HTTPError as err:
            err.headers = {k: v for k, v in err.headers.items() if not k.lower().startswith(self._STRIP)}
            raise

    async def openai_chat(self, req: Request) -> Response | SSEResponse:
        return await self._openai(req, self.openai.chat_completions)

    async def openai_responses(self, req: Request) -> Response | SSEResponse:
        return await self._openai(req, self.openai.responses)

    # -- Anthropic path: a native Messages implementation
    async def count_tokens(self, req: Request) -> Response:
        _claims, body = self._check(req, self.anthropic_models)
        return json_response({"input_tokens": sum(len(t.split()) for t in _texts(body))})

    async def messages(self, req: Request) -> Response | SSEResponse:
        _claims, body = self._check(req, self.anthropic_models)
        # From here on the body is Anthropic's to judge (the gateway passes it through).
        if "anthropic-version" not in req.headers:
            raise HTTPError(
                400,
                _anthropic_error("invalid_request_error", "anthropic-version: header is required"),
                rule="anthropic.version-header",
            )
        # The Anthropic API's own field list (tests/fakes/anthropic.py): the body reaches it unchanged.
        for key in body:
            if key not in ANTHROPIC_MESSAGES_FIELDS:
                raise HTTPError(
                    400,
                    _anthropic_error("invalid_request_error", f"{key}: Extra inputs are not permitted"),
                    rule="anthropic.unknown-field",
                )
        if not isinstance(body.get("max_tokens"), int):
            raise HTTPError(
                400, _anthropic_error("invalid_request_error", "max_tokens: Field required"), rule="anthropic.schema"
            )
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise HTTPError(
                400, _anthropic_error("invalid_request_error", "messages: Field required"), rule="anthropic.schema"
            )
        last = _last_user_text(msgs)
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
        thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
        msg_id = f"msg_fake{next(self._ids):06d}"
        model = body["model"]
        blocks: list[dict[str, Any]] = []
        if thinking:
            blocks.append({"type": "thinking", "thinking": self.thinking_text, "signature": "sig-" + msg_id})
        reply, stop = self._reply_blocks(msgs, last, tools)
        blocks.extend(reply)
        input_tokens = sum(len(t.split()) for t in _texts(body))
        output_tokens = sum(len(str(b.get("text") or b.get("thinking") or b.get("input")).split()) for b in blocks)
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if not body.get("stream"):
            return self._strip(
                json_response(
                    {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": blocks,
                        "stop_reason": stop,
                        "stop_sequence": None,
                        "usage": usage,
                    }
                )
            )  # type: ignore[return-value]
        n = req.chunks(self.chunks)
        return SSEResponse(
            _anthropic_stream(msg_id, model, blocks, stop, usage, n),
            interval=self.interval,
            error_event=_anthropic_error_event,
            model=model,
        )

    def _reply_blocks(
        self, msgs: list[Any], last: str, tools: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str]:
        """The answer's blocks after any thinking block, and its stop reason. A method so a
        scripted fake (tests/conformance/scripted.py) can drive real clients' own tools."""
        if tools and "call tool" in last:
            tool = tools[0]
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_fake{next(self._ids):06d}",
                "name": tool["name"],
                "input": _sample_input(tool.get("input_schema") or {}),
            }
            return [block], "tool_use"
        if _tool_result(msgs):
            return [{"type": "text", "text": f"The tool returned: {_tool_result(msgs)}"}], "end_turn"
        return [{"type": "text", "text": self.reply if self.reply is not None else f"echo: {last}"}], "end_turn"


def _anthropic_stream(
    msg_id: str, model: str, blocks: list[dict[str, Any]], stop: str, usage: dict[str, Any], n: int
) -> Iterator[bytes]:
    def ev(type_: str, **data: Any) -> bytes:
        return sse_event({"type": type_, **data}, event=type_)

    start_usage = {**usage, "output_tokens": 1}
    yield ev(
        "message_start",
        message={
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        },
    )
    yield ev("ping")
    for i, block in enumerate(blocks):
        if block["type"] == "thinking":
            yield ev("content_block_start", index=i, content_block={"type": "thinking", "thinking": ""})
            for piece in iter_split(block["thinking"], n):
                yield ev("content_block_delta", index=i, delta={"type": "thinking_delta", "thinking": piece})
            yield ev("content_block_delta", index=i, delta={"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] == "tool_use":
            yield ev(
                "content_block_start",
                index=i,
                content_block={"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}},
            )
            for piece in iter_split(orjson.dumps(block["input"]).decode(), n):
                yield ev("content_block_delta", index=i, delta={"type": "input_json_delta", "partial_json": piece})
        else:
            yield ev("content_block_start", index=i, content_block={"type": "text", "text": ""})
            for piece in iter_split(block["text"], n):
                yield ev("content_block_delta", index=i, delta={"type": "text_delta", "text": piece})
        yield ev("content_block_stop", index=i)
    yield ev(
        "message_delta",
        delta={"stop_reason": stop, "stop_sequence": None},
        usage={"output_tokens": usage["output_tokens"]},
    )
    yield ev("message_stop")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _last_user_text(msgs: list[Any]) -> str:
    for msg in reversed(msgs):
        if isinstance(msg, dict) and msg.get("role") == "user":
            text = _content_text(msg.get("content"))
            if text:
                return text
    return ""


def _tool_result(msgs: list[Any]) -> str:
    last = msgs[-1] if msgs else None
    if isinstance(last, dict) and isinstance(last.get("content"), list):
        for block in last["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                return _content_text(block.get("content")) or str(block.get("content") or "")
    return ""


def _texts(body: dict[str, Any]) -> list[str]:
    out = [_content_text(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)]
    system = body.get("system")
    out.append(system if isinstance(system, str) else _content_text(system))
    return out


def _sample_input(schema: dict[str, Any]) -> dict[str, Any]:
    samples = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True}
    return {
        name: samples.get(str((prop or {}).get("type")), "Paris")
        for name, prop in (schema.get("properties") or {}).items()
    }


# ------------------------------------------------------------------------- standalone


@dataclass
class GitLabFakes:
    world: GitLabWorld
    instance: FakeServer[GitLabInstanceApp]
    gateway: FakeServer[GitLabGatewayApp]

    @property
    def instance_url(self) -> str:
        return self.instance.url

    @property
    def gateway_url(self) -> str:
        return self.gateway.url + "/ai"

    def reset(self) -> None:
        self.world.reset()
        self.instance.reset()
        self.gateway.reset()

    def stop(self) -> None:
        self.instance.stop()
        self.gateway.stop()


def serve(
    *,
    port: int = 0,
    gateway_port: int = 0,
    chunks: int = 10,
    interval: float = 0.0,
    responses_only: Iterable[str] = (),
) -> GitLabFakes:
    world = GitLabWorld()
    instance = FakeServer(GitLabInstanceApp(world, chunks=chunks, interval=interval), port=port).start()
    gateway = FakeServer(
        GitLabGatewayApp(world, chunks=chunks, interval=interval, responses_only=responses_only), port=gateway_port
    ).start()
    return GitLabFakes(world, instance, gateway)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake GitLab instance + AI gateway")
    parser.add_argument("--port", type=int, default=9200, help="GitLab instance port")
    parser.add_argument("--gateway-port", type=int, default=0, help="AI gateway port (default: --port + 1)")
    parser.add_argument("--pat", action="append", default=[], help="accept this personal access token (repeatable)")
    parser.add_argument("--client-id", default="proxy-app", help="a registered OAuth application id")
    parser.add_argument("--redirect-uri", default="http://localhost:17171/auth/callback")
    parser.add_argument("--device-pending-polls", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between stream events")
    args = parser.parse_args(argv)
    fakes = serve(
        port=args.port, gateway_port=args.gateway_port or args.port + 1, chunks=args.chunks, interval=args.interval
    )
    fakes.world.device_pending_polls = args.device_pending_polls
    fakes.world.add_app(args.client_id, redirect_uris=[args.redirect_uri])
    for pat in args.pat or ["glpat-demo-token-000000000000"]:
        fakes.world.add_pat(pat)
    print(
        f"fake GitLab instance on {fakes.instance_url}, AI gateway on {fakes.gateway_url}  (Ctrl-C to stop)", flush=True
    )
    wait_for_signal()
    fakes.stop()


if __name__ == "__main__":
    main()
