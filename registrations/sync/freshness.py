"""How current the mirror is, lane by lane, from each lane's last successful sync.

A walk reads Verifik from its start on, so a change made after a sync began may
be missed by it: "current as of" is when the last successful sync of the lane
started. The active lane covers the statuses reviewers work on; the full lane
everything. The freshness health check fails when either lane's last success
(when it finished, like the full_sync check) is older than its limit.
"""

from django.conf import settings
from django.utils import timezone

from .. import selectors


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
    health = selectors.sync_health()
    problems = []
    for lane, run, limit in (
        ("active", health.last_active_success, settings.HEALTH_ACTIVE_SYNC_MAX_AGE),
        ("full", health.last_full_success, settings.HEALTH_FULL_SYNC_MAX_AGE),
    ):
        at = run and run.finished_at
        if at is None:
            problems.append(f"{lane} lane: no {lane} sync has succeeded yet")
        elif now - at > limit:
            problems.append(
                f"{lane} lane: the last successful {lane} sync is {_span(now - at)} old (limit {_span(limit)})"
            )
    return problems
