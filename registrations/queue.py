"""The review queue: which registrations need a person, why, since when; pure reads.

Every rule is a condition on one registration row joined to its `ReviewState`,
evaluated in the query with the settings in force, so the list, its filters and
the dashboard agree with each other and with the data as it is now:

- *needs review*: a reason from Verifik (manual verification, red flags at the
  threshold, a failed biometric or document validation), not expired, deleted or
  removed upstream, and still open: no decision, an escalation or information
  request, an approval waiting for its second reviewer, or a change at Verifik
  after the decision;
- *waiting since*: the decision that kept it open, the change after the decision,
  or, undecided, its latest status change as the sync saw it (first sight when the
  status never changed).

`QueueOrder` lists the queue oldest waiting first without sorting it whole: each
way into the queue is its own index-ordered query ("leg"), cut at the page's end,
and one `UNION ALL` merges them (docs/DESIGN.md, "Review desk").
"""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import selectors
from .models import (
    REQUEUEING_OUTCOMES,
    RegistrationStatus,
    ReviewCheckpoint,
    ReviewOutcome,
    ReviewState,
    StatusChange,
)

QUEUE_VIEWS = {
    "needs_review": "Needs review",
    "overdue": "Overdue",
    "mine": "Assigned to me",
    "unassigned": "Unassigned",
    "awaiting_second": "Awaiting second approval",
}
DECISION_VIEWS = {
    "none": "No decision",
    **{outcome.value: outcome.label for outcome in ReviewOutcome},
    "changed_since": "Changed since decision",
}
VERSIONS_CHECKPOINT = "versions"
# Registrations written within this long before a version check are compared live again: a sync
# transaction that stamped its rows just before the check may commit just after it.
CHECK_MARGIN = timedelta(minutes=10)


def red_flags_threshold():
    return settings.VERIFIK_REVIEW_RED_FLAGS


def four_eyes():
    return settings.VERIFIK_REVIEW_FOUR_EYES


def sla():
    return timedelta(hours=settings.VERIFIK_REVIEW_SLA_HOURS)


def overdue_cutoff(now=None):
    """Registrations waiting since before this are overdue."""
    return (now or timezone.now()) - sla()


# --- the rules, as conditions on AppRegistration ---------------------------------------


def reasons_q():
    """What Verifik sent that asks for a person."""
    return (
        Q(status=RegistrationStatus.NEEDS_MANUAL_VERIFICATION)
        | Q(red_flags__gte=red_flags_threshold())
        | Q(failed_biometric_count__gt=0)
        | Q(failed_document_count__gt=0)
    )


def reviewable_q():
    """Nobody reviews what expired, what Verifik deleted, or what is gone upstream."""
    return ~Q(status=RegistrationStatus.EXPIRED) & ~Q(deleted=True) & Q(removed_upstream_at__isnull=True)


def undecided_q():
    return Q(review_state__outcome__isnull=True)


def undecided_anti_q():
    """`undecided_q()` as an anti-join, for the queue's legs and counts.

    Same rows (no `ReviewState`, or one without an outcome), but Postgres estimates
    an anti-join from the decided rows' count, where it reads `outcome IS NULL`
    after a LEFT JOIN as "almost none" (664 expected where 10,001 are read) and
    builds a bitmap of every index entry and a hash of every state to find them.
    """
    decided = ReviewState.objects.filter(registration=OuterRef("pk"), outcome__isnull=False)
    return ~Exists(decided)


def requeued_q():
    return Q(review_state__outcome__in=REQUEUEING_OUTCOMES)


def awaiting_second_q():
    """An approval of a registration at the red-flag threshold, not yet confirmed by another reviewer."""
    if not four_eyes():
        return Q(pk__in=[])
    return Q(
        review_state__outcome=ReviewOutcome.APPROVED,
        review_state__confirmed_at__isnull=True,
        red_flags__gte=red_flags_threshold(),
    )


def changed_since_q():
    """Verifik's version moved past the one the latest decision was made on."""
    return Q(review_state__decision_version__lt=F("updated_at"))


def open_q():
    return undecided_q() | requeued_q() | awaiting_second_q() | changed_since_q()


def needs_review_q():
    return reasons_q() & reviewable_q() & open_q()


