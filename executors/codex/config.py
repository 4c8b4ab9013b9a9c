"""Codex (ChatGPT sign-in) constants and the configuration knobs that drift with CLI releases.

Everything that the upstream fingerprints (CLI version, originator, OS/terminal strings) is
configuration: project-wide in Django settings (`CODEX_*`, all optional) and per account in
`UpstreamAccount.provider_config` (same keys, lower-case, without the prefix), so an operator
can follow a CLI release without a deploy. See docs/codex.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from accounts.validators import upstream_url_checked

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"  # public client, no secret (docs/protocols/codex.md#sign-in-chatgpt-oauth)
DEFAULT_AUTH_URL = "https://auth.openai.com"
DEFAULT_BASE_URL = "https://chatgpt.com/backend-api/codex"
PKCE_REDIRECT_URI = "http://localhost:1455/auth/callback"
DEVICE_REDIRECT_PATH = "/deviceauth/callback"
DEVICE_VERIFY_PATH = "/codex/device"
SCOPES = "openid profile email offline_access"
FIRST_PARTY_ORIGINATORS = frozenset({"codex_cli_rs", "codex-tui", "codex_exec", "codex_vscode"})
DEFAULT_MODELS = ("gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "gpt-5.2")

# The CLI release whose fingerprint we present (docs/protocols/codex.md#request-fingerprint: 0.144+ unlocks the gpt-5.6
# family in the catalog). Bump with CLI releases; per account via provider_config.
_DEFAULTS: dict[str, Any] = {
    "auth_url": DEFAULT_AUTH_URL,
    "client_id": CLIENT_ID,
    "client_version": "0.169.0",
    "originator": "codex_cli_rs",
    "os_name": "Mac OS",
    "os_version": "26.5.0",
    "arch": "arm64",
    "terminal": "iTerm.app/3.6.10",
    "beta_features": "",
    # Refresh-ahead: the access token lives ~10 days (docs/protocols/codex.md#token-refresh); refresh a day early in
    # Celery,
    # and inline on the request path when less than this many seconds are left.
    "refresh_ahead_seconds": 86400,
    "inline_refresh_seconds": 300,
    # Upstream WebSocket transport for models the catalog flags `prefer_websockets` and for
    # clients on a WebSocket (docs/protocols/codex.md#transport-http-and-websocket).
    "websockets": True,
    # A socket kept for a client conversation is replaced before the backend's 60-minute cap.
    "websocket_max_age_seconds": 3300,
    # The backend refuses a request with neither `instructions` nor a developer item
    # (400 "Instructions are required", docs/codex.md). Sent only when the caller gave no
    # system/developer text at all; an account can word it differently.
    "default_instructions": "You are a helpful assistant.",
}


@dataclass(frozen=True, slots=True)
class CodexConfig:
    auth_url: str
    client_id: str
    client_version: str
    originator: str
    os_name: str
    os_version: str
    arch: str
    terminal: str
    beta_features: str
    refresh_ahead_seconds: float
    inline_refresh_seconds: float
    websockets: bool
    websocket_max_age_seconds: float
    default_instructions: str

    @property
    def user_agent(self) -> str:
        # docs/protocols/codex.md#request-fingerprint: `{originator}/{version} ({os} {os_version}; {arch}) {terminal}`.
        # Never a product suffix: wrapper suffixes draw selective 401s.
        return (
            f"{self.originator}/{self.client_version} ({self.os_name} {self.os_version}; {self.arch}) {self.terminal}"
        )


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off")
    return bool(value)


def codex_config(provider_config: Mapping[str, Any] | None = None) -> CodexConfig:
    """Defaults < Django settings `CODEX_<KEY>` < the account's provider_config."""
    values: dict[str, Any] = {}
    per_account = provider_config or {}
    for key, default in _DEFAULTS.items():
        value = per_account.get(key)
        if value in (None, ""):
            value = getattr(settings, f"CODEX_{key.upper()}", default)
        values[key] = value
    values["auth_url"] = str(values["auth_url"]).rstrip("/")
    if per_account.get("auth_url"):
        # Refresh tokens are sent there: checked again where it is used (accounts/validators.py).
        values["auth_url"] = upstream_url_checked(values["auth_url"])
    values["refresh_ahead_seconds"] = float(values["refresh_ahead_seconds"])
    values["inline_refresh_seconds"] = float(values["inline_refresh_seconds"])
    values["websockets"] = _flag(values["websockets"])
    values["websocket_max_age_seconds"] = float(values["websocket_max_age_seconds"])
    for key in (
        "client_id",
        "client_version",
        "originator",
        "os_name",
        "os_version",
        "arch",
        "terminal",
        "beta_features",
        "default_instructions",
    ):
        values[key] = str(values[key])
    if not values["default_instructions"].strip():
        values["default_instructions"] = _DEFAULTS["default_instructions"]  # never send blank instructions
    return CodexConfig(**values)
