from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from routing.models import CatalogEntry
from routing.services import catalog_entry_delete, catalog_entry_save


class CatalogEntryForm(forms.ModelForm):
    targets = forms.CharField(
        required=False,
        help_text="Upstream model names this alias resolves to, in order (comma-separated). "
        "Empty: the entry only sets facts for a model or family.",
    )

    class Meta:
        model = CatalogEntry
        fields = [
            "name",
            "targets",
            "strategy",
            "responses_only",
            "prefer_websockets",
            "context_window",
            "listed",
            "enabled",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["targets"] = ", ".join(self.instance.targets or [])

    def clean_targets(self) -> list[str]:
        text = self.cleaned_data.get("targets") or ""
        return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]


@admin.register(CatalogEntry)
class CatalogEntryAdmin(admin.ModelAdmin):
    form = CatalogEntryForm
    list_display = ["name", "target_list", "strategy", "responses_only", "prefer_websockets", "listed", "enabled"]
    list_filter = ["enabled", "strategy"]
    search_fields = ["name"]

    @admin.display(description="targets")
    def target_list(self, obj: CatalogEntry) -> str:
        return ", ".join(obj.targets or []) or "(facts only)"

    def save_model(self, request: HttpRequest, obj: CatalogEntry, form: Any, change: bool) -> None:
        data = {k: form.cleaned_data[k] for k in form.Meta.fields}
        entry = CatalogEntry.objects.get(pk=obj.pk) if change else None  # `obj` already holds the new values
        saved = catalog_entry_save(entry=entry, actor=request.user, **data)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: CatalogEntry) -> None:
        catalog_entry_delete(entry=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CatalogEntry]) -> None:
        for entry in queryset:
            catalog_entry_delete(entry=entry, actor=request.user)
