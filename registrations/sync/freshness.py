"""How current the mirror is, lane by lane, from each lane's last successful sync.

A walk reads Verifik from its start on, so a change made after a sync began may
be missed by it: "current as of" is when the last successful sync of the lane
started. The active lane covers the statuses reviewers work on; the full lane
everything. The freshness health check fails when either lane's last success
(when it finished, like the full_sync check) is older than its limit.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from ..models import SyncRun


@dataclass(frozen=True)
class Freshness:
    active_at: datetime | None  # the start of the last successful active sync: active statuses current as of
    full_at: datetime | None  # the start of the last successful full sync: everything current as of
    active_finished_at: datetime | None = None
    full_finished_at: datetime | None = None


def lane_freshness():
    """Both lanes in one query: the latest start and the latest finish of each lane's successful syncs."""
    rows = {
        row["kind"]: row
        for row in SyncRun.objects.filter(
            kind__in=[SyncRun.Kind.ACTIVE, SyncRun.Kind.FULL], outcome=SyncRun.Outcome.SUCCEEDED
        )
        .values("kind")
        .annotate(started=Max("started_at"), finished=Max("finished_at"))
        .order_by()
    }
    active, full = rows.get(SyncRun.Kind.ACTIVE, {}), rows.get(SyncRun.Kind.FULL, {})
    return Freshness(
        active_at=active.get("started"),
        full_at=full.get("started"),
        active_finished_at=active.get("finished"),
        full_finished_at=full.get("finished"),
    )


def _span(delta):
    seconds = delta.total_seconds()
    if seconds < 2 * 3600:
        return f"{round(seconds / 60, 1):g} min"
    return f"{round(seconds / 3600, 1):g} h"


def stale_lanes(now=None):
    """Why each lane is not fresh enough, in words (empty when both are): the lane, its age and its limit.

    Limits: 3 x VERIFIK_ACTIVE_SYNC_MINUTES for the active lane, 2 x VERIFIK_FULL_SYNC_HOURS for the full lane.
    """
    now = now or timezone.now()
    fresh = lane_freshness()
    problems = []
    for lane, at, limit in (
        ("active", fresh.active_finished_at, settings.HEALTH_ACTIVE_SYNC_MAX_AGE),
        ("full", fresh.full_finished_at, settings.HEALTH_FULL_SYNC_MAX_AGE),
    ):
        if at is None:
            problems.append(f"{lane} lane: no {lane} sync has succeeded yet")
        elif now - at > limit:
            problems.append(
                f"{lane} lane: the last successful {lane} sync is {_span(now - at)} old (limit {_span(limit)})"
            )
    return problems
