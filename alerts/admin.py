"""Alert channels (validated, logged through alerts.services) and the alert history."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from alerts.models import AlertChannel, AlertEvent
from alerts.services import alert_channel_save, alert_channel_test, alert_channel_validate


class AlertChannelForm(forms.ModelForm):
    class Meta:
        model = AlertChannel
        fields = ["kind", "target", "enabled", "note"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        probe = AlertChannel(pk=self.instance.pk, **{k: data.get(k) for k in ("kind", "target")})
        try:
            alert_channel_validate(probe)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None
        data["target"] = probe.target
        return data


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["kind", "target", "enabled", "note"]
    actions = ["send_test"]

    def save_model(self, request: HttpRequest, obj: AlertChannel, form: Any, change: bool) -> None:
        alert_channel_save(obj, actor=request.user)

    @admin.action(description="Send a test alert", permissions=["change"])
    def send_test(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        for channel in queryset:
            try:
                alert_channel_test(channel)
            except Exception as exc:
                self.message_user(request, f"{channel}: not delivered ({exc})", messages.ERROR)
            else:
                self.message_user(request, f"{channel}: test alert sent", messages.SUCCESS)


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "message", "old_state", "new_state", "delivered", "tries", "last_error"]
    list_filter = ["kind", "delivered"]
    search_fields = ["message", "subject"]

    # Written by alerts.services only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
