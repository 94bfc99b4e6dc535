from django.contrib import admin

from ..models import WebhookDelivery
from . import rendering
from .base import ReadOnlyAdmin
from .free_text import MaskedTextMixin, shown
from .lookups import AllowListedLookups

OUTCOME_TONES = {
    "queued": "info",
    "refreshed": "success",
    "collapsed": "neutral",
    "ignored": "muted",
    "rejected": "danger",
    "failed": "danger",
}


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(AllowListedLookups, MaskedTextMixin, ReadOnlyAdmin):
    list_display = ["__str__", "received_at", "event_type", "verifik_id", "outcome_badge", "sync_run", "detail_text"]
    sortable_without_pii = list_display  # ids, types and outcomes: no column is personal
    list_filter = ["outcome"]
    search_fields = ["=verifik_id", "event_type"]
    list_select_related = ["sync_run"]
    show_full_result_count = False
    readonly_fields = ["received_at", "event_type", "verifik_id", "outcome_badge", "sync_run", "detail_text"]
    fields = readonly_fields

    class Media:
        css = {"all": ["registrations/admin.css"]}

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, obj):
        return rendering.badge(obj.get_outcome_display(), OUTCOME_TONES.get(obj.outcome, "neutral"))

    @admin.display(description="Detail")
    def detail_text(self, obj):
        """Why a delivery was rejected or failed may quote what it carried: free text, masked as such."""
        return shown(obj, obj.detail) or rendering.EMPTY
