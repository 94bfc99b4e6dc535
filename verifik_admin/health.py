"""Service health: `GET /health/` for load balancers and operators, the same checks on the admin index.

django-health-check runs the checks concurrently; each one is a plugin of it:
the database, the broker, at least one worker answering a ping, beat answering
one (it only does while its last tick is recent, see CELERY_BEAT_ENABLE_REMOTE_CONTROL)
and the last successful full sync (registrations/health_checks.py). The answer
names each check and says OK or why not; it holds no data, so it needs no login.
"""

import asyncio
import dataclasses
import datetime

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import JsonResponse
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.contrib.redis import Redis
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView
from redis.asyncio import Redis as RedisClient

from registrations.health_checks import FullSyncRecent, LanesFresh

from .celery import app as celery_app

BEAT_NODE_PREFIX = "celerybeat@"


def _broker_client():
    if not settings.CELERY_BROKER_URL:
        raise ServiceUnavailable("CELERY_BROKER_URL is not set")
    return RedisClient.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)


@dataclasses.dataclass
class Broker(Redis):
    """The Celery broker (Redis) answers PING."""

    client_factory: object = dataclasses.field(default=_broker_client, repr=False)

    def __repr__(self):
        return "Broker()"


def ping_nodes():
    """Names of the Celery nodes (workers, and beat as celerybeat@host) that answered a ping in time."""
    if not settings.CELERY_BROKER_URL:
        raise ServiceUnavailable("CELERY_BROKER_URL is not set")
    timeout = settings.HEALTH_PING_TIMEOUT.total_seconds()
    try:
        with celery_app.connection_for_write(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1)
            replies = celery_app.control.ping(timeout=timeout, connection=conn)
    except Exception as exc:  # kombu and redis raise their own kinds for an unreachable broker
        raise ServiceUnavailable("cannot reach the broker") from exc
    return {name for reply in replies for name, answer in reply.items() if answer == {"ok": "pong"}}


@dataclasses.dataclass
class Workers(HealthCheck):
    """At least one Celery worker answers a ping."""

    timeout: datetime.timedelta = dataclasses.field(default=datetime.timedelta(seconds=3), repr=False)

    def run(self):
        if not [name for name in ping_nodes() if not name.startswith(BEAT_NODE_PREFIX)]:
            raise ServiceUnavailable("no worker answered a ping")


@dataclasses.dataclass
class Beat(HealthCheck):
    """Celery beat answers a ping, which it does only while its last tick is recent."""

    timeout: datetime.timedelta = dataclasses.field(default=datetime.timedelta(seconds=3), repr=False)

    def run(self):
        if not [name for name in ping_nodes() if name.startswith(BEAT_NODE_PREFIX)]:
            raise ServiceUnavailable("beat did not answer a ping: not running, or its last tick is too old")


CHECKS = {
    "database": Database,
    "broker": Broker,
    "workers": Workers,
    "beat": Beat,
    "full_sync": FullSyncRecent,
    "freshness": LanesFresh,
}


async def run_checks():
    """{check name: HealthCheckResult}, every check run concurrently (each sync one in its own thread)."""
    checks = [check() for check in CHECKS.values()]
    results = await asyncio.gather(*(check.get_result() for check in checks))
    return dict(zip(CHECKS, results, strict=True))


class HealthView(HealthCheckView):
    """200 when every check passes, else 503; always JSON: {"status": ..., "checks": {name: "OK" or why}}.

    The base view adds no-cache headers and keeps the checks out of ATOMIC_REQUESTS.
    """

    checks = tuple(CHECKS.values())

    async def get(self, request, *args, **kwargs):
        results = await run_checks()
        failing = [name for name, result in results.items() if result.error]
        body = {
            "status": "failing" if failing else "ok",
            "checks": {name: str(result.error) if result.error else "OK" for name, result in results.items()},
        }
        return JsonResponse(body, status=503 if failing else 200)


def results_for_page():
    """The checks as rows for the admin index: (name, passed, message)."""
    results = async_to_sync(run_checks)()
    return [(name, not result.error, str(result.error) if result.error else "OK") for name, result in results.items()]
