"""The flags both GitLab account commands (gitlab_login, gitlab_add_pat) take."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.management.base import CommandParser

from accounts.cli import add_allow_duplicate, add_rotation, rotation
from executors.gitlab.config import DEFAULT_GATEWAY_URL, DEFAULT_INSTANCE_URL
from executors.gitlab.services import AccountSettings


class LoginOptions(AccountSettings):
    label: str


def add_account_settings(parser: CommandParser) -> None:
    parser.add_argument("--instance-url", default=DEFAULT_INSTANCE_URL)
    parser.add_argument("--gateway-url", default=DEFAULT_GATEWAY_URL, help="AI gateway base URL")
    add_rotation(parser)
    parser.add_argument(
        "--keep-without-duo",
        action="store_true",
        help="save the account (state not_entitled) even if the Duo probe fails",
    )
    add_allow_duplicate(parser, "GitLab user")


def account_settings(opts: Mapping[str, object]) -> LoginOptions:
    return {
        "label": str(opts["label"]),
        "instance_url": str(opts["instance_url"]),
        "gateway_url": str(opts["gateway_url"]),
        **rotation(opts),
        "keep_without_duo": bool(opts["keep_without_duo"]),
        "allow_duplicate": bool(opts["allow_duplicate"]),
    }
