"""What a developer may do to their own keys, within what the admin set on their team.

A developer creates keys only in a team they belong to whose `member_key_limit` allows it, up
to that many enabled keys of theirs in the team; the key inherits the team's models and limits
(its own values can only narrow them). They rotate and revoke only keys they own. Every change
goes through accounts.services, so it is in the action log with the developer as the actor.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import ClientKey, Team
from accounts.services import client_key_create, client_key_rotate, client_key_set_enabled

EXPIRY_CHOICES_DAYS = (30, 90, 365)


class SelfServiceRefused(Exception):
    """A request the developer may not make, with a message for them."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KeyNotFound(SelfServiceRefused):
    """No key with that id belongs to this developer (the same answer whether it exists or not)."""

    def __init__(self) -> None:
        super().__init__("no such key")


def member_key_create(
    *,
    user: Any,
    team_id: int,
    name: str,
    expires_days: int | None = None,
    requests_per_minute: int | None = None,
    tokens_per_day: int | None = None,
    allowed_models: Iterable[str] = (),
) -> tuple[ClientKey, str]:
    """Create a key for `user` in one of their teams; returns (key, raw key shown once)."""
    name = name.strip()
    if not name:
        raise SelfServiceRefused("Give the key a name (e.g. the machine or tool it is for).")
    if expires_days is not None and expires_days not in EXPIRY_CHOICES_DAYS:
        raise SelfServiceRefused(f"Expiry must be one of {', '.join(map(str, EXPIRY_CHOICES_DAYS))} days, or none.")
    models = sorted({m.strip() for m in allowed_models if m and m.strip()})
    with transaction.atomic():
        # The row lock serialises two creates by the same team's members (PostgreSQL; SQLite
        # serialises writers anyway), so the key allowance cannot be overrun by a double click.
        team = Team.objects.select_for_update().filter(pk=team_id, members=user).first()
        if team is None:
            raise SelfServiceRefused("You are not a member of that team.")
        if team.member_key_limit <= 0:
            raise SelfServiceRefused(f"Team '{team.name}' does not let members create keys; ask an admin for one.")
        held = ClientKey.objects.filter(owner=user, team=team, enabled=True).count()
        if held >= team.member_key_limit:
            raise SelfServiceRefused(
                f"You already hold {held} active key(s) in team '{team.name}', its limit per member. "
                "Revoke one first, or ask an admin."
            )
        outside = sorted(set(models) - set(team.allowed_models or ())) if team.allowed_models else []
        if outside:
            raise SelfServiceRefused(f"Team '{team.name}' does not allow {', '.join(outside)}.")
        return client_key_create(
            name=name[:100],
            owner_id=user.pk,
            owner_label=user.get_username(),
            team_id=team.pk,
            expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None,
            allowed_models=models,
            requests_per_minute=requests_per_minute,
            tokens_per_day=tokens_per_day,
            actor=user,
        )


def _own_key(user: Any, key_id: int) -> ClientKey:
    key = ClientKey.objects.filter(pk=key_id, owner=user).first()
    if key is None:
        raise KeyNotFound
    return key


def member_key_rotate(*, user: Any, key_id: int) -> tuple[ClientKey, str]:
    """A new secret for one of the developer's keys (same record, limits and history)."""
    key = _own_key(user, key_id)
    if not key.enabled:
        raise SelfServiceRefused("A revoked key cannot be rotated; create a new one.")
    return key, client_key_rotate(key=key, actor=user)


def member_key_revoke(*, user: Any, key_id: int) -> ClientKey:
    key = _own_key(user, key_id)
    return client_key_set_enabled(key=key, enabled=False, actor=user) if key.enabled else key
