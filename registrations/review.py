"""The review desk's one writer: decisions (with four eyes), assignment and comments.

Every action writes our own tables only (never a mirrored registration) and keeps
`ReviewState`, the per-registration summary the queue is filtered on, and its audit
event in the same transaction. Decisions, assignments and comments are append-only;
the only update of a decision is the second reviewer's confirmation of an approval.
`request`, when given, only lends the audit event its client address.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from . import audit, queue
from .models import (
    COMMENT_MAX_LENGTH,
    REASON_REQUIRED,
    AppRegistration,
    AuditAction,
    ReviewAssignment,
    ReviewCheckpoint,
    ReviewComment,
    ReviewDecision,
    ReviewOutcome,
    ReviewState,
)

DECIDE_PERMISSION = "registrations.decide_appregistration"


class ReviewError(Exception):
    """A request the desk refuses, in words the reviewer can act on. Nothing was written."""


@dataclass(frozen=True)
class Decided:
    decision: ReviewDecision
    confirmed: bool = False  # this approval confirmed another reviewer's
    awaiting_second: bool = False  # this approval needs another reviewer's
    stale: bool = False  # Verifik changed the registration after the version the reviewer saw


def can_review(user):
    return user.is_active and user.has_perm(DECIDE_PERMISSION)


def eligible_reviewers():
    """Active staff who may decide: the people a registration can be assigned to."""
    app_label, codename = DECIDE_PERMISSION.split(".")
    perm = Q(content_type__app_label=app_label, codename=codename)
    from django.contrib.auth.models import Permission

    permission = Permission.objects.filter(perm)
    return (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .filter(Q(is_superuser=True) | Q(groups__permissions__in=permission) | Q(user_permissions__in=permission))
        .distinct()
        .order_by("username")
    )


def _locked_state(registration):
    """The registration's ReviewState, created if needed and locked for this transaction."""
    ReviewState.objects.get_or_create(registration=registration)
    return ReviewState.objects.select_for_update().get(registration=registration)


def _pending_approval(state, registration):
    """The latest decision when it is an approval still waiting for its second reviewer."""
    if not (queue.four_eyes() and state.outcome == ReviewOutcome.APPROVED and state.confirmed_at is None):
        return None
    if (registration.red_flags or 0) < queue.red_flags_threshold():
        return None
    return state.decision


def decide(registration, reviewer, outcome, reason="", seen_version=None, now=None, request=None):
    """Record a decision on the version the reviewer saw (default: the stored one).

    An approval of a registration at the red-flag threshold waits for a second
    reviewer when four eyes are on; another reviewer's approval then confirms it
    (filling `confirmed_by`/`confirmed_at`) instead of adding a decision.
    """
    if outcome not in ReviewOutcome.values:
        raise ReviewError(f"Unknown outcome {outcome!r}: choose approve, reject, escalate or request information.")
    reason = (reason or "").strip()
    if outcome in REASON_REQUIRED and not reason:
        raise ReviewError(f"A reason is required to record “{ReviewOutcome(outcome).label}”.")
    if len(reason) > COMMENT_MAX_LENGTH:
        raise ReviewError(f"The reason is longer than {COMMENT_MAX_LENGTH:,} characters.")
    now = now or timezone.now()
    with transaction.atomic():
        state = _locked_state(registration)
        registration = AppRegistration.objects.get(pk=registration.pk)  # the version as stored now
        version = registration.updated_at
        if seen_version is not None and version is not None:
            version = min(seen_version, version)  # never later than what is stored
        stale = version is not None and registration.updated_at is not None and version < registration.updated_at
        pending = _pending_approval(state, registration)
        if outcome == ReviewOutcome.APPROVED and pending is not None:
            if pending.reviewer_id == reviewer.pk:
                raise ReviewError("You approved this registration already; four eyes need a different reviewer.")
            ReviewDecision.objects.filter(pk=pending.pk).update(confirmed_by=reviewer, confirmed_at=now)
            state.confirmed_at = now
            state.save(update_fields=["confirmed_at"])
            pending.refresh_from_db()
            _audit_decision(pending, reviewer, request, confirmed=True)
            return Decided(pending, confirmed=True, stale=stale)
        entered = queue.with_review(AppRegistration.objects.filter(pk=registration.pk)).values_list(
            "waiting_since", flat=True
        )[0]
        decision = ReviewDecision.objects.create(
            registration=registration,
            outcome=outcome,
            reason=reason,
            reviewer=reviewer,
            decided_at=now,
            upstream_updated_at=version,
            entered_queue_at=entered,
        )
        state.decision = decision
        state.outcome = outcome
        state.decided_at = now
        state.decision_version = version
        state.confirmed_at = None
        state.changed_at = registration.updated_at if stale else None
        state.save()
        _audit_decision(decision, reviewer, request)
    awaiting = _pending_approval(state, registration) is not None
    return Decided(decision, awaiting_second=awaiting, stale=stale)


