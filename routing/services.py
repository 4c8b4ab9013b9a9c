"""Catalog edits. The admin calls these; every change reaches every process within ~1 s."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.services import cache_version_bump
from routing.models import CatalogEntry

_FIELDS = ("name", "targets", "strategy", "responses_only", "prefer_websockets", "context_window", "listed", "enabled")


def catalog_entry_save(*, entry: CatalogEntry | None = None, **fields: Any) -> CatalogEntry:
    unknown = set(fields) - set(_FIELDS)
    if unknown:
        raise ValueError(f"cannot set {sorted(unknown)}")
    if "targets" in fields:
        fields["targets"] = [t.strip() for t in fields["targets"] or [] if isinstance(t, str) and t.strip()]
    with transaction.atomic():
        entry = entry or CatalogEntry()
        for name, value in fields.items():
            setattr(entry, name, value)
        entry.save()
        transaction.on_commit(cache_version_bump)
    return entry


def catalog_entry_delete(*, entry: CatalogEntry) -> None:
    with transaction.atomic():
        entry.delete()
        transaction.on_commit(cache_version_bump)
