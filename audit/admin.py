from django.contrib import admin
from django.http import HttpRequest

from audit.models import UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "key_prefix",
        "account_label",
        "surface",
        "requested_model",
        "stream",
        "outcome",
        "status_code",
        "input_tokens",
        "output_tokens",
        "ttfb_ms",
        "duration_ms",
    ]
    list_filter = ["outcome", "surface", "stream", "account_label"]
    search_fields = ["request_id", "key_prefix", "account_label", "requested_model", "upstream_request_id"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # COUNT(*) over millions of rows is the slow part

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
