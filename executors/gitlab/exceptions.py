"""Typed failures of GitLab login, refresh and minting.

Each carries a stable `kind`, a human message that names the cause (never a generic
"login failed"), GitLab's own error text, and the account state the failure implies
(docs/protocols/gitlab-duo.md#errors), so commands, Celery and the executor all react the same way.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass


@dataclass(eq=False, repr=False)  # an exception: identity equality, Exception's repr
class GitLabError(Exception):
    # kinds
    AUTH_FAILED = "auth_failed"  # GitLab token rejected/revoked, refresh token dead
    NO_DUO = "no_duo_access"  # token valid, no Duo seat/add-on
    DIRECT_DISABLED = "direct_connections_disabled"
    GRANT_DISABLED = "grant_not_enabled"  # third-party-agents grant refused by policy
    MISSING_SCOPE = "missing_scope"
    RATE_LIMITED = "rate_limited"  # mint rate limit
    MINT_FAILED = "mint_failed"  # GitLab-side transient (503 "Token creation failed" ...)
    UNREACHABLE = "unreachable"  # network
    LOGIN = "login"  # a login flow step failed (expired, denied, bad state, ...)

    # The human message (GitLab's own text appended once, at construction: see __post_init__).
    message: str
    _: KW_ONLY
    kind: str
    status: int = 0
    upstream_text: str = ""
    account_state: str | None = None
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.upstream_text:
            self.message = f"{self.message} (GitLab said: {self.upstream_text})"
        super().__init__(self.message)

    @property
    def transient(self) -> bool:
        return self.kind in (self.RATE_LIMITED, self.MINT_FAILED, self.UNREACHABLE)

    def to_json(self) -> dict[str, object]:
        return {
            "message": self.message,
            "kind": self.kind,
            "status": self.status,
            "account_state": self.account_state,
            "retry_after": self.retry_after,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> GitLabError:
        state, retry = data.get("account_state"), data.get("retry_after")
        return cls(
            str(data.get("message") or ""),  # already complete: no upstream_text to append again
            kind=str(data.get("kind") or cls.MINT_FAILED),
            status=int(data.get("status") or 0),  # type: ignore[call-overload]
            account_state=str(state) if state else None,
            retry_after=float(retry) if isinstance(retry, int | float) else None,
        )


class LoginPending(Exception):
    """Device grant: the user has not approved yet (keep polling after `interval` s)."""

    def __init__(self, interval: float, slow_down: bool = False) -> None:
        super().__init__("authorization pending")
        self.interval = interval
        self.slow_down = slow_down