def _audit_decision(decision, reviewer, request, confirmed=False):
    details = {"outcome": decision.outcome, "decision": decision.pk, "reason": decision.reason}
    if confirmed:
        details = {**details, "confirmed": True, "first_reviewer": decision.reviewer.get_username()}
    audit.record(
        AuditAction.DECIDE, actor=reviewer, registration=decision.registration, request=request, details=details
    )


def assign(registration, actor, assignee, now=None, request=None):
    """Give the registration to `assignee` (None: nobody). Returns False when nothing changed."""
    if assignee is not None and not (assignee.is_staff and can_review(assignee)):
        raise ReviewError(f"{assignee} cannot review registrations, so cannot be assigned one.")
    now = now or timezone.now()
    with transaction.atomic():
        state = _locked_state(registration)
        if state.assignee_id == (assignee.pk if assignee else None):
            return False
        ReviewAssignment.objects.create(
            registration=registration, assignee=assignee, assigned_by=actor, assigned_at=now
        )
        state.assignee = assignee
        state.assigned_at = now if assignee else None
        state.save(update_fields=["assignee", "assigned_at"])
        audit.record(
            AuditAction.ASSIGN,
            actor=actor,
            registration=registration,
            request=request,
            details={"assignee": assignee.get_username() if assignee else None},
        )
    return True


def comment(registration, author, text, now=None, request=None):
    text = (text or "").strip()
    if not text:
        raise ReviewError("A comment cannot be empty.")
    if len(text) > COMMENT_MAX_LENGTH:
        raise ReviewError(f"A comment can be at most {COMMENT_MAX_LENGTH:,} characters ({len(text):,} given).")
    with transaction.atomic():
        created = ReviewComment.objects.create(
            registration=registration, author=author, text=text, created_at=now or timezone.now()
        )
        audit.record(
            AuditAction.COMMENT,
            actor=author,
            registration=registration,
            request=request,
            details={"comment": created.pk},
        )
    return created


def check_versions(now=None):
    """Compare the versions the sync wrote since the last check with the decisions made on them.

    Stores each decided registration's newer version in `ReviewState.changed_at`, so
    the queue finds "changed since decision" through an index; registrations written
    within `queue.CHECK_MARGIN` before the check stay compared live. Returns the rows changed.
    """
    now = now or timezone.now()
    reached = queue.checkpoint()
    states = ReviewState.objects.filter(decision_version__isnull=False)
    if reached is not None:
        states = states.filter(registration__last_synced_at__gte=reached)
    newer = AppRegistration.objects.filter(pk=OuterRef("registration_id"), updated_at__gt=OuterRef("decision_version"))
    with transaction.atomic():
        changed = states.update(changed_at=Subquery(newer.values("updated_at")[:1]))
        ReviewCheckpoint.objects.update_or_create(
            name=queue.VERSIONS_CHECKPOINT, defaults={"reached": now - queue.CHECK_MARGIN}
        )
    return changed


def parse_version(text):
    """The version a form carried back (ISO 8601), or None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else None
