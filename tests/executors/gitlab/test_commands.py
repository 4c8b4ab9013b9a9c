"""gitlab_add_pat / gitlab_login commands against the fake instance."""

from __future__ import annotations

from io import StringIO

import httpx
import pytest
from django.core.management import CommandError, call_command

from accounts.models import UpstreamAccount
from tests.executors.gitlab.conftest import CLIENT_ID, PAT, REDIRECT
from tests.fakes.gitlab import GitLabFakes

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_add_pat_command(gitlab: GitLabFakes) -> None:
    out = StringIO()
    call_command(
        "gitlab_add_pat",
        "--label",
        "duo",
        "--token",
        PAT,
        "--instance-url",
        gitlab.instance_url,
        "--gateway-url",
        gitlab.gateway_url,
        stdout=out,
    )
    assert "state=active" in out.getvalue() and PAT not in out.getvalue()
    gitlab.world.users[1].duo = False
    with pytest.raises(CommandError, match="token valid but this user has no GitLab Duo access"):
        call_command("gitlab_add_pat", "--label", "other", "--token", PAT, "--instance-url", gitlab.instance_url)


def test_login_device_command(gitlab: GitLabFakes, monkeypatch: pytest.MonkeyPatch) -> None:
    gitlab.world.device_interval = 0.01
    gitlab.world.device_pending_polls = 1
    out = StringIO()
    call_command(
        "gitlab_login",
        "--device",
        "--label",
        "duo",
        "--client-id",
        CLIENT_ID,
        "--instance-url",
        gitlab.instance_url,
        "--gateway-url",
        gitlab.gateway_url,
        stdout=out,
    )
    assert "enter the code" in out.getvalue() and "state=active" in out.getvalue()
    assert UpstreamAccount.objects.get(label="duo").credential.kind == "oauth"


def test_login_pkce_command_reads_the_pasted_callback(gitlab: GitLabFakes, monkeypatch: pytest.MonkeyPatch) -> None:
    def paste(_prompt: str) -> str:
        url = out.getvalue().strip().splitlines()[-1]
        return httpx.get(url, follow_redirects=False).headers["location"]

    out = StringIO()
    monkeypatch.setattr("builtins.input", paste)
    call_command(
        "gitlab_login",
        "--pkce",
        "--label",
        "duo",
        "--client-id",
        CLIENT_ID,
        "--redirect-uri",
        REDIRECT,
        "--instance-url",
        gitlab.instance_url,
        stdout=out,
    )
    assert "state=active" in out.getvalue()
