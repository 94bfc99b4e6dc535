"""A registration's activity, newest first, in one query: status changes, decisions and their
confirmations, assignments, comments and refreshes, and, for those allowed to read the audit
trail (`AUDIT_PERMISSION`), its audit events. Pure reads."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import CharField, F, IntegerField, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from .models import AuditAction, AuditEvent, ReviewAssignment, ReviewComment, ReviewDecision, StatusChange, SyncRun

LIMIT = 200
AUDIT_PERMISSION = "registrations.view_auditevent"
TEXT = CharField()


@dataclass(frozen=True)
class Event:
    event: str  # status, decision, confirmation, assignment, comment, refresh, audit
    at: datetime
    actor: str | None  # username; None for the sync
    a: str | None
    b: str | None
    c: str | None
    d: str | None
    ref: int | None  # the sync run, decision or refresh run it refers to


def _text(expression):
    return Cast(expression, TEXT)


def _columns(kind, at, actor=None, a=None, b=None, c=None, d=None, ref=None):
    none = Value(None, output_field=TEXT)
    return {
        "event": Value(kind, output_field=TEXT),
        "at": F(at),
        "actor": _text(F(actor)) if actor else none,
        "a": _text(F(a)) if a else none,
        "b": _text(F(b) if isinstance(b, str) else b) if b is not None else none,  # a field name or an expression
        "c": _text(F(c)) if c else none,
        "d": _text(F(d)) if d else none,
        "ref": F(ref) if ref else Value(None, output_field=IntegerField()),
    }


def can_see_audit(user):
    return user.has_perm(AUDIT_PERMISSION)


def events(registration, limit=LIMIT, audit=False, views=True):
    """The newest `limit` events of one registration; its audit events too when `audit` (see can_see_audit).

    `views=False` leaves out the audit trail's page views: every opening of the page writes one, so
    in the panel's few entries they would push out the decisions and status changes a reviewer reads.
    """
    legs = [
        StatusChange.objects.filter(registration=registration).values(
            **_columns(
                "status", "observed_at", a="from_status", b="to_status", c="from_step", d="to_step", ref="sync_run_id"
            )
        ),
        ReviewDecision.objects.filter(registration=registration).values(
            **_columns("decision", "decided_at", actor="reviewer__username", a="outcome", b="reason", ref="id")
        ),
        ReviewDecision.objects.filter(registration=registration, confirmed_at__isnull=False).values(
            **_columns("confirmation", "confirmed_at", actor="confirmed_by__username", a="reviewer__username", ref="id")
        ),
        ReviewAssignment.objects.filter(registration=registration).values(
            **_columns("assignment", "assigned_at", actor="assigned_by__username", a="assignee__username")
        ),
        ReviewComment.objects.filter(registration=registration).values(
            **_columns("comment", "created_at", actor="author__username", a="text")
        ),
        SyncRun.objects.filter(verifik_id=registration.verifik_id).values(
            **_columns("refresh", "started_at", actor="user__username", a="outcome", b="trigger", c="error", ref="id")
        ),
    ]
    if audit:
        columns = _columns(
            "audit", "at", actor="actor__username", a="action", b=KeyTextTransform("reason", "details"), ref="id"
        )
        # `at` and `actor` are fields of AuditEvent, which values() refuses as names; the union takes its
        # column names from the first leg, by position, so these may be called anything.
        trail = AuditEvent.objects.filter(registration=registration)
        if not views:
            trail = trail.exclude(action=AuditAction.VIEW)
        legs.append(
            trail.values(**{f"{name}_" if name in ("at", "actor") else name: value for name, value in columns.items()})
        )
    union = legs[0].union(*legs[1:], all=True).order_by("-at", "-ref")[:limit]
    return [Event(**row) for row in union]
