"""The review desk on a registration's page: the panel, its three POST actions and the timeline.

Views are thin: they check the permission, read the form, call `registrations.review`
and go back to the registration with a message. A refused request writes nothing and
shows why on the page.
"""

import re
from dataclasses import replace

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from .. import privacy, queue, review, timeline
from ..models import COMMENT_MAX_LENGTH, REASON_REQUIRED, AuditAction, ReviewOutcome
from . import rendering

TIMELINE_ON_PAGE = 12
OUTCOME_TONES = {
    ReviewOutcome.APPROVED: "success",
    ReviewOutcome.REJECTED: "danger",
    ReviewOutcome.ESCALATED: "warning",
    ReviewOutcome.INFO_REQUESTED: "info",
}
DECISION_BUTTONS = [
    (ReviewOutcome.APPROVED, "Approve"),
    (ReviewOutcome.REJECTED, "Reject"),
    (ReviewOutcome.ESCALATED, "Escalate"),
    (ReviewOutcome.INFO_REQUESTED, "Request information"),
]
ACTION_MESSAGES = {
    ReviewOutcome.APPROVED: "Approved.",
    ReviewOutcome.REJECTED: "Rejected.",
    ReviewOutcome.ESCALATED: "Escalated; it stays in the queue.",
    ReviewOutcome.INFO_REQUESTED: "Information requested; it stays in the queue.",
}