def decision_q(value):
    """The `decision=` filter: no decision, the latest decision's outcome, or changed since it."""
    if value == "none":
        return undecided_q()
    if value == "changed_since":
        return changed_since_q()
    return Q(review_state__outcome=value)


# Status moves: a StatusChange that changed the status (not a first sight, not a step-only change).
MOVE_Q = Q(from_status__isnull=False) & ~Q(to_status=F("from_status"))


def latest_move():
    """When the sync last saw this registration's status change."""
    moves = StatusChange.objects.filter(MOVE_Q, registration=OuterRef("pk")).order_by("-observed_at", "-id")
    return Subquery(moves.values("observed_at")[:1])


def first_sight():
    return Coalesce("first_synced_at", "created_at")


def waiting_since():
    """When the registration entered the queue; null when it is not in it."""
    return Case(
        When(~(reasons_q() & reviewable_q()), then=Value(None)),
        When(undecided_q(), then=Coalesce(latest_move(), "first_synced_at", "created_at")),
        When(requeued_q() | awaiting_second_q(), then=F("review_state__decided_at")),
        When(changed_since_q(), then=F("updated_at")),
        default=Value(None),
        output_field=DateTimeField(),
    )


def with_review(queryset):
    """The annotations the list and the detail page read: waiting since, awaiting second, changed since."""
    if "waiting_since" in queryset.query.annotations:
        return queryset
    return queryset.annotate(
        waiting_since=waiting_since(),
        awaiting_second=ExpressionWrapper(awaiting_second_q(), output_field=BooleanField()),
        changed_since=ExpressionWrapper(changed_since_q(), output_field=BooleanField()),
    )


def attach_review(*rows):
    """Set waiting_since, awaiting_second and changed_since on registrations already fetched, in one query."""
    if not rows:
        return
    values = with_review(rows[0].__class__.objects.filter(pk__in=[r.pk for r in rows])).values_list(
        "pk", "waiting_since", "awaiting_second", "changed_since"
    )
    found = {pk: rest for pk, *rest in values}
    for row in rows:
        row.waiting_since, row.awaiting_second, row.changed_since = found.get(row.pk, (None, False, False))


def queue_q(view, user=None, now=None):
    """The `queue=` filter as a condition on an annotated queryset (`with_review`)."""
    q = needs_review_q()
    if view == "overdue":
        return q & Q(waiting_since__lt=overdue_cutoff(now))
    if view == "mine":
        return q & Q(review_state__assignee=user)
    if view == "unassigned":
        return q & Q(review_state__assignee__isnull=True)
    if view == "awaiting_second":
        # Awaiting a second approval implies a reason (red flags at the threshold) and an open case, so this
        # is needs_review_q() & awaiting_second_q() without the conditions the dashboard's count could not
        # read from the red-flag index (an index-only scan joined to ReviewState, not a scan of the table).
        return reviewable_q() & awaiting_second_q()
    return q


# --- the queue in waiting order, by index ----------------------------------------------


def checkpoint():
    """Up to when `ReviewState.changed_at` is current (minus the margin); None before the first check."""
    return ReviewCheckpoint.objects.filter(name=VERSIONS_CHECKPOINT).values_list("reached", flat=True).first()


