"""Account and client-key business logic. Admin, commands and tasks call these."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from accounts.crypto import reencrypt
from accounts.models import AccountState, ClientKey, Credential, Team, UpstreamAccount
from accounts.providers import credential_kind_choices, provider_get, providers_all
from accounts.validators import provider_config_validate, upstream_url_validate
from audit.services import admin_action_log, changes_between
from infra.redact import redact
from statestore.factory import call_sync

CLIENT_KEY_PREFIX = "sk-team-"
CACHE_VERSION_KEY = "cache:version"


def client_key_hash(raw_key: str) -> str:
    # Keys carry 256 random bits, so a fast unsalted hash is safe against offline guessing
    # and lets verification be one indexed equality lookup.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def cache_version_bump() -> None:
    """Tell every process that keys or accounts changed (their caches re-read within ~1 s)."""

    async def bump(store: Any) -> int:
        return int(await store.incr(CACHE_VERSION_KEY))

    call_sync(bump)


def _on_commit_bump() -> None:
    transaction.on_commit(cache_version_bump)


def account_create(
    *,
    label: str,
    provider: str,
    base_url: str,
    model_names: Iterable[str],
    credential_kind: str,
    secret: dict[str, Any],
    priority: int = 0,
    weight: int = 1,
    enabled: bool = True,
    provider_config: dict[str, Any] | None = None,
    actor: Any | None = None,
) -> UpstreamAccount:
    if provider_get(provider) is None:
        raise ValueError(f"unknown provider {provider!r}")
    if credential_kind not in dict(credential_kind_choices()):
        raise ValueError(f"unknown credential kind {credential_kind!r}")
    base_url = upstream_url_validate(base_url)  # SSRF guard: raises ValidationError
    provider_config_validate(provider_config or {})  # and every URL in provider_config
    with transaction.atomic():
        account = UpstreamAccount.objects.create(
            label=label,
            provider=provider,
            base_url=base_url.rstrip("/"),
            model_names=sorted({m.strip() for m in model_names if m.strip()}),
            priority=priority,
            weight=weight,
            enabled=enabled,
            provider_config=provider_config or {},
        )
        Credential.objects.create(account=account, kind=credential_kind, secret=secret)
        admin_action_log(
            actor=actor,
            action="account.create",
            target_type="account",
            target_id=account.pk,
            target_label=account.label,
            changes={
                **{f: [None, getattr(account, f)] for f in _ACCOUNT_LOGGED if f != "state"},
                "credential_kind": [None, credential_kind],
            },
        )
        _on_commit_bump()
    return account


class DuplicateIdentity(Exception):
    """The upstream identity being added (the same ChatGPT account, the same GitLab user) is
    already an account here: two accounts would share one upstream quota and one credential
    family, and refreshing one can log the other out. Providers raise it when adding a new
    account unless the caller explicitly allows the duplicate."""

    def __init__(self, *, identity: str, existing: str) -> None:
        super().__init__(
            f"{identity} is already added as account '{existing}'. To replace its credential, sign in again "
            f"with the label '{existing}'; to add it twice anyway, confirm the duplicate."
        )
        self.identity = identity
        self.existing = existing


def account_credential_logged(*, account: UpstreamAccount, created: bool, actor: Any | None, **extra: Any) -> None:
    """Action-log entry for a provider that saved an account's credential itself (a sign-in
    flow): a new account, or a re-login that replaced the credential. Never the secret."""
    if created:
        changes = {f: [None, getattr(account, f)] for f in _ACCOUNT_LOGGED if f != "state"}
        action = "account.create"
    else:
        changes, action = {}, "account.credential_replace"
    admin_action_log(
        actor=actor,
        action=action,
        target_type="account",
        target_id=account.pk,
        target_label=account.label,
        changes={**changes, **{k: [None, v] for k, v in extra.items()}},
    )


# Fields whose old -> new values go to the admin action log (never credentials).
_ACCOUNT_LOGGED = ("label", "provider", "base_url", "enabled", "priority", "weight", "model_names", "state")
_KEY_LOGGED = (
    "name",
    "owner_label",
    "owner_id",
    "team_id",
    "enabled",
    "expires_at",
    "allowed_models",
    "requests_per_minute",
    "tokens_per_day",
    "budget_tokens",
    "budget_period",
)


def account_update(*, account: UpstreamAccount, actor: Any | None = None, **fields: Any) -> UpstreamAccount:
    allowed = {
        "label",
        "base_url",
        "enabled",
        "priority",
        "weight",
        "model_names",
        "state",
        "last_error",
        "provider_config",
    }
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    if "base_url" in fields:
        fields["base_url"] = upstream_url_validate(fields["base_url"])
    if "provider_config" in fields:
        provider_config_validate(fields["provider_config"] or {})
    if fields.get("last_error"):
        fields["last_error"] = redact(fields["last_error"])  # upstream text: never a secret
    with transaction.atomic():
        before = {name: getattr(account, name) for name in fields}
        for name, value in fields.items():
            setattr(account, name, value)
        if "last_error" in fields:
            account.last_error_at = timezone.now() if fields["last_error"] else None
        account.save()
        # last_error is the upstream's text, written by probes and executors: not an admin change.
        changes = changes_between(before, {k: v for k, v in fields.items() if k != "last_error"})
        if changes:
            admin_action_log(
                actor=actor,
                action="account.update",
                target_type="account",
                target_id=account.pk,
                target_label=account.label,
                changes=changes,
            )
        _on_commit_bump()
    return account


def account_set_enabled(*, account: UpstreamAccount, enabled: bool, actor: Any | None = None) -> UpstreamAccount:
    return account_update(account=account, enabled=enabled, actor=actor)


def credential_set_secret(
    *, account: UpstreamAccount, secret: dict[str, Any], expires_at: datetime | None = None, actor: Any | None = None
) -> None:
    with transaction.atomic():
        # The field encrypts on the way in (update() runs get_prep_value): pass the dict.
        updated = Credential.objects.filter(account=account).update(
            secret=secret,  # type: ignore[misc]  # the secret field stores dicts
            expires_at=expires_at,
            updated_at=timezone.now(),
        )
        if not updated:
            raise ValueError(f"account '{account.label}' has no credential to replace")
        # Only the fact of the change and the new expiry: never any part of the secret.
        admin_action_log(
            actor=actor,
            action="account.credential_replace",
            target_type="account",
            target_id=account.pk,
            target_label=account.label,
            changes={"expires_at": [None, expires_at]},
        )
        _on_commit_bump()


def account_delete(*, account: UpstreamAccount, actor: Any | None = None) -> None:
    """Delete an account with its credential and gateway tokens. Usage records keep its label."""
    with transaction.atomic():
        admin_action_log(
            actor=actor,
            action="account.delete",
            target_type="account",
            target_id=account.pk,
            target_label=account.label,
            changes={f: [getattr(account, f), None] for f in ("label", "provider", "base_url")},
        )
        account.delete()
        _on_commit_bump()


def client_key_create(
    *,
    name: str,
    owner_label: str = "",
    owner_id: int | None = None,
    team_id: int | None = None,
    expires_at: datetime | None = None,
    allowed_models: Iterable[str] = (),
    requests_per_minute: int | None = None,
    tokens_per_day: int | None = None,
    budget_tokens: int | None = None,
    budget_period: str = "month",
    actor: Any | None = None,
) -> tuple[ClientKey, str]:
    """Create a key; the raw key is returned once and never stored."""
    raw, prefix, digest = _client_key_new_secret()
    with transaction.atomic():
        key = ClientKey.objects.create(
            name=name,
            owner_label=owner_label,
            owner_id=owner_id,
            team_id=team_id,
            prefix=prefix,
            key_hash=digest,
            expires_at=expires_at,
            allowed_models=sorted({m.strip() for m in allowed_models if m.strip()}),
            requests_per_minute=requests_per_minute,
            tokens_per_day=tokens_per_day,
            budget_tokens=budget_tokens,
            budget_period=budget_period,
        )
        _key_logged(key, "key.create", {f: [None, getattr(key, f)] for f in _KEY_LOGGED}, actor)
        transaction.on_commit(cache_version_bump)
    return key, raw


def _key_logged(key: ClientKey, action: str, changes: dict[str, Any], actor: Any | None) -> None:
    admin_action_log(
        actor=actor,
        action=action,
        target_type="client_key",
        target_id=key.pk,
        target_label=f"{key.name} ({key.prefix}…)",
        changes=changes,
    )


def _client_key_new_secret() -> tuple[str, str, str]:
    """(raw key, display prefix, stored hash) of a fresh 256-bit key."""
    raw = CLIENT_KEY_PREFIX + secrets.token_urlsafe(32)
    return raw, raw[: len(CLIENT_KEY_PREFIX) + 6], client_key_hash(raw)


def client_key_rotate(*, key: ClientKey, actor: Any | None = None) -> str:
    """Give the key a new secret; the old one stops working at once (within the caches'
    version check, ~1 s). Same record: limits, team and usage history stay. Returns the raw
    key, shown once."""
    raw, prefix, digest = _client_key_new_secret()
    with transaction.atomic():
        old_prefix = key.prefix
        key.prefix, key.key_hash, key.rotated_at = prefix, digest, timezone.now()
        key.save(update_fields=["prefix", "key_hash", "rotated_at"])
        _key_logged(key, "key.rotate", {"prefix": [old_prefix, prefix]}, actor)
        _on_commit_bump()
    return raw


def client_key_update(*, key: ClientKey, actor: Any | None = None, **fields: Any) -> ClientKey:
    allowed = set(_KEY_LOGGED)
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    with transaction.atomic():
        before = {name: getattr(key, name) for name in fields}
        for name, value in fields.items():
            setattr(key, name, value)
        key.save()
        changes = changes_between(before, fields)
        if changes:
            _key_logged(key, "key.update", changes, actor)
        _on_commit_bump()
    return key


def client_key_delete(*, key: ClientKey, actor: Any | None = None) -> None:
    """Delete a key (it stops working at once). Its usage records stay, keyed by its old id."""
    with transaction.atomic():
        _key_logged(key, "key.delete", {"name": [key.name, None], "owner_id": [key.owner_id, None]}, actor)
        key.delete()
        _on_commit_bump()


def client_key_set_enabled(*, key: ClientKey, enabled: bool, actor: Any | None = None) -> ClientKey:
    return client_key_update(key=key, enabled=enabled, actor=actor)


def account_mark_state(*, account_id: int, state: str, error: str) -> None:
    """Move an account to a persistent state that needs a human (or back to active).

    Called from the request path on rare failures; every process skips the account within a
    second through the cache version bump.
    """
    if state not in AccountState.values:
        raise ValueError(f"unknown account state {state!r}")
    UpstreamAccount.objects.filter(id=account_id).update(
        state=state, last_error=redact(error)[:2000], last_error_at=timezone.now()
    )
    cache_version_bump()


# --------------------------------------------------------------------------- key rotation


def credentials_rotate(*, actor: Any | None = None) -> int:
    """Re-encrypt every Credential (and each provider's secret tables, e.g. GitLab's gateway
    tokens) under the first PROXY_CREDENTIAL_KEYS key.

    Rotation: put the new key first (old ones after it, so existing ciphertexts stay readable),
    run this, then drop the old keys. Works on the stored ciphertext directly (the field would
    decrypt it) with parameterised SQL, in one transaction: a row no configured key can decrypt
    aborts the whole run, so a half-rotated table never happens. Returns rows re-encrypted.
    """
    from django.db import connection

    count = 0
    models: list[type[Model]] = [Credential, *(m for p in providers_all() for m in p.secret_models)]
    with transaction.atomic():
        for model in models:
            table = connection.ops.quote_name(model._meta.db_table)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, secret FROM {table} ORDER BY id FOR UPDATE"
                    if connection.vendor == "postgresql"
                    else f"SELECT id, secret FROM {table} ORDER BY id"
                )
                rows = cursor.fetchall()
                for row_id, token in rows:
                    try:
                        new = reencrypt(token)
                    except Exception:  # InvalidToken: say which row, never the ciphertext
                        raise ValueError(f"{model.__name__} {row_id}: no configured key decrypts it") from None
                    cursor.execute(f"UPDATE {table} SET secret = %s WHERE id = %s", [new, row_id])
                    count += 1
        admin_action_log(
            actor=actor,
            action="credentials.rotate",
            target_type="credential",
            target_id=None,
            changes={"rows": [None, count]},
        )
    return count


# --------------------------------------------------------------------------- teams

# A team's settings (all logged old -> new); the admin form edits exactly these.
TEAM_FIELDS = (
    "name",
    "allowed_models",
    "requests_per_minute",
    "tokens_per_day",
    "budget_tokens",
    "budget_period",
    "member_key_limit",
)


def _team_label(team: Team) -> str:
    return team.name


def _member_names(user_ids: Iterable[int]) -> list[str]:
    from django.contrib.auth import get_user_model

    return sorted(get_user_model().objects.filter(pk__in=list(user_ids)).values_list("username", flat=True))


def team_create(*, name: str, member_ids: Iterable[int] = (), actor: Any | None = None, **fields: Any) -> Team:
    """Create a team. `fields` are any of the logged team settings (limits, models...)."""
    unknown = set(fields) - set(TEAM_FIELDS)
    if unknown:
        raise ValueError(f"cannot set {sorted(unknown)}")
    if "allowed_models" in fields:
        fields["allowed_models"] = _model_list(fields["allowed_models"])
    members = sorted(set(member_ids))
    with transaction.atomic():
        team = Team.objects.create(name=name, **fields)
        team.members.set(members)
        admin_action_log(
            actor=actor,
            action="team.create",
            target_type="team",
            target_id=team.pk,
            target_label=_team_label(team),
            changes={
                **{f: [None, getattr(team, f)] for f in TEAM_FIELDS},
                "members": [None, _member_names(members)],
            },
        )
        _on_commit_bump()
    return team


def team_update(
    *, team: Team, member_ids: Iterable[int] | None = None, actor: Any | None = None, **fields: Any
) -> Team:
    """Change a team's settings and/or members (None = leave members alone). Its keys pick up
    the new limits at once (the cache version is bumped)."""
    unknown = set(fields) - set(TEAM_FIELDS)
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    if "allowed_models" in fields:
        fields["allowed_models"] = _model_list(fields["allowed_models"])
    with transaction.atomic():
        before = {name: getattr(team, name) for name in fields}
        for name, value in fields.items():
            setattr(team, name, value)
        team.save()
        changes = changes_between(before, fields)
        if member_ids is not None:
            old = set(team.members.values_list("pk", flat=True))
            new = set(member_ids)
            if old != new:
                team.members.set(sorted(new))
                changes["members"] = [_member_names(old), _member_names(new)]
        if changes:
            admin_action_log(
                actor=actor,
                action="team.update",
                target_type="team",
                target_id=team.pk,
                target_label=_team_label(team),
                changes=changes,
            )
        _on_commit_bump()
    return team


class TeamInUse(Exception):
    """A team that still has keys cannot be deleted: its keys would silently lose its limits."""


def team_delete(*, team: Team, actor: Any | None = None) -> None:
    with transaction.atomic():
        count = ClientKey.objects.filter(team=team).count()
        if count:
            raise TeamInUse(f"team '{team.name}' still has {count} key(s): move or delete them first")
        admin_action_log(
            actor=actor,
            action="team.delete",
            target_type="team",
            target_id=team.pk,
            target_label=_team_label(team),
            changes={"name": [team.name, None]},
        )
        team.delete()
        _on_commit_bump()


def _model_list(models: Iterable[str]) -> list[str]:
    return sorted({m.strip() for m in models if m and m.strip()})