class ReviewDeskMixin:
    """For AppRegistrationAdmin: decide, assign and comment (POST), the review panel and the timeline."""

    def has_decide_permission(self, request, obj=None):
        return review.can_review(request.user)

    def review_urls(self):
        info = self.opts.app_label, self.opts.model_name
        views = [("decide", self.decide_view), ("assign", self.assign_view), ("comment", self.comment_view)]
        return [
            path(f"<path:object_id>/{name}/", self.admin_site.admin_view(view), name=f"{info[0]}_{info[1]}_{name}")
            for name, view in views
        ]

    # --- actions ---------------------------------------------------------------------------

    def _review_target(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"]), None
        if not self.has_decide_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No registration with this id.")
        return None, obj

    def _back(self, obj):
        return HttpResponseRedirect(reverse("admin:registrations_appregistration_change", args=[obj.pk]))

    def _refused(self, request, obj, error, form):
        """The registration's page again, with the reason and what the reviewer typed."""
        self.message_user(request, str(error), messages.ERROR)
        request.method = "GET"  # render the page; there is no form of the registration itself to submit
        return self.change_view(request, str(obj.pk), extra_context={"review_form": form, "review_error": str(error)})

    def decide_view(self, request, object_id):
        refused, obj = self._review_target(request, object_id)
        if refused:
            return refused
        outcome, reason = request.POST.get("outcome", ""), request.POST.get("reason", "")
        seen = review.parse_version(request.POST.get("version", ""))
        try:
            result = review.decide(obj, request.user, outcome, reason, seen_version=seen, request=request)
        except review.ReviewError as error:
            return self._refused(request, obj, error, {"outcome": outcome, "reason": reason})
        review.check_versions()
        if result.confirmed:
            text = format_html("Approval confirmed: {} and you approved it.", result.decision.reviewer)
        elif result.awaiting_second:
            text = "Approved; with this many red flags a second reviewer must approve it too."
        else:
            text = ACTION_MESSAGES[result.decision.outcome]
        self.message_user(request, text, messages.SUCCESS)
        if result.stale:
            self.message_user(
                request,
                "Verifik changed this registration after the version you saw; it stays in the queue.",
                messages.WARNING,
            )
        return self._back(obj)

    def assign_view(self, request, object_id):
        refused, obj = self._review_target(request, object_id)
        if refused:
            return refused
        value = request.POST.get("assignee", "").strip()
        try:
            assignee = self._assignee(request, value)
            changed = review.assign(obj, request.user, assignee, request=request)
        except review.ReviewError as error:
            return self._refused(request, obj, error, {})
        if not changed:
            self.message_user(request, "Nothing changed: it was assigned that way already.", messages.INFO)
        elif assignee is None:
            self.message_user(request, "Unassigned.", messages.SUCCESS)
        else:
            self.message_user(request, f"Assigned to {'you' if assignee == request.user else assignee}.")
        return self._back(obj)

    def _assignee(self, request, value):
        if value == "":
            return None
        if value == "me":
            return request.user
        if not re.fullmatch(r"\d{1,18}", value):
            raise review.ReviewError("Assign to a reviewer (their id), “me”, or nobody.")
        user = get_user_model().objects.filter(pk=int(value)).first()
        if user is None:
            raise review.ReviewError(f"No user with id {value}.")
        return user

    def comment_view(self, request, object_id):
        refused, obj = self._review_target(request, object_id)
        if refused:
            return refused
        text = request.POST.get("text", "")
        try:
            review.comment(obj, request.user, text, request=request)
        except review.ReviewError as error:
            return self._refused(request, obj, error, {"text": text})
        self.message_user(request, "Comment added.", messages.SUCCESS)
        return self._back(obj)

    # --- what the page shows -----------------------------------------------------------------

    def review_context(self, request, obj, extra=None):
        try:
            state = obj.review_state
        except obj.__class__.review_state.RelatedObjectDoesNotExist:
            state = None
        decision = state.decision if state is not None else None
        waiting_since = getattr(obj, "waiting_since", None)
        can_decide = self.has_decide_permission(request)
        events = timeline.events(
            obj, limit=TIMELINE_ON_PAGE + 1, audit=timeline.can_see_audit(request.user), views=False
        )
        lens = getattr(obj, "pii_lens", privacy.MASKED)
        return {
            "review_state": state,
            "decision": decision,
            "decision_badge": (
                rendering.badge(decision.get_outcome_display(), OUTCOME_TONES[decision.outcome]) if decision else ""
            ),
            "awaiting_second": bool(getattr(obj, "awaiting_second", False)),
            "changed_since": bool(getattr(obj, "changed_since", False)),
            "waiting_since": waiting_since,
            "overdue": waiting_since is not None and waiting_since < queue.overdue_cutoff(),
            "can_decide": can_decide,
            "reviewers": list(review.eligible_reviewers()) if can_decide else [],
            "decision_buttons": DECISION_BUTTONS,
            "reason_required": [outcome.value for outcome in REASON_REQUIRED],
            "comment_max_length": COMMENT_MAX_LENGTH,
            "decision_reason": lens.text(decision.reason, obj) if decision else "",
            "risk": risk_summary(obj, lens),
            "timeline": [describe(event, lens, obj) for event in events[:TIMELINE_ON_PAGE]],
            "timeline_more": len(events) > TIMELINE_ON_PAGE,
            "version": obj.updated_at.isoformat() if obj.updated_at else "",
            "review_form": {},
            **(extra or {}),
        }

    def history_view(self, request, object_id, extra_context=None):
        """Django's History button: this registration's whole timeline."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No registration with this id.")
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        lens = getattr(obj, "pii_lens", privacy.MASKED)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Timeline: {lens.name(obj.name) or obj.verifik_id}",
            "subtitle": None,
            "object": obj,
            "opts": self.opts,
            "timeline": [
                describe(event, lens, obj) for event in timeline.events(obj, audit=timeline.can_see_audit(request.user))
            ],
            "timeline_limit": timeline.LIMIT,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/registrations/appregistration/object_history.html", context)


# --- the risk summary: what Verifik sent, in plain words -------------------------------------


def _words(key):
    """camelCase and snake_case keys as words: ipCountryMismatch -> IP country mismatch."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|_", " ", str(key)).strip().lower()
    words = re.sub(r"\bip\b", "IP", spaced)
    return words[:1].upper() + words[1:]


