"""Per-account GitLab settings (UpstreamAccount.provider_config) and the DB view flows need.

provider_config keys (all non-secret):
    instance_url   GitLab instance, default https://gitlab.com
    gateway_url    AI gateway base, default https://cloud.gitlab.com/ai (self-managed gateways
                   differ and the third-party grant does not return a base URL,
                   docs/protocols/gitlab-duo.md#duo-entitlement-and-the-gateway-grant)
    auth           "oauth" | "pat"
    oauth          {"client_id", "redirect_uri", "scopes"}  (the client secret, if any, is in
                   the encrypted credential: a confidential app's later refreshes need it)
    user           {"id", "username", "name"}  identity seen at login
    pat            {"scopes", "expires_at"}
    models / aliases / fallback_models   see executors/gitlab/catalog.py
    transport      {"openai_wire": "auto" | "responses" | "chat"}
    fallback       {"mode": "code_suggestions" | "chat_rest"} for `fallback_models`
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accounts.models import Credential, UpstreamAccount
from accounts.validators import upstream_url_checked

DEFAULT_INSTANCE_URL = "https://gitlab.com"
DEFAULT_GATEWAY_URL = "https://cloud.gitlab.com/ai"
# docs/protocols/gitlab-duo.md#sign-in-and-tokens: `api` because gitlab-lsp-style checks and GraphQL need it;
# read_user for identity.
DEFAULT_SCOPES = "api read_user"


def instance_url(config: Mapping[str, Any]) -> str:
    configured = config.get("instance_url")
    # A configured URL is checked again where it is used (SSRF guard, accounts/validators.py).
    return upstream_url_checked(str(configured)) if configured else DEFAULT_INSTANCE_URL


def gateway_url(config: Mapping[str, Any]) -> str:
    configured = config.get("gateway_url")
    return upstream_url_checked(str(configured)) if configured else DEFAULT_GATEWAY_URL


@dataclass(frozen=True, slots=True)
class GitLabAccount:
    """A fresh read of one GitLab account and its decrypted credential (never cached)."""

    id: int
    label: str
    state: str
    config: dict[str, Any]
    kind: str  # CredentialKind: "oauth" | "pat"
    secret: dict[str, Any]
    expires_at: datetime | None

    @property
    def instance_url(self) -> str:
        return instance_url(self.config)

    @property
    def gateway_url(self) -> str:
        return gateway_url(self.config)

    def __repr__(self) -> str:  # never print the secret
        return f"GitLabAccount(id={self.id}, label={self.label!r}, kind={self.kind!r})"


def gitlab_account_load(account_id: int) -> GitLabAccount:
    row = UpstreamAccount.objects.select_related("credential").get(pk=account_id)
    credential: Credential = row.credential
    return GitLabAccount(
        id=row.id,
        label=row.label,
        state=row.state,
        config=dict(row.provider_config or {}),
        kind=credential.kind,
        secret=dict(credential.secret or {}),
        expires_at=credential.expires_at,
    )
