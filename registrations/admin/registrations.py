from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import DateTimeField, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from .. import audit, dispatch, privacy, queue, selectors
from ..mapping import FAILED_VALIDATION_KINDS, REFERENCES, is_object_id
from ..models import AppRegistration, AuditAction, RegistrationStatus, ReviewOutcome
from . import filters, rendering
from .base import ReadOnlyAdmin
from .changelist import CappedCountPaginator, PlainActionCheckbox, ReviewChangeList
from .export import ExportMixin
from .per_request import pii_lens, sync_health
from .reveal import RevealMixin
from .review import OUTCOME_TONES, ReviewDeskMixin

FAILED_KINDS = [(kind, kind.title()) for kind in FAILED_VALIDATION_KINDS]
SEARCH_IDS_LIMIT = 5_000


def pii(obj):
    """The lens the admin attached to this row for the current user; masked when none was (fail closed)."""
    return getattr(obj, "pii_lens", privacy.MASKED)


def _dispatched(result):
    """What a refresh or sync request came to, for its audit event."""
    return {"queued": result.queued, "joined": result.joined, "run": result.run.pk if result.run else None}


def run_link(run):
    url = reverse("admin:registrations_syncrun_change", args=[run.pk])
    return format_html('<a href="{}">run #{}</a>', url, run.pk)


