"""What the providers' account commands (`manage.py <provider>_login`, `account_add`, ...) share:
the same flags mean the same thing for every provider."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypedDict

from django.core.management.base import CommandError, CommandParser


class Rotation(TypedDict):
    priority: int
    weight: int


def add_login_mode(parser: CommandParser, *, pkce: str, device: str) -> None:
    """--pkce (paste the callback URL) or --device (approve a code elsewhere): one is required."""
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--pkce", action="store_true", help=pkce)
    mode.add_argument("--device", action="store_true", help=device)


def add_rotation(parser: CommandParser) -> None:
    """Where the account stands in rotation (see UpstreamAccount.priority / weight)."""
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--weight", type=int, default=1)


def add_allow_duplicate(parser: CommandParser, identity: str) -> None:
    parser.add_argument(
        "--allow-duplicate", action="store_true", help=f"add it even if this {identity} is already an account"
    )


def rotation(opts: Mapping[str, object]) -> Rotation:
    return {"priority": int(str(opts["priority"])), "weight": int(str(opts["weight"]))}


def secret_option(opts: Mapping[str, object], name: str, env: str, what: str) -> str:
    """A secret from its flag or, to keep it out of shell history, from the environment."""
    value = str(opts[name] or os.environ.get(env, ""))
    if not value:
        raise CommandError(f"{what} is required: --{name.replace('_', '-')} or {env}")
    return value
