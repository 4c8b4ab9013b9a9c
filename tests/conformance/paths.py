"""The four upstream paths of the matrix: accounts on the scripted fakes, and how to watch them.

Each cell creates its own accounts (the database is flushed between tests), so a cell's model
name can only route to the path under test. Failure-injection cells get two accounts on the
same fake: the injected fault hits whichever account the proxy tries first, and the second
must serve the request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.base import FakeServer, Fault, RecordedRequest
from tests.fakes.codex import FakeChatGPTAccount
from tests.fakes.gitlab import GitLabFakes, User

GITLAB_ANTHROPIC = "gitlab-anthropic"
GITLAB_OPENAI = "gitlab-openai"
CODEX = "codex"
OPENAI_COMPAT = "openai-compat"
OPENAI_RESPONSES = "openai-responses"
ANTHROPIC_API = "anthropic-api"
PATHS = (GITLAB_ANTHROPIC, GITLAB_OPENAI, CODEX, OPENAI_COMPAT, OPENAI_RESPONSES, ANTHROPIC_API)

PATH_TITLES = {
    GITLAB_ANTHROPIC: "GitLab Duo → AI gateway Anthropic path (claude-sonnet-4-6)",
    GITLAB_OPENAI: "GitLab Duo → AI gateway OpenAI path (gpt-5.1)",
    CODEX: "Codex account (ChatGPT backend, gpt-5.5)",
    OPENAI_COMPAT: "OpenAI-compatible account, Chat Completions (gpt-4o-mini)",
    OPENAI_RESPONSES: "OpenAI-compatible account, Responses (gpt-5.5, a responses-only model)",
    ANTHROPIC_API: "Anthropic API key account (claude-sonnet-4-6)",
}
MODELS = {
    GITLAB_ANTHROPIC: "claude-sonnet-4-6",
    GITLAB_OPENAI: "gpt-5.1",
    CODEX: "gpt-5.5",
    OPENAI_COMPAT: "gpt-4o-mini",
    OPENAI_RESPONSES: "gpt-5.5",
    ANTHROPIC_API: "claude-sonnet-4-6",
}
# Models the OpenAI-compatible fake serves only on /v1/responses.
RESPONSES_ONLY = ("gpt-5.5",)

GITLAB_PATS = ("glpat-conformance-user-a-000000", "glpat-conformance-user-b-000000")
OPENAI_KEYS = ("sk-upstream-A", "sk-upstream-B")
ANTHROPIC_KEYS = ("sk-ant-api03-conformance-A-0000", "sk-ant-api03-conformance-B-0000")
CODEX_ACCOUNTS = (
    FakeChatGPTAccount(account_id="acc-conf-000a", user_id="user-conf-000a", email="a@example.com"),
    FakeChatGPTAccount(account_id="acc-conf-000b", user_id="user-conf-000b", email="b@example.com"),
)


@dataclass
class Fakes:
    gitlab: GitLabFakes
    codex: FakeServer[Any]
    openai: FakeServer[Any]
    anthropic: FakeServer[Any]

    def reset(self) -> None:
        self.gitlab.reset()
        self.codex.reset()
        self.openai.reset()
        self.anthropic.reset()

    @classmethod
    def serve(cls) -> Fakes:
        """Every fake of the paths, scripted for real clients, on free ports."""
        from tests.conformance.scripted import serve_anthropic, serve_codex, serve_gitlab, serve_openai_compat

        return cls(
            gitlab=serve_gitlab(),
            codex=serve_codex(CODEX_ACCOUNTS),
            openai=serve_openai_compat(OPENAI_KEYS, [MODELS[OPENAI_COMPAT], MODELS[OPENAI_RESPONSES]], RESPONSES_ONLY),
            anthropic=serve_anthropic(ANTHROPIC_KEYS, [MODELS[ANTHROPIC_API]]),
        )

    def stop(self) -> None:
        self.gitlab.stop()
        self.codex.stop()
        self.openai.stop()
        self.anthropic.stop()

    def violations(self) -> list[Any]:
        """Rules of docs/fake-rules.md any fake enforced since the last reset."""
        servers = (self.gitlab.instance, self.gitlab.gateway, self.codex, self.openai, self.anthropic)
        return [v for server in servers for v in server.violations]


@dataclass
class Upstream:
    """What a cell needs from its path: the model to ask for and the fake to watch/break."""

    name: str
    model: str
    server: FakeServer[Any]
    model_path: Callable[[str], bool]  # recorded request path -> is a model call

    def calls(self) -> list[RecordedRequest]:
        return [r for r in self.server.requests if self.model_path(r["path"])]

    def push(self, fault: Fault) -> None:
        # The Codex fake also serves token refreshes: only its model calls may be broken. The
        # gateway and the OpenAI fake receive model calls only (grants are minted on the instance).
        self.server.faults.push(fault.where(path="/backend-api/codex/responses") if self.name == CODEX else fault)


def setup_path(name: str, fakes: Fakes, *, accounts: int = 1) -> Upstream:
    """Create `accounts` accounts for path `name` (priority: the first one is tried first)."""
    if name in (GITLAB_ANTHROPIC, GITLAB_OPENAI):
        from executors.gitlab.grants import gitlab_grant_cache_clear
        from executors.gitlab.services import gitlab_pat_add

        gitlab_grant_cache_clear()
        world = fakes.gitlab.world
        for i in range(accounts):
            if i:
                world.add_user(User(i + 1, f"duo-user-{i + 1}", namespace_id=str(123 + i), project_id=str(456 + i)))
            world.add_pat(GITLAB_PATS[i], user_id=i + 1)
            gitlab_pat_add(
                label=f"duo-{chr(97 + i)}",
                token=GITLAB_PATS[i],
                instance_url=fakes.gitlab.instance_url,
                gateway_url=fakes.gitlab.gateway_url,
                priority=10 - i,
            )
        if name == GITLAB_ANTHROPIC:
            return Upstream(name, MODELS[name], fakes.gitlab.gateway, lambda p: p.endswith("/anthropic/v1/messages"))
        return Upstream(name, MODELS[name], fakes.gitlab.gateway, lambda p: "/proxy/openai/" in p)
    if name == CODEX:
        from executors.codex.services import codex_import_auth_json

        for i in range(accounts):
            codex_import_auth_json(
                data=fakes.codex.app.auth_json(CODEX_ACCOUNTS[i].account_id),
                label=f"codex-{chr(97 + i)}",
                base_url=fakes.codex.url + "/backend-api/codex",
                model_names=["gpt-5.5"],
                provider_config={"auth_url": fakes.codex.url},
            )
        return Upstream(name, MODELS[name], fakes.codex, lambda p: p == "/backend-api/codex/responses")
    if name in (OPENAI_COMPAT, OPENAI_RESPONSES):
        from executors.openai_compat.services import account_add_openai_compat

        for i in range(accounts):
            account_add_openai_compat(
                label=f"compat-{chr(97 + i)}",
                base_url=fakes.openai.url + "/v1",
                api_key=OPENAI_KEYS[i],
                model_names=[MODELS[name]],
                priority=10 - i,
            )
        return Upstream(name, MODELS[name], fakes.openai, lambda p: p in ("/v1/chat/completions", "/v1/responses"))
    if name == ANTHROPIC_API:
        from executors.anthropic.services import account_add_anthropic

        for i in range(accounts):
            account_add_anthropic(
                label=f"anthropic-{chr(97 + i)}",
                base_url=fakes.anthropic.url,
                api_key=ANTHROPIC_KEYS[i],
                model_names=[MODELS[name]],
                priority=10 - i,
            )
        return Upstream(name, MODELS[name], fakes.anthropic, lambda p: p == "/v1/messages")
    raise ValueError(f"unknown path {name!r}")