@admin.register(AppRegistration)
class AppRegistrationAdmin(ExportMixin, RevealMixin, PlainActionCheckbox, ReviewDeskMixin, ReadOnlyAdmin):
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

    def lookup_allowed(self, lookup, value, request=None):
        """The dashboard links to registrations stopped at a step."""
        return lookup in ("current_step", "status__in") or super().lookup_allowed(lookup, value, request)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if is_object_id(term):
            return queryset.filter(verifik_id=term.lower()), False
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

    # --- list columns ---------------------------------------------------------------------

    @admin.display(description="Name", ordering="name")
    def applicant(self, obj):
        marks = []
        if obj.deleted:
            marks.append(rendering.tag("Deleted at Verifik", "danger"))
        if obj.removed_upstream_at:
            marks.append(rendering.tag("Removed upstream", "muted"))
        if obj.erased_at:
            marks.append(rendering.tag("Personal data erased", "muted"))
        lens = pii(obj)
        name = lens.name(obj.name) or rendering.muted("(erased)" if obj.erased_at else "(no name)")
        shown_notes = lens.text(obj.notes, obj)
        notes = (
            format_html(
                '<span class="vf-sub vf-excerpt" title="{}">{}</span>',
                Truncator(shown_notes).chars(400),
                Truncator(shown_notes).chars(60),
            )
            if shown_notes
            else ""
        )
        return format_html(
            '<span class="vf-name">{}</span> {}{}', name, format_html_join(" ", "{}", ((m,) for m in marks)), notes
        )

    @admin.display(description="Contact")
    def contact(self, obj):
        lens = pii(obj)
        number = lens.phone(obj.phone, obj.country_code) if obj.phone or obj.country_code else ""
        email = lens.email(obj.email)
        if not email and not number:
            return rendering.EMPTY
        return format_html(
            '<span class="vf-contact" title="{}">{}</span><span class="vf-sub vf-nowrap">{}</span>',
            email or "",
            email or "—",
            number or "—",
        )

    @admin.display(description="Why it's here", ordering="red_flags")
    def reasons(self, obj):
        """The reasons as short chips; muted when the registration is not waiting for anyone."""
        items = []
        if obj.status == RegistrationStatus.NEEDS_MANUAL_VERIFICATION:
            items.append(rendering.chip("manual verification", "warning"))
        threshold = queue.red_flags_threshold()
        if obj.red_flags:
            tone = "danger" if obj.red_flags >= threshold else "neutral"
            items.append(rendering.chip(f"{obj.red_flags} red flag{'s' if obj.red_flags != 1 else ''}", tone))
        for kind in ("biometric", "document", "email", "phone"):
            n = getattr(obj, f"failed_{kind}_count")
            if n:
                tone = "danger" if kind in ("biometric", "document") else "neutral"
                items.append(rendering.chip(f"failed {kind}" + (f" ×{n}" if n > 1 else ""), tone))
        if obj.changed_since:
            items.append(rendering.chip("changed since decision", "info"))
        if obj.awaiting_second:
            items.append(rendering.chip("awaiting second approval", "info"))
        state = self._state(obj)
        if state and state.outcome in (ReviewOutcome.ESCALATED, ReviewOutcome.INFO_REQUESTED):
            items.append(rendering.chip(ReviewOutcome(state.outcome).label.lower(), "warning"))
        chips = rendering.chips(items)
        return chips if obj.waiting_since else format_html('<span class="vf-quiet">{}</span>', chips)

    @admin.display(description="Waiting", ordering="waiting_since")
    def waiting(self, obj):
        if obj.waiting_since is None:
            return rendering.EMPTY
        waited = rendering.duration(timezone.now() - obj.waiting_since)
        since = rendering.when(obj.waiting_since)
        if obj.waiting_since < queue.overdue_cutoff():
            return format_html('<span class="vf-overdue" title="Overdue: waiting since {}">{} ⚑</span>', since, waited)
        return format_html('<span class="vf-nowrap" title="Waiting since {}">{}</span>', since, waited)

    @admin.display(description="Assignee")
    def assignee(self, obj):
        state = self._state(obj)
        return format_html("{}", state.assignee) if state and state.assignee_id else rendering.muted("—")

    @admin.display(description="Decision")
    def decision(self, obj):
        state = self._state(obj)
        if not state or not state.outcome:
            return rendering.muted("none")
        outcome = ReviewOutcome(state.outcome)
        reviewer = state.decision.reviewer if state.decision_id else ""
        title = f"{outcome.label} by {reviewer} on {rendering.when(state.decided_at)}"
        return rendering.badge(outcome.label, OUTCOME_TONES[outcome], title)

    @admin.display(description="Project", ordering="project_id")
    def project_column(self, obj):
        return rendering.project_label(obj.project_id, getattr(obj, "project_name", None))

    @staticmethod
    def _state(obj):
        try:
            return obj.review_state
        except AppRegistration.review_state.RelatedObjectDoesNotExist:
            return None

    @admin.display(description="Name")
    def applicant_name(self, obj):
        return pii(obj).name(obj.name) or rendering.EMPTY

    @admin.display(description="Email")
    def applicant_email(self, obj):
        return pii(obj).email(obj.email) or rendering.EMPTY

    @admin.display(description="Phone")
    def phone_number(self, obj):
        number = pii(obj).phone(obj.phone, obj.country_code) if obj.phone or obj.country_code else ""
        return format_html('<span class="vf-nowrap">{}</span>', number) if number else rendering.EMPTY

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        step = format_html('<span class="vf-sub">{}</span>', obj.current_step) if obj.current_step else ""
        return format_html("{}{}", rendering.status_badge(obj.status), step)

    @admin.display(description="Red flags", ordering="red_flags")
    def red_flags_count(self, obj):
        if not obj.red_flags:
            return rendering.muted(obj.red_flags if obj.red_flags is not None else "—")
        return rendering.badge(obj.red_flags, "danger", f"{obj.red_flags} red flags")

    @admin.display(description="Failed validations", ordering="failed_validations_count")
    def failed_validations(self, obj):
        if not obj.failed_validations_count:
            return rendering.muted(0)
        split = [(label, getattr(obj, f"failed_{kind}_count")) for kind, label in FAILED_KINDS]
        detail = ", ".join(f"{label.lower()} {n}" for label, n in split if n)
        return format_html('<strong>{}</strong> <span class="vf-split">{}</span>', obj.failed_validations_count, detail)

    @admin.display(description="Notes")
    def notes_excerpt(self, obj):
        return rendering.excerpt(pii(obj).text(obj.notes, obj))

    @admin.display(description="Last synced", ordering="last_synced_at")
    def last_confirmed(self, obj):
        confirmed = selectors.last_confirmed(obj, obj.covered_at)
        if confirmed is None:
            return rendering.EMPTY
        stale = selectors.is_stale(confirmed)
        local = timezone.localtime(confirmed)
        text = format_html(
            '<span class="vf-nowrap">{}</span> <span class="vf-nowrap">{}</span>',
            local.strftime("%Y-%m-%d"),
            local.strftime("%H:%M %Z"),
        )
        return (
            format_html('<span class="vf-stale" title="Not synced for 24 h">{} stale</span>', text) if stale else text
        )

    # --- detail sections ----------------------------------------------------------------

    def _reference(self, obj, api_key, field):
        ref_id = getattr(obj, field)
        name = ((obj.populated or {}).get(api_key) or {}).get("name")
        if not ref_id:
            return rendering.EMPTY
        return format_html("{} <code>{}</code>", name, ref_id) if name else format_html("<code>{}</code>", ref_id)

    @admin.display(description="Project")
    def project(self, obj):
        name = ((obj.populated or {}).get("project") or {}).get("name")
        return rendering.project_label(obj.project_id, name if isinstance(name, str) else None)

    @admin.display(description="Detail fetch")
    def details_backlog(self, obj):
        """Whether Verifik's detail endpoint still owes this registration a fetch, and why it failed."""
        if not obj.details_pending:
            return "Up to date"
        parts = ["Pending"]
        if obj.details_failures:
            parts.append(f"{obj.details_failures} failed attempt{'s' if obj.details_failures != 1 else ''}")
        if obj.details_retry_at and obj.details_retry_at > timezone.now():
            parts.append(f"backing off until {rendering.when(obj.details_retry_at)}")
        text = ", ".join(parts)
        if obj.details_error:
            return format_html('{}<br><span class="vf-stale">{}</span>', text, obj.details_error)
        return text

    @admin.display(description="Personal data")
    def erased(self, obj):
        """Erased or kept; the `purge` event in the audit trail says by whom and why."""
        if not obj.erased_at:
            return "Kept"
        return format_html("{} on {}", rendering.tag("Erased", "muted"), rendering.when(obj.erased_at))

    @admin.display(description="Project flow")
    def project_flow(self, obj):
        return self._reference(obj, "projectFlow", "project_flow_id")

    @admin.display(description="At Verifik")
    def deleted_at_verifik(self, obj):
        return rendering.tag("Deleted at Verifik", "danger") if obj.deleted else "Present"

    @admin.display(description="Red flag details")
    def red_flags_table(self, obj):
        if obj.red_flags_details is None:
            return rendering.EMPTY
        return rendering.value_table(pii(obj).payload(obj.red_flags_details, obj))

    def _failed_table(self, obj, kind):
        return rendering.failed_items_table(pii(obj).payload(getattr(obj, f"failed_{kind}_validations"), obj))

    @admin.display(description="Email")
    def failed_email_table(self, obj):
        return self._failed_table(obj, "email")

    @admin.display(description="Phone")
    def failed_phone_table(self, obj):
        return self._failed_table(obj, "phone")

    @admin.display(description="Biometric")
    def failed_biometric_table(self, obj):
        return self._failed_table(obj, "biometric")

    @admin.display(description="Document")
    def failed_document_table(self, obj):
        return self._failed_table(obj, "document")

    @admin.display(description="References")
    def linked_records(self, obj):
        rows = []
        shown = pii(obj).payload(obj.populated or {}, obj)
        for api_key, field in REFERENCES.items():
            ref_id = getattr(obj, field)
            populated = shown.get(api_key) if isinstance(shown, dict) else None
            if ref_id is None and populated is None:
                continue
            body = rendering.value_table(populated) if populated else rendering.muted("not populated")
            rows.append((api_key, ref_id or "—", body))
        if not rows:
            return rendering.EMPTY
        return format_html(
            '<table class="vf-table vf-linked"><thead><tr><th>Record</th><th>Id</th>'
            "<th>What Verifik sent</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", '<tr><th scope="row">{}</th><td><code>{}</code></td><td>{}</td></tr>', rows),
        )

    @admin.display(description="Notes")
    def notes_text(self, obj):
        return rendering.multiline(pii(obj).text(obj.notes, obj))

    @admin.display(description="Recent refreshes")
    def recent_runs(self, obj):
        runs = selectors.recent_runs_for(obj.verifik_id)
        if not runs:
            return rendering.muted("No refresh of this registration yet.")
        rows = (
            (
                run_link(run),
                rendering.badge(run.get_outcome_display(), run.outcome),
                rendering.when(run.started_at),
                run.get_trigger_display(),
                run.user or "—",
                run.error or "",
            )
            for run in runs
        )
        return format_html(
            '<table class="vf-table"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="Payload")
    def raw_payload(self, obj):
        return rendering.pretty_json(pii(obj).payload({"raw": obj.raw, "populated": obj.populated}, obj))

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
            self.message_user(request, format_html("{}: {}", run_link(result.run), result.error), messages.ERROR)

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
                request, format_html("{} failed ({}): {}", what, run_link(result.run), result.error), messages.ERROR
            )
        elif result.run.outcome == "skipped":
            self.message_user(
                request, format_html("{} skipped ({}): {}", what, run_link(result.run), result.error), messages.WARNING
            )
        else:
            run = result.run
            counts = (
                f"{run.created} created, {run.updated} updated, {run.unchanged} unchanged, "
                f"{run.removed} removed upstream"
            )
            self.message_user(
                request, format_html("{} succeeded ({}): {}.", what, run_link(run), counts), messages.SUCCESS
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
