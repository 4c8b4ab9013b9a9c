"""Catalog edits. The admin calls these; every change reaches every process within ~1 s."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.services import cache_version_bump
from audit.services import admin_action_log, changes_between
from routing.models import CatalogEntry

_FIELDS = ("name", "targets", "strategy", "responses_only", "prefer_websockets", "context_window", "listed", "enabled")


def catalog_entry_save(*, entry: CatalogEntry | None = None, actor: Any | None = None, **fields: Any) -> CatalogEntry:
    unknown = set(fields) - set(_FIELDS)
    if unknown:
        raise ValueError(f"cannot set {sorted(unknown)}")
    if "targets" in fields:
        fields["targets"] = [t.strip() for t in fields["targets"] or [] if isinstance(t, str) and t.strip()]
    with transaction.atomic():
        created = entry is None or entry.pk is None
        entry = entry or CatalogEntry()
        before = {} if created else {name: getattr(entry, name) for name in fields}
        for name, value in fields.items():
            setattr(entry, name, value)
        entry.save()
        changes = changes_between(before, fields)
        if changes:
            admin_action_log(
                actor=actor,
                action="catalog.create" if created else "catalog.update",
                target_type="catalog_entry",
                target_id=entry.pk,
                target_label=entry.name,
                changes=changes,
            )
        transaction.on_commit(cache_version_bump)
    return entry


def catalog_entry_delete(*, entry: CatalogEntry, actor: Any | None = None) -> None:
    with transaction.atomic():
        admin_action_log(
            actor=actor,
            action="catalog.delete",
            target_type="catalog_entry",
            target_id=entry.pk,
            target_label=entry.name,
            changes={"name": [entry.name, None]},
        )
        entry.delete()
        transaction.on_commit(cache_version_bump)
