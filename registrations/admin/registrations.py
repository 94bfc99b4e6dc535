from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import DateTimeField, Q, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from .. import audit, dispatch, queue, reveals
from ..mapping import is_object_id
from ..models import AppRegistration, AuditAction
from . import filters, rendering
from .base import ReadOnlyAdmin
from .changelist import CappedCountPaginator, PlainActionCheckbox, ReviewChangeList
from .columns import ListColumnsMixin
from .detail_sections import DetailSectionsMixin
from .export import ExportMixin
from .free_text import shown_text
from .lookups import AllowListedLookups
from .per_request import pii_lens, sync_health
from .reads import ReadsAuditedMixin
from .rendering import FAILED_KINDS
from .reveal import RevealMixin
from .review import ReviewDeskMixin

SEARCH_IDS_LIMIT = 5_000
SEARCH_HELP_WITHOUT_PII = (
    "A whole email, phone number or name (any case); a 24-character Verifik id finds that registration."
)


def _dispatched(result):
    """What a refresh or sync request came to, for its audit event."""
    return {"queued": result.queued, "joined": result.joined, "run": result.run.pk if result.run else None}


@admin.register(AppRegistration)
class AppRegistrationAdmin(
    ListColumnsMixin,
    DetailSectionsMixin,
    ExportMixin,
    RevealMixin,
    ReadsAuditedMixin,
    PlainActionCheckbox,
    ReviewDeskMixin,
    AllowListedLookups,
    ReadOnlyAdmin,
):
    # What decides the work first (status, why, how long, who, decision); who the applicant is after.
    list_display = [
        "status_badge",
        "reasons",
        "waiting",
        "assignee",
        "decision",
        "applicant",
        "contact",
        "project_column",
        "updated_at",
        "last_confirmed",
    ]
    list_display_links = ["applicant"]
    list_filter = [
        filters.QueueFilter,
        filters.DecisionFilter,
        filters.StatusFilter,
        filters.RedFlagsFilter,
        filters.FailedValidationsFilter,
        filters.LanguageFilter,
        filters.ProjectFilter,
        filters.RemovedUpstreamFilter,
        filters.StaleFilter,
    ]
    search_fields = ["name", "email", "phone", "notes"]
    search_help_text = "Name, email, phone or notes; a 24-character Verifik id finds that registration."
    sortable_by = ["status_badge", "reasons", "waiting", "applicant", "updated_at", "last_confirmed"]
    sortable_without_pii = ["status_badge", "reasons", "waiting", "updated_at", "last_confirmed"]  # not by name
    list_lookups = ["current_step", "status__in"]  # the dashboard links to registrations stopped at a step
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_per_page = 50
    show_full_result_count = False
    paginator = CappedCountPaginator
    actions = ["refresh_from_verifik", "export_csv"]
    fieldsets = [
        ("Applicant", {"fields": ["applicant_name", "applicant_email", "phone_number", "language"]}),
        (
            "Progress",
            {
                "fields": [
                    "status_badge",
                    "current_step",
                    "created_at",
                    "updated_at",
                    "project",
                    "project_flow",
                    "deleted_at_verifik",
                ]
            },
        ),
        ("Risk", {"fields": ["red_flags_count", "red_flags_table"]}),
        ("Failed validations", {"fields": [f"failed_{kind}_table" for kind, _ in FAILED_KINDS]}),
        ("Linked records", {"fields": ["linked_records"]}),
        ("Notes", {"fields": ["notes_text"]}),
        (
            "Sync",
            {
                "fields": [
                    "verifik_id",
                    "first_synced_at",
                    "last_synced_at",
                    "removed_upstream_at",
                    "erased",
                    "details_backlog",
                    "recent_runs",
                ]
            },
        ),
        ("Raw payload", {"fields": ["raw_payload"], "classes": ["collapse"]}),
    ]

    class Media:
        css = {"all": ["registrations/admin.css"]}

    # --- permissions ----------------------------------------------------------------

    def has_refresh_permission(self, request, obj=None):
        return request.user.has_perm("registrations.refresh_appregistration")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- queries ------------------------------------------------------------------------

    def get_queryset(self, request):
        covered_at = sync_health(request).covered_at
        queryset = self.model._default_manager.get_queryset().with_range_dates()
        queryset = queryset.select_related("review_state__assignee", "review_state__decision__reviewer")
        queryset = queryset.annotate(
            covered_at=Value(covered_at, output_field=DateTimeField()),
            project_name=KeyTextTransform("name", KeyTransform("project", "populated")),
        )
        # Lean on purpose: counts and the date drill-down's MIN/MAX stay index scans. The review
        # columns are added by the queue filter and, for the rows shown, by ReviewChangeList.
        return queryset.order_by(*(self.ordering or ()))

    def get_changelist(self, request, **kwargs):
        return ReviewChangeList

    def get_ordering(self, request):
        """A queue view lists the oldest waiting first; everything else the newest created first."""
        if request.GET.get(filters.QueueFilter.parameter_name) in queue.QUEUE_VIEWS or (
            request.GET.get(filters.DecisionFilter.parameter_name) == "changed_since"
        ):
            return ["waiting_since", "pk"]
        return super().get_ordering(request)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if is_object_id(term):
            return queryset.filter(verifik_id=term.lower()), False
        if term and not reveals.has_view_pii(request.user):
            # A whole value only (the email or phone a caller gives, a full name), never a part of one:
            # which rows a fragment matches would tell, a letter at a time, what the mask hides.
            return queryset.filter(Q(email__iexact=term) | Q(phone__iexact=term) | Q(name__iexact=term)), False
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if not term:
            return queryset, may_have_duplicates
        # Postgres misjudges how many rows match `LIKE '%term%'` and, for the page's
        # ORDER BY ... LIMIT, walks the whole date index looking for them. Fetching the
        # matching ids first (trigram indexes, no ordering) and listing those is fast.
        ids = list(queryset.order_by().values_list("pk", flat=True)[: SEARCH_IDS_LIMIT + 1])
        if len(ids) > SEARCH_IDS_LIMIT:
            return queryset, may_have_duplicates
        return self.get_queryset(request).filter(pk__in=ids), False

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        if not reveals.has_view_pii(request.user):
            changelist.search_help_text = SEARCH_HELP_WITHOUT_PII
        return changelist

    def get_readonly_fields(self, request, obj=None):
        return [field for _, options in self.fieldsets for field in options["fields"]]

    # --- actions and buttons ----------------------------------------------------------

    @admin.action(description="Refresh from Verifik", permissions=["refresh"])
    def refresh_from_verifik(self, request, queryset):
        rows = list(queryset.values_list("pk", "verifik_id")[:500])
        ids = [verifik_id for _, verifik_id in rows]
        results = dispatch.request_refreshes(ids, user_id=request.user.pk)
        audit.record_each(
            AuditAction.REFRESH, [pk for pk, _ in rows], request=request, details={"bulk": True, "count": len(rows)}
        )
        if results and results[0].queued:
            self.message_user(request, f"Refresh of {len(ids)} registrations queued; see Sync runs for progress.")
            return
        failed = [r for r in results if r.failed]
        self.message_user(request, f"Refreshed {len(results) - len(failed)} of {len(ids)} registrations from Verifik.")
        for result in failed:
            self.message_user(
                request,
                format_html("{}: {}", rendering.run_link(result.run), shown_text(request, result.error)),
                messages.ERROR,
            )

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            *self.review_urls(),
            *self.reveal_urls(),
            *self.export_urls(),
            path("sync/", self.admin_site.admin_view(self.sync_view), name="{}_{}_sync".format(*info)),
            path(
                "<path:object_id>/refresh/",
                self.admin_site.admin_view(self.refresh_view),
                name="{}_{}_refresh".format(*info),
            ),
            *super().get_urls(),
        ]

    def _require_refresh(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_refresh_permission(request):
            raise PermissionDenied
        return None

    def refresh_view(self, request, object_id):
        """POST: refresh this registration from Verifik, then back to its page with the outcome."""
        refused = self._require_refresh(request)
        if refused:
            return refused
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No registration with this id.")
        result = dispatch.request_refresh(obj.verifik_id, user_id=request.user.pk)
        audit.record(AuditAction.REFRESH, registration=obj, request=request, details=_dispatched(result))
        self._report(request, result, "Refresh")
        return HttpResponseRedirect(reverse("admin:registrations_appregistration_change", args=[obj.pk]))

    def sync_view(self, request):
        """POST: a full sync, queued (or run inline without a broker)."""
        refused = self._require_refresh(request)
        if refused:
            return refused
        result = dispatch.request_sync(user_id=request.user.pk)
        audit.record(AuditAction.SYNC, request=request, details=_dispatched(result))
        self._report(request, result, "Sync")
        return HttpResponseRedirect(reverse("admin:registrations_appregistration_changelist"))

    def _report(self, request, result, what):
        if result.queued:
            self.message_user(request, f"{what} queued; a worker will run it shortly. See Sync runs for the outcome.")
        elif result.failed:
            self.message_user(
                request,
                format_html(
                    "{} failed ({}): {}", what, rendering.run_link(result.run), shown_text(request, result.error)
                ),
                messages.ERROR,
            )
        elif result.run.outcome == "skipped":
            self.message_user(
                request,
                format_html(
                    "{} skipped ({}): {}", what, rendering.run_link(result.run), shown_text(request, result.error)
                ),
                messages.WARNING,
            )
        else:
            run = result.run
            counts = (
                f"{run.created} created, {run.updated} updated, {run.unchanged} unchanged, "
                f"{run.removed} removed upstream"
            )
            self.message_user(
                request, format_html("{} succeeded ({}): {}.", what, rendering.run_link(run), counts), messages.SUCCESS
            )

    # --- views ------------------------------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "sync_health": sync_health(request),
            "can_refresh": self.has_refresh_permission(request),
            "can_export": self.has_export_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def get_object(self, request, object_id, from_field=None):
        """Every registration a view reads carries how this user may see its personal data."""
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.pii_lens = pii_lens(request, obj.pk)
        return obj

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No registration with this id.")
        queue.attach_review(obj)
        extra_context = {
            **self.review_context(request, obj, extra_context),
            **self.privacy_context(request, obj),
            "can_refresh": self.has_refresh_permission(request),
        }
        response = super().change_view(request, object_id, form_url, extra_context)
        if response.status_code == 200:  # shown: the permission check passed (it raises otherwise)
            audit.record(AuditAction.VIEW, registration=obj, request=request)
        return response