def legs(base, view=None, decision=None, user=None, now=None, reached=None, since=None):
    """The queue view as disjoint index-ordered querysets of (rid, waiting_key); None when it has no such plan.

    `base` is the list's queryset without its queue and decision filters. Small views
    (mine, awaiting second) and views that are not the queue are listed the ordinary way.
    `since` keeps only rows waiting since then or later (what entered the queue recently).
    """
    if view in ("mine", "awaiting_second") or decision == "none" or (view is None and decision != "changed_since"):
        return None
    in_scope = reasons_q() & reviewable_q() if view is not None else Q()
    if view == "unassigned":
        in_scope &= Q(review_state__assignee__isnull=True)
    if decision not in (None, "changed_since"):  # the changed legs are changed_since by construction
        in_scope &= decision_q(decision)
    cutoff = overdue_cutoff(now) if view == "overdue" else None
    bounds = (cutoff, since)
    closed = Q(review_state__outcome__in=[ReviewOutcome.APPROVED, ReviewOutcome.REJECTED]) & ~awaiting_second_q()
    # Rows the sync wrote since the last version check are compared live; the others by the stored copy.
    recent = Q(last_synced_at__gte=reached) if reached is not None else Q()
    settled = Q(last_synced_at__lt=reached) if reached is not None else Q(pk__in=[])
    undecided = decision in (None, "none")
    chosen = []
    if view is not None and undecided:
        moved = Exists(StatusChange.objects.filter(MOVE_Q, registration=OuterRef("pk")))
        chosen.append(_registration_leg(base, in_scope & undecided_anti_q() & ~Q(moved), first_sight(), *bounds))
        chosen.append(_move_leg(base.filter(in_scope & undecided_anti_q()), *bounds))
    if view is not None and decision in (None, *REQUEUEING_OUTCOMES, ReviewOutcome.APPROVED):
        chosen.append(
            _registration_leg(
                base, in_scope & (requeued_q() | awaiting_second_q()), "review_state__decided_at", *bounds
            )
        )
    if decision in (None, ReviewOutcome.APPROVED, ReviewOutcome.REJECTED, "changed_since"):
        changed = in_scope & closed
        chosen.append(
            _registration_leg(
                base, changed & Q(review_state__changed_at__isnull=False) & settled, "review_state__changed_at", *bounds
            )
        )
        chosen.append(_registration_leg(base, changed & changed_since_q() & recent, "updated_at", *bounds))
    if view is None and decision == "changed_since":
        # Open decisions (escalated, information requested, awaiting a second reviewer) changed since too,
        # found like the closed ones: the stored copy of versions, and live only for rows synced since.
        reopened = requeued_q() | awaiting_second_q()
        chosen.append(
            _registration_leg(
                base,
                reopened & Q(review_state__changed_at__isnull=False) & settled,
                "review_state__changed_at",
                *bounds,
            )
        )
        chosen.append(_registration_leg(base, reopened & changed_since_q() & recent, "updated_at", *bounds))
    return chosen


def _registration_leg(base, condition, key, cutoff, since=None):
    leg = base.filter(condition).annotate(waiting_key=F(key) if isinstance(key, str) else key)
    if cutoff is not None:
        leg = leg.filter(waiting_key__lt=cutoff)
    if since is not None:
        leg = leg.filter(waiting_key__gte=since)
    return leg.values(rid=F("pk"), waiting_key=F("waiting_key")).order_by("waiting_key", "rid")


def _move_leg(registrations, cutoff, since=None):
    """Undecided registrations whose status changed: their latest move, walked by when the sync saw it."""
    later = StatusChange.objects.filter(MOVE_Q, registration=OuterRef("registration")).filter(
        Q(observed_at__gt=OuterRef("observed_at")) | Q(observed_at=OuterRef("observed_at"), id__gt=OuterRef("id"))
    )
    moves = StatusChange.objects.filter(MOVE_Q, registration__in=registrations.values("pk")).filter(~Exists(later))
    if cutoff is not None:
        moves = moves.filter(observed_at__lt=cutoff)
    if since is not None:
        moves = moves.filter(observed_at__gte=since)
    return moves.values(rid=F("registration_id"), waiting_key=F("observed_at")).order_by("waiting_key", "rid")


# How deep the merged legs are paged: each leg is cut at the page's end, and past a few hundred
# rows Postgres stops walking the legs' indexes and sorts them whole (2-6 s a page at 1M).
ORDERED_DEPTH = 200


def ordered_page(legs_, offset, limit):
    """The registrations ids at [offset, offset + limit) of the merged legs, oldest waiting first."""
    cut = [leg[: offset + limit] for leg in legs_]
    if not cut:
        return []
    merged = cut[0].union(*cut[1:], all=True).order_by("waiting_key", "rid")
    return [row["rid"] for row in merged[offset : offset + limit]]


