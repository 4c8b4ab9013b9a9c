"""GitLab's parts of the accounts board: the gateway-token column and "Refresh credential now"."""

from __future__ import annotations

from django.db.models import Min, OuterRef, QuerySet, Subquery

from accounts.display import until_label
from accounts.models import UpstreamAccount
from accounts.providers import BoardColumn, ProbeResult
from executors.gitlab import CredentialKind
from executors.gitlab.exceptions import GitLabError
from executors.gitlab.executor import EXECUTOR
from executors.gitlab.models import GatewayToken
from executors.gitlab.services import gitlab_credential_refresh
from executors.probe import executor_refresh


def board_annotate(queryset: QuerySet[UpstreamAccount]) -> QuerySet[UpstreamAccount]:
    # A subquery keeps the board at one SQL query however many accounts it lists.
    return queryset.annotate(
        gateway_expires=Subquery(
            GatewayToken.objects.filter(account=OuterRef("pk"))
            .values("account")
            .annotate(m=Min("expires_at"))
            .values("m")[:1]
        )
    )


GATEWAY_COLUMN = BoardColumn(
    "gateway_expiry", "gateway token expires", lambda obj: until_label(getattr(obj, "gateway_expires", None))
)


def _oauth_pair_refresh(account: UpstreamAccount) -> ProbeResult | None:
    """OAuth accounts: rotate the OAuth pair now. The executor's refresh re-mints only the
    gateway token (touching the pair only near its expiry), but "refresh credential now" on an
    OAuth account should prove the refresh token still works. None = not an OAuth account."""
    cred = getattr(account, "credential", None)
    if cred is None or cred.kind != CredentialKind.OAUTH:
        return None
    try:
        gitlab_credential_refresh(account_id=account.pk)
    except GitLabError as exc:
        return ProbeResult(False, f"OAuth refresh failed: {exc.message}", upstream_text=exc.upstream_text)
    return ProbeResult(True, "OAuth token pair refreshed")


def board_refresh(account: UpstreamAccount) -> ProbeResult:
    pair = _oauth_pair_refresh(account)
    if pair is not None and not pair.ok:
        return pair
    result = _executor_refresh(account)
    if result.ok and result.message == "credential refreshed":
        # Say what was refreshed: for GitLab the executor's "credential" is the gateway token.
        cred = getattr(account, "credential", None)
        result.message = (
            "OAuth token pair refreshed; gateway token re-minted"
            if pair is not None
            else "gateway token re-minted (a personal access token itself cannot be refreshed)"
            if cred is not None and cred.kind == CredentialKind.PAT
            else "gateway token re-minted"
        )
    return result


_executor_refresh = executor_refresh(EXECUTOR)
