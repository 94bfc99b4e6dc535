"""The registrations list's columns: what a reviewer reads on each row, masked by the row's lens."""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from .. import queue, selectors
from ..models import AppRegistration, RegistrationStatus, ReviewOutcome
from . import rendering
from .per_request import pii
from .rendering import FAILED_KINDS
from .review import OUTCOME_TONES


class ListColumnsMixin:
    """Display methods named in AppRegistrationAdmin.list_display."""

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
