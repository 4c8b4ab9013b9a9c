"""The flags every provider's account command shares (accounts/cli.py)."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError, CommandParser

from accounts.cli import add_allow_duplicate, add_login_mode, add_rotation, rotation, secret_option


def test_secret_comes_from_the_flag_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_API_KEY", "from-env")
    assert secret_option({"api_key": "from-flag"}, "api_key", "UPSTREAM_API_KEY", "an API key") == "from-flag"
    assert secret_option({"api_key": None}, "api_key", "UPSTREAM_API_KEY", "an API key") == "from-env"
    monkeypatch.delenv("UPSTREAM_API_KEY")
    with pytest.raises(CommandError, match=r"^an API key is required: --api-key or UPSTREAM_API_KEY$"):
        secret_option({"api_key": ""}, "api_key", "UPSTREAM_API_KEY", "an API key")


def test_shared_flags_parse_the_same_for_every_provider() -> None:
    parser = CommandParser()
    add_login_mode(parser, pkce="paste the callback", device="approve a code")
    add_rotation(parser)
    add_allow_duplicate(parser, "GitLab user")
    opts = vars(parser.parse_args(["--device", "--priority", "-2", "--weight", "3"]))
    assert opts["device"] and not opts["pkce"] and not opts["allow_duplicate"]
    assert rotation(opts) == {"priority": -2, "weight": 3}
    with pytest.raises(CommandError, match="not allowed"):  # one mode, not both
        parser.parse_args(["--device", "--pkce"])
