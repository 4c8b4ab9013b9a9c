"""GitLab Duo as the rest of the proxy sees it (registered by apps.GitLabApp.ready)."""

from __future__ import annotations

from executors.gitlab import KIND, CredentialKind
from executors.gitlab.admin import GATEWAY_COLUMN, board_annotate, board_refresh
from executors.gitlab.executor import EXECUTOR
from executors.gitlab.flows import FLOWS
from executors.gitlab.models import GatewayToken
from executors.registry import provider_spec

PROVIDER = provider_spec(
    kind=KIND,
    label="GitLab Duo",
    executor=EXECUTOR,
    credential_kinds={CredentialKind.OAUTH: "OAuth", CredentialKind.PAT: "Personal access token"},
    flows=tuple(FLOWS),
    periodic_tasks={
        "gitlab-tokens-refresh": {"task": "executors.gitlab.tasks.gitlab_tokens_refresh_task", "schedule": 120.0},
    },
    refresh=board_refresh,
    board_annotate=board_annotate,
    board_columns=(GATEWAY_COLUMN,),
    secret_models=(GatewayToken,),
)