def size(base, view=None, decision=None, user=None, now=None, reached=None, cap=None, legs_=None):
    """How many registrations a queue view lists, counted up to `cap` (a `selectors.Count`).

    Views that depend on how long rows waited (overdue) and the decision views are counted over
    their legs (`legs_` when the caller built them); the others over the plain filter, which
    Postgres walks in id order and leaves at the cap (at 1M, a quarter of the time of the legs).
    The overdue view is the queue less its recent rows when those are few (`_by_difference`).
    """
    if view == "overdue" and decision is None:
        both = _by_difference(base, user=user, now=now, reached=reached, cap=cap)
        if both is not None:
            return both[1]
    chosen = legs_ if legs_ is not None else legs(base, view, decision, user=user, now=now, reached=reached)
    if chosen is None or (view in ("needs_review", "unassigned") and decision is None):
        plain = with_review(base)
        if view is not None:
            plain = plain.filter(queue_q(view, user=user, now=now))
        if decision is not None:
            plain = plain.filter(decision_q(decision))
        return selectors.capped_count(plain, cap)
    # The first leg alone usually passes the cap in a big queue: counted by itself, the other legs are
    # never planned (planned for a UNION, the move leg's semi-join is a sequential scan, even unexecuted).
    first = selectors.capped_count(chosen[0], cap)
    if not first.exact or len(chosen) == 1:
        return first
    # The legs are disjoint: the others are counted up to what the cap leaves, not the first again.
    cap = selectors.COUNT_CAP if cap is None else cap
    rest = chosen[1].order_by()
    if len(chosen) > 2:
        rest = rest.union(*(leg.order_by() for leg in chosen[2:]), all=True)
    others = selectors.capped_count(rest, cap - first.value)
    return selectors.Count(first.value + others.value) if others.exact else selectors.Count(cap, exact=False)


def queue_and_overdue(base, user=None, now=None, reached=None, cap=None):
    """(the queue's size, how many of it are overdue), each counted up to `cap`, for the dashboard.

    One count of the queue serves both when the recent rows can be counted (`_by_difference`).
    """
    both = _by_difference(base, user=user, now=now, reached=reached, cap=cap)
    if both is not None:
        return both
    return (
        size(base, "needs_review", user=user, now=now, reached=reached, cap=cap),
        size(base, "overdue", user=user, now=now, reached=reached, cap=cap),
    )


def _by_difference(base, user=None, now=None, reached=None, cap=None):
    """(queue, overdue) with overdue = the queue less what entered it within the SLA; None past the cap.

    Counting the overdue rows themselves walks the oldest leg through its index and checks
    every entry's decision and status moves (70-170 ms at 1M for the 10,001 the cap reads).
    Here the recent rows are an index range at the young end of each leg (a few hundred in a
    big backlog), and the queue is counted over the plain filter, as `queue=needs_review` is,
    up to the cap plus those rows: one statement, the second count's LIMIT read from the first.
    When the recent rows alone pass the cap, None: the legs are counted as they are.
    """
    cap = selectors.COUNT_CAP if cap is None else cap
    now = now or timezone.now()
    fresh_legs = legs(base, "needs_review", user=user, now=now, reached=reached, since=overdue_cutoff(now))
    fresh = fresh_legs[0].order_by().union(*(leg.order_by() for leg in fresh_legs[1:]), all=True)[: cap + 1]
    waiting = with_review(base).filter(queue_q("needs_review")).select_related(None).values("pk").order_by()
    try:
        waiting_sql, waiting_params = waiting.query.sql_with_params()
    except EmptyResultSet:  # the list's filters match nothing (a search without hits: pk IN ())
        return selectors.Count(0), selectors.Count(0)
    try:
        fresh_sql, fresh_params = fresh.query.sql_with_params()
    except EmptyResultSet:  # no leg can hold a row (every one's filters are empty)
        fresh_sql, fresh_params = "SELECT 1 WHERE false", ()
    # Both parts are the ORM's own SQL; every value is a parameter.
    sql = (
        f"WITH fresh AS (SELECT COUNT(*) AS n FROM ({fresh_sql}) AS f) SELECT (SELECT n FROM fresh), "  # noqa: S608
        f"(SELECT COUNT(*) FROM ({waiting_sql} LIMIT %s + (SELECT n FROM fresh)) AS w)"
    )
    with connections[base.db].cursor() as cursor:
        cursor.execute(sql, (*fresh_params, *waiting_params, cap + 1))
        fresh_count, waiting_count = cursor.fetchone()
    if fresh_count > cap:
        return None
    in_queue = selectors.Count(waiting_count) if waiting_count <= cap else selectors.Count(cap, exact=False)
    if waiting_count > cap + fresh_count:
        return in_queue, selectors.Count(cap, exact=False)
    return in_queue, selectors.Count(waiting_count - fresh_count)