def _plain(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{_words(k).lower()} {_plain(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return "; ".join(_plain(v) for v in value) or "—"
    return "—" if value is None else str(value)


def _verdict(passed):
    if passed is None:
        return None
    return "pass" if passed else "fail"


def risk_summary(obj, lens=privacy.MASKED):
    """Rows of (what, value, pass/fail/None) from the red flags and the populated validations, as `lens` shows them."""
    populated = lens.payload(obj.populated or {}, obj)
    red_flags_details = lens.payload(obj.red_flags_details, obj)
    rows = []
    for key, value in (red_flags_details or {}).items() if isinstance(red_flags_details, dict) else []:
        rows.append((_words(key), _plain(value), None if not isinstance(value, bool) else _verdict(not value)))
    biometric = populated.get("biometricValidation") or {}
    if isinstance(biometric, dict) and biometric.get("livenessScore") is not None:
        status = biometric.get("status")
        passed = {"validated": True, "failed": False}.get(status)
        rows.append(("Liveness score", f"{biometric['livenessScore']} ({status or 'no status'})", _verdict(passed)))
    compare = populated.get("compareFaceVerification") or {}
    result = compare.get("result") if isinstance(compare, dict) else None
    if isinstance(result, dict) and result.get("score") is not None:
        minimum = result.get("compare_min_score")
        value = f"{result['score']}" + (f" (minimum {minimum})" if minimum is not None else "")
        passed = result.get("passed")
        rows.append(("Face match score", value, _verdict(passed) if isinstance(passed, bool) else None))
    document = populated.get("documentValidation") or {}
    if isinstance(document, dict) and document.get("fullNameMatchPercentage") is not None:
        status = document.get("status")
        passed = {"completed": True, "failed": False}.get(status)
        rows.append(
            (
                "Document name match",
                f"{document['fullNameMatchPercentage']} % ({status or 'no status'})",
                _verdict(passed),
            )
        )
    return rows


# --- timeline entries in words ---------------------------------------------------------------


# The one free-text column of each kind of timeline event: people and Verifik write anything there.
FREE_TEXT = {"decision": "b", "comment": "a", "refresh": "c", "audit": "b"}


def describe(event, lens=privacy.MASKED, registration=None):
    """(when, who, what as HTML, tone) for one timeline event; free text (reasons, comments, errors) through `lens`."""
    kind, who = event.event, event.actor
    free_text = FREE_TEXT.get(kind)
    if free_text:
        event = replace(event, **{free_text: lens.text(getattr(event, free_text), registration)})
    if kind == "status":
        if event.a is None:
            what = format_html("First seen as {}", rendering.status_badge(event.b))
        elif event.a != event.b:
            what = format_html("Status {} → {}", rendering.status_badge(event.a), rendering.status_badge(event.b))
        else:
            what = format_html("Step {} → {}", event.c or "—", event.d or "—")
        if event.ref:
            url = reverse("admin:registrations_syncrun_change", args=[event.ref])
            what = format_html('{} <a href="{}" class="vf-muted">(run #{})</a>', what, url, event.ref)
        return event.at, who or "sync", what, "status"
    if kind == "decision":
        outcome = ReviewOutcome(event.a)
        label = rendering.badge(outcome.label, OUTCOME_TONES[outcome])
        what = format_html("{} {}", label, format_html("— {}", event.b) if event.b else "")
        return event.at, who, what, "decision"
    if kind == "confirmation":
        return event.at, who, format_html("Confirmed the approval by {} (four eyes)", event.a), "decision"
    if kind == "assignment":
        return event.at, who, (format_html("Assigned to {}", event.a) if event.a else "Unassigned"), "assignment"
    if kind == "comment":
        return event.at, who, format_html('<span class="vf-comment">{}</span>', event.a), "comment"
    if kind == "audit":
        label = AuditAction(event.a).label if event.a in AuditAction.values else event.a
        url = reverse("admin:registrations_auditevent_change", args=[event.ref])
        what = format_html('Audit: <a href="{}" class="vf-audit" data-action="{}">{}</a>', url, event.a, label)
        if event.b:
            what = format_html("{} — {}", what, event.b)
        return event.at, who or "system", what, "audit"
    url = reverse("admin:registrations_syncrun_change", args=[event.ref])
    what = format_html('Refresh from Verifik: {} (<a href="{}">run #{}</a>)', event.a, url, event.ref)
    if event.c:
        what = format_html("{} — {}", what, event.c)
    return event.at, who or event.b, what, "refresh"
