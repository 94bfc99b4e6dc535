"""The team dashboard's figures: queue, overdue, four eyes, decisions, time to decision, intake, drop-off.

Pure reads, each a single indexed query; the queue figures are counted up to
`selectors.COUNT_CAP` ("more than 10,000", `queue.size`)."""

import statistics
from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Count, F
from django.db.models.functions import TruncDate
from django.utils import timezone

from . import queue, selectors
from .models import AppRegistration, RegistrationStatus, ReviewDecision

DAYS = 30
STOPPED_STATUSES = (RegistrationStatus.STARTED, RegistrationStatus.ONGOING)


@dataclass(frozen=True)
class Figures:
    days: list  # the dates charted, oldest first
    queue: selectors.Count
    overdue: selectors.Count
    awaiting_second: selectors.Count
    decisions: dict  # (date, outcome) -> count
    median_to_decision: timedelta | None
    decided: int  # decisions the median is taken over
    intake: dict  # (date, status) -> count
    stopped: list  # [(current step, count)], most first


def figures(now=None):
    now = now or timezone.now()
    today = timezone.localdate(now)
    days = [today - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    since = now - timedelta(days=DAYS)
    base = AppRegistration.objects.all()
    reached = queue.checkpoint()
    recent = ReviewDecision.objects.filter(decided_at__gte=since)
    waits = [
        decided - entered
        for decided, entered in recent.filter(entered_queue_at__isnull=False).values_list(
            "decided_at", "entered_queue_at"
        )
        if decided >= entered
    ]
    in_queue, overdue = queue.queue_and_overdue(base, now=now, reached=reached)
    return Figures(
        days=days,
        queue=in_queue,
        overdue=overdue,
        awaiting_second=queue.size(base, "awaiting_second", now=now, reached=reached),
        decisions=_by_day(recent, "decided_at", "outcome"),
        median_to_decision=statistics.median(waits) if waits else None,
        decided=len(waits),
        intake=_by_day(base.filter(created_at__gte=since), "created_at", "status"),
        stopped=list(
            base.filter(status__in=STOPPED_STATUSES)
            .values_list("current_step")
            .annotate(n=Count("*"))  # COUNT(*): an index-only scan of review_stopped_step_idx (0010)
            .order_by("-n", "current_step")
        ),
    )


def _by_day(queryset, moment, field):
    rows = (
        queryset.annotate(day=TruncDate(moment))
        .values("day", field)
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("day", F(field), "n")
    )
    return {(day, value): n for day, value, n in rows if isinstance(day, date)}
