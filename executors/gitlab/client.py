"""The few GitLab instance endpoints the proxy calls, as small async functions.

Only HTTP and response shapes live here (docs/protocols/gitlab-duo.md#sign-in-and-tokens); what a status *means* for the
account is decided by the callers in oauth.py / grants.py / services.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from executors.gitlab.exceptions import GitLabError
from executors.http import http_client

GRANT_PATH = "/api/v4/ai/third_party_agents/direct_access"
USER_AGENT = "team-llm-proxy (GitLab Duo account)"
# GitLab's own token endpoints answer in well under a second; a hung instance must not hold a
# request (or a Celery worker) for the upstream read timeout of 10 minutes.
_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=10.0)


@asynccontextmanager
async def instance_client() -> AsyncIterator[httpx.AsyncClient]:
    """A short-lived client for sync callers (commands, Celery) that own no event loop."""
    async with httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False, trust_env=False) as client:
        yield client


def pooled_client() -> httpx.AsyncClient:
    """The per-loop pooled client for the request path (minting on demand)."""
    return http_client("gitlab_instance")


@dataclass(slots=True)
class Reply:
    status: int
    body: Any  # parsed JSON or None
    text: str  # GitLab's own error text (for messages), bounded
    headers: httpx.Headers

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self, message: str, kind: str = GitLabError.LOGIN, account_state: str | None = None) -> GitLabError:
        """This refusal as a GitLabError: our message, GitLab's status and own text."""
        return GitLabError(message, kind=kind, status=self.status, upstream_text=self.text, account_state=account_state)


def error_text(body: Any, raw: str) -> str:
    """GitLab's message from any of its envelopes: {"message": ...}, {"error": ..., "error_description": ...},
    FastAPI {"detail": ...} or plain text."""
    if isinstance(body, dict):
        parts: list[str] = []
        for key in ("error", "error_description", "message", "detail"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("error") or value.get("message") or orjson.dumps(value).decode()
            if isinstance(value, str) and value and value not in parts:
                parts.append(value)
        if parts:
            return ": ".join(parts)[:500]
    if isinstance(body, str):
        return body[:500]
    return raw.strip()[:500]


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    token: str | None = None,
    form: dict[str, str] | None = None,
    json: Any = None,
) -> Reply:
    headers = {"accept": "application/json", "user-agent": USER_AGENT}
    if token:
        headers["authorization"] = f"Bearer {token}"
    content: bytes | None = None
    if json is not None:
        headers["content-type"] = "application/json"
        content = orjson.dumps(json)
    try:
        resp = await client.request(method, url, headers=headers, data=form, content=content)
    except httpx.HTTPError as exc:
        raise GitLabError(
            f"GitLab instance unreachable ({type(exc).__name__} on {method} {httpx.URL(url).path})",
            kind=GitLabError.UNREACHABLE,
        ) from None
    raw = resp.text
    try:
        body = orjson.loads(resp.content) if resp.content else None
    except orjson.JSONDecodeError:
        body = None
    return Reply(status=resp.status_code, body=body, text=error_text(body, raw), headers=resp.headers)
