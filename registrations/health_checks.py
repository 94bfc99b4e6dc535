"""Health-check plugins (django-health-check) about the sync itself; verifik_admin/health.py runs them."""

import dataclasses

from django.conf import settings
from django.db import connection
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from .selectors import sync_health
from .sync.freshness import stale_lanes


def _hours(delta):
    return f"{round(delta.total_seconds() / 3600, 1):g} h"


@dataclasses.dataclass
class FullSyncRecent(HealthCheck):
    """The last successful full sync, the only one that confirms every registration, is recent enough.

    Beat schedules one every VERIFIK_FULL_SYNC_HOURS; missing two in a row means the
    mirror can no longer be trusted to be complete.
    """

    def run(self):
        max_age = settings.HEALTH_FULL_SYNC_MAX_AGE
        try:
            finished_at = sync_health().covered_at
        finally:
            connection.close()  # checks run in short-lived threads: do not leave their connection open
        if finished_at is None:
            raise ServiceUnavailable("no full sync has succeeded yet")
        age = timezone.now() - finished_at
        if age > max_age:
            raise ServiceUnavailable(f"the last successful full sync is {_hours(age)} old (limit {_hours(max_age)})")


@dataclasses.dataclass
class LanesFresh(HealthCheck):
    """Each lane's last successful sync is recent enough: the active lane within 3 x VERIFIK_ACTIVE_SYNC_MINUTES,
    the full lane within 2 x VERIFIK_FULL_SYNC_HOURS. The message names the lane and its age."""

    def run(self):
        try:
            problems = stale_lanes()
        finally:
            connection.close()  # checks run in short-lived threads: do not leave their connection open
        if problems:
            raise ServiceUnavailable("; ".join(problems))
