"""ChatGPT OAuth wire calls (docs/protocols/codex.md#sign-in-chatgpt-oauth): PKCE pieces, code exchange, device code,
refresh.

Pure HTTP + parsing; no database. Services in executors/codex/services.py decide what to
store and when. Every call takes the auth base URL so tests and demos point it at the fake.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlparse

import httpx

from executors.codex.config import DEVICE_REDIRECT_PATH, PKCE_REDIRECT_URI, SCOPES, CodexConfig

_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

# Refresh errors after which the refresh token can never work again (docs/protocols/codex.md#token-refresh; Floway's
# wider set).
TERMINAL_REFRESH_CODES = frozenset(
    {
        "refresh_token_expired",
        "refresh_token_reused",
        "refresh_token_invalidated",
        "invalid_grant",
        "app_session_terminated",
        "invalid_refresh_token",
        "invalid_client",
        "unauthorized_client",
        "access_denied",
    }
)
# Errors that mean "someone else may have rotated it": re-read storage before giving up.
ROTATED_ELSEWHERE_CODES = frozenset({"refresh_token_reused", "invalid_grant"})


class OAuthError(Exception):
    """The auth server refused. `code` is its error code; `terminal` = do not retry."""

    def __init__(self, message: str, *, code: str = "", status: int = 0, terminal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.terminal = terminal


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str | None
    refresh_token: str | None
    id_token: str | None
    expires_in: float | None


@dataclass(frozen=True, slots=True)
class PkcePair:
    verifier: str
    challenge: str


def pkce_pair() -> PkcePair:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return PkcePair(verifier, challenge)


def new_state() -> str:
    # docs/protocols/codex.md#sign-in-chatgpt-oauth: 32 random bytes, base64url without padding.
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def authorize_url(cfg: CodexConfig, *, state: str, challenge: str, workspace_id: str = "") -> str:
    params = {
        "response_type": "code",
        "client_id": cfg.client_id,
        "redirect_uri": PKCE_REDIRECT_URI,
        "scope": SCOPES,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": state,
        "originator": cfg.originator,
    }
    if workspace_id:
        params["allowed_workspace_id"] = workspace_id
    # %20 (not "+") for spaces, as the CLI builds it.
    return f"{cfg.auth_url}/oauth/authorize?{urlencode(params, quote_via=quote)}"


@dataclass(frozen=True, slots=True)
class CallbackParams:
    code: str
    state: str


def parse_callback(url: str) -> CallbackParams:
    """The pasted `http://localhost:1455/auth/callback?code=…&state=…` URL (or its query)."""
    text = url.strip()
    query = urlparse(text).query if "://" in text else text.lstrip("?")
    params = {k: v[0] for k, v in parse_qs(query).items() if v}
    if "error" in params:
        description = params.get("error_description", "")
        if "missing_codex_entitlement" in description:
            raise OAuthError(
                "Codex is not enabled for this ChatGPT workspace (missing_codex_entitlement)",
                code="missing_codex_entitlement",
                terminal=True,
            )
        raise OAuthError(
            f"sign-in failed: {params['error']} {description}".strip(), code=params["error"], terminal=True
        )
    if not params.get("code") or not params.get("state"):
        raise OAuthError("the pasted URL has no code/state; paste the full address from the browser bar")
    return CallbackParams(code=params["code"], state=params["state"])


def _headers(cfg: CodexConfig) -> dict[str, str]:
    return {"originator": cfg.originator, "user-agent": cfg.user_agent, "accept": "application/json"}


def _error_of(response: httpx.Response) -> OAuthError:
    code = ""
    message = f"auth server answered HTTP {response.status_code}"
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or err.get("type") or "")
            message = str(err.get("message") or message)
        elif isinstance(err, str):
            code = err
            message = str(body.get("error_description") or err)
    terminal = code in TERMINAL_REFRESH_CODES or response.status_code == 401
    return OAuthError(message, code=code, status=response.status_code, terminal=terminal)


def _token_set(body: Any) -> TokenSet:
    if not isinstance(body, dict):
        raise OAuthError("auth server answered with something that is not a JSON object")

    def text(key: str) -> str | None:
        value = body.get(key)
        return value if isinstance(value, str) and value else None

    expires = body.get("expires_in")
    return TokenSet(
        access_token=text("access_token"),
        refresh_token=text("refresh_token"),
        id_token=text("id_token"),
        expires_in=float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else None,
    )


def exchange_code(cfg: CodexConfig, *, code: str, verifier: str, redirect_uri: str) -> TokenSet:
    # Form-encoded; never send `state` (the server answers 400 unknown_parameter) —
    # docs/protocols/codex.md#sign-in-chatgpt-oauth.
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": cfg.client_id,
        "code_verifier": verifier,
    }
    with httpx.Client(timeout=_TIMEOUT, trust_env=False) as client:
        response = client.post(f"{cfg.auth_url}/oauth/token", data=data, headers=_headers(cfg))
    if response.status_code >= 400:
        raise _error_of(response)
    tokens = _token_set(response.json())
    if not tokens.access_token or not tokens.refresh_token:
        raise OAuthError("the code exchange returned no access/refresh token")
    return tokens


@dataclass(frozen=True, slots=True)
class DeviceCode:
    device_auth_id: str
    user_code: str
    interval: float
    verification_url: str


def device_start(cfg: CodexConfig) -> DeviceCode:
    with httpx.Client(timeout=_TIMEOUT, trust_env=False) as client:
        response = client.post(
            f"{cfg.auth_url}/api/accounts/deviceauth/usercode", json={"client_id": cfg.client_id}, headers=_headers(cfg)
        )
    if response.status_code == 404:
        raise OAuthError("device-code sign-in is disabled on this auth server", code="device_disabled", status=404)
    if response.status_code >= 400:
        raise _error_of(response)
    body = response.json()
    user_code = body.get("user_code") or body.get("usercode")
    if not body.get("device_auth_id") or not user_code:
        raise OAuthError("device-code start returned no device_auth_id/user_code")
    try:
        # may be a string or an int (docs/protocols/codex.md#sign-in-chatgpt-oauth)
        interval = float(body.get("interval") or 5)
    except (TypeError, ValueError):
        interval = 5.0
    return DeviceCode(str(body["device_auth_id"]), str(user_code), max(1.0, interval), cfg.auth_url + "/codex/device")


@dataclass(frozen=True, slots=True)
class DeviceGrant:
    authorization_code: str
    code_verifier: str


def device_poll_once(cfg: CodexConfig, *, device_auth_id: str, user_code: str) -> DeviceGrant | None:
    """One poll: None while the user has not approved yet (403/404 = pending)."""
    with httpx.Client(timeout=_TIMEOUT, trust_env=False) as client:
        response = client.post(
            f"{cfg.auth_url}/api/accounts/deviceauth/token",
            json={"device_auth_id": device_auth_id, "user_code": user_code},
            headers=_headers(cfg),
        )
    if response.status_code in (403, 404):
        return None
    if response.status_code >= 400:
        raise _error_of(response)
    body = response.json()
    if not body.get("authorization_code") or not body.get("code_verifier"):
        raise OAuthError("device-code poll returned no authorization_code/code_verifier")
    return DeviceGrant(str(body["authorization_code"]), str(body["code_verifier"]))


def device_redirect_uri(cfg: CodexConfig) -> str:
    return cfg.auth_url + DEVICE_REDIRECT_PATH


async def refresh_tokens(cfg: CodexConfig, *, refresh_token: str) -> TokenSet:
    """The official JSON refresh request (docs/protocols/codex.md#token-refresh). The refresh token rotates on every
    call."""
    body = {"client_id": cfg.client_id, "grant_type": "refresh_token", "refresh_token": refresh_token}
    async with httpx.AsyncClient(timeout=_TIMEOUT, trust_env=False) as client:
        response = await client.post(f"{cfg.auth_url}/oauth/token", json=body, headers=_headers(cfg))
    if response.status_code >= 400:
        raise _error_of(response)
    try:
        return _token_set(response.json())
    except ValueError:
        raise OAuthError("auth server answered a refresh with non-JSON") from None
