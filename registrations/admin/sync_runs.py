from django.contrib import admin
from django.utils.html import format_html, format_html_join

from ..models import SyncRun
from . import rendering
from .base import ReadOnlyAdmin
from .free_text import MaskedTextMixin, shown
from .lookups import AllowListedLookups


@admin.register(SyncRun)
class SyncRunAdmin(AllowListedLookups, MaskedTextMixin, ReadOnlyAdmin):
    list_display = [
        "__str__",
        "outcome_badge",
        "kind",
        "triggered_by",
        "started_at",
        "duration_display",
        "pages",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "removed",
        "details",
        "error_excerpt",
    ]
    sortable_without_pii = list_display  # counts and times: no column is personal
    list_filter = ["outcome", "kind", "trigger"]
    list_select_related = ["user"]
    search_fields = ["=verifik_id"]
    search_help_text = "A registration's Verifik id finds its refreshes."
    ordering = ["-started_at", "-id"]
    show_full_result_count = False
    fields = [
        "outcome_badge",
        "kind",
        "triggered_by",
        "task_id",
        "statuses",
        "verifik_id",
        "started_at",
        "finished_at",
        "duration_display",
        "pages",
        "seen",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "cleaned",
        "removed",
        "oversized",
        "details",
        "error_text",
        "note_text",
        "failures_table",
    ]
    readonly_fields = fields

    class Media:
        css = {"all": ["registrations/admin.css"]}

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, obj):
        return rendering.badge(obj.get_outcome_display(), obj.outcome)

    @admin.display(description="Trigger")
    def triggered_by(self, obj):
        return f"{obj.get_trigger_display()} ({obj.user})" if obj.user else obj.get_trigger_display()

    @admin.display(description="Duration")
    def duration_display(self, obj):
        if obj.duration is None:
            return rendering.EMPTY
        return f"{obj.duration.total_seconds():.1f} s"

    @admin.display(description="Details fetched")
    def details(self, obj):
        text = f"{obj.details_fetched}"
        if obj.details_queued:
            text += f" of {obj.details_queued} queued"
        if obj.details_failed:
            return format_html('{} <span class="vf-stale">({} failed)</span>', text, obj.details_failed)
        return text

    @admin.display(description="Error")
    def error_excerpt(self, obj):
        return rendering.excerpt(shown(obj, obj.error), 80)

    @admin.display(description="Error")
    def error_text(self, obj):
        return rendering.multiline(shown(obj, obj.error))

    @admin.display(description="Note")
    def note_text(self, obj):
        return rendering.multiline(shown(obj, obj.note))

    @admin.display(description="Rejected", ordering="failed")
    def rejected(self, obj):
        """Records refused alone (the rest of their page landed); each keeps its stored version."""
        return format_html('<span class="vf-stale">{}</span>', obj.failed) if obj.failed else rendering.muted(0)

    @admin.display(description="Rejected records")
    def failures_table(self, obj):
        if not obj.failures:
            return rendering.EMPTY
        rows = ((f.get("id") or "—", shown(obj, f.get("reason", ""))) for f in obj.failures)
        more = obj.failed - len(obj.failures)
        return format_html(
            '<table class="vf-table"><thead><tr><th>Verifik id</th><th>Reason</th></tr></thead>'
            "<tbody>{}</tbody></table>{}",
            format_html_join("", "<tr><td><code>{}</code></td><td>{}</td></tr>", rows),
            format_html('<p class="vf-muted">and {} more, counted but not listed</p>', more) if more > 0 else "",
        )
