"""Alert channels (validated, logged through alerts.services) and the alert history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from alerts.models import AlertChannel, AlertEvent
from alerts.services import alert_channel_save, alert_channel_test, alert_channel_validate
from audit.admin import ReadOnlyAdmin
from pricing.admin import ServiceValidatedForm


class AlertChannelForm(ServiceValidatedForm):
    validate = staticmethod(alert_channel_validate)

    class Meta:
        model = AlertChannel
        fields = ["kind", "target", "enabled", "note"]


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
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "message", "old_state", "new_state", "delivered", "tries", "last_error"]
    list_filter = ["kind", "delivered"]
    search_fields = ["message", "subject"]  # written by alerts.services only
