"""Service health: `GET /health/` for load balancers and operators, the same checks on the admin index.

django-health-check runs the checks concurrently; each one is a plugin of it:
the database, the broker, at least one worker answering a ping, beat answering
one (it only does while its last tick is recent, see CELERY_BEAT_ENABLE_REMOTE_CONTROL)
and the last successful full sync (registrations/health_checks.py). The answer
names each check and says OK or why not; it holds no data, so it needs no login.

The checks take a second (the pings wait for answers), so an anonymous caller never
runs them: it gets the last report from the "health" cache (the broker's Redis,
shared by every process), and when that report is older than HEALTH_CACHE_SECONDS
the one process that takes the refresh lock runs the checks in a thread of its own.
A staff session or HEALTH_TOKEN gets the checks run for it, now.
"""

import asyncio
import contextlib
import dataclasses
import datetime
import hmac
import json
import logging
import threading
import time

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import caches
from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.utils.http import http_date
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.contrib.redis import Redis
from health_check.exceptions import ServiceUnavailable
from redis import RedisError
from redis.asyncio import Redis as RedisClient

from registrations.health_checks import FullSyncRecent, LanesFresh

from .celery import app as celery_app

BEAT_NODE_PREFIX = "celerybeat@"
REPORT_KEY = "report"  # {"body": ..., "status": ..., "at": epoch seconds the checks finished}
REFRESH_LOCK_KEY = "refresh"
REFRESH_LOCK_SECONDS = 60  # a process that died while refreshing holds the lock no longer than this
log = logging.getLogger(__name__)


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


def report(results):
    """The JSON body and status of a set of results: 200 when every check passes, else 503."""
    failing = [name for name, result in results.items() if result.error]
    body = {
        "status": "failing" if failing else "ok",
        "checks": {name: str(result.error) if result.error else "OK" for name, result in results.items()},
    }
    return body, 503 if failing else 200


# What an anonymous caller gets before the first report of this deployment is stored (a second or so).
NOT_CHECKED_YET = {
    "body": {"status": "failing", "checks": dict.fromkeys(CHECKS, "Unavailable: not checked yet")},
    "status": 503,
    "at": None,
}


def refresh(cache):
    """Run the checks and store the report in `cache`; the caller holds the refresh lock, released here."""
    try:
        body, status = report(asyncio.run(run_checks()))
        cache.set(REPORT_KEY, {"body": body, "status": status, "at": time.time()}, timeout=None)
        log.info("health checks run for the stored report: %s", body["status"])
    except Exception:  # a thread of its own: nobody else would see it
        log.exception("health checks could not be stored")
    finally:
        connections.close_all()  # this thread's own, if a check left one
        with contextlib.suppress(RedisError):  # else it expires
            cache.delete(REFRESH_LOCK_KEY)


# The last report this process read from the shared cache: served without asking Redis while it is younger
# than the window (the report is the same; only who holds a copy differs).
_read = {"entry": None}


def _fresh(entry):
    return entry is not None and entry["at"] is not None and time.time() - entry["at"] < settings.HEALTH_CACHE_SECONDS


def stored_report():
    """The last stored report, never waiting on a check: starts a refresh in the background when it is stale.

    The shared cache first; while its Redis cannot be reached, this process's own (whose report
    then says the broker is down).
    """
    if _fresh(_read["entry"]):
        return _read["entry"]
    for alias in ("health", "health-local"):
        cache = caches[alias]
        try:
            entry = cache.get(REPORT_KEY)
            if not _fresh(entry) and cache.add(REFRESH_LOCK_KEY, 1, timeout=REFRESH_LOCK_SECONDS):
                threading.Thread(target=refresh, args=(cache,), name="health-refresh", daemon=True).start()
        except RedisError:
            continue
        _read["entry"] = entry
        return entry or NOT_CHECKED_YET
    raise AssertionError("the local cache cannot fail")


NEVER_CACHE = "max-age=0, no-cache, no-store, must-revalidate, private"  # what add_never_cache_headers writes


def stored_response():
    """The stored report as the response an anonymous caller gets, built for a flood of them: the JSON is
    rendered once per report, and a failing report is not logged again as a server error on every
    probe (the request line says 503; the refresh logs each new report once)."""
    entry = stored_report()
    if "json" not in entry:
        entry["json"] = json.dumps(entry["body"]).encode()
    response = HttpResponse(entry["json"], status=entry["status"], content_type="application/json")
    response["Cache-Control"] = NEVER_CACHE
    response["Expires"] = http_date()
    if entry["at"] is not None:
        response["X-Health-Checked-At"] = http_date(entry["at"])
    response._has_been_logged = True  # django.utils.log.log_response's own mark
    return response


class AnonymousHealthMiddleware:
    """Answers `GET /health/` without a session cookie or an Authorization header from the stored report,
    before sessions, CSRF, CSP and the rest run: a load balancer's probe (or a flood of them) costs a
    dictionary lookup. Anything else goes on to HealthView. The Host is checked as for every request."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.path = None

    def __call__(self, request):
        if self.path is None:
            self.path = reverse("health")
        anonymous = "Authorization" not in request.headers and settings.SESSION_COOKIE_NAME not in request.COOKIES
        if request.path == self.path and request.method in ("GET", "HEAD") and anonymous:
            request.get_host()  # DisallowedHost (400) for a Host outside DJANGO_ALLOWED_HOSTS
            return stored_response()
        return self.get_response(request)


def may_see_a_fresh_report(request):
    """`Authorization: Bearer HEALTH_TOKEN` (compared in constant time), or a staff session past its second factor."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if settings.HEALTH_TOKEN and scheme.lower() == "bearer":
        return hmac.compare_digest(given.strip().encode(), settings.HEALTH_TOKEN.encode())
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return False  # no session to look up: the anonymous path touches no database
    user = request.user
    verified = not settings.DJANGO_REQUIRE_2FA or user.is_verified()
    return user.is_active and user.is_staff and verified


@method_decorator(csrf_exempt, name="dispatch")
class HealthView(View):
    """Always JSON: {"status": "ok" or "failing", "checks": {name: "OK" or why}}, 200 when every check passes, else 503.

    Anonymous callers get the stored report (with the time its checks ran in X-Health-Checked-At);
    never cached by a proxy.
    """

    http_method_names = ["get", "head"]

    def get(self, request, *args, **kwargs):
        if not may_see_a_fresh_report(request):
            return stored_response()
        body, status = report(async_to_sync(run_checks)())
        response = JsonResponse(body, status=status)
        add_never_cache_headers(response)
        return response


def results_for_page():
    """The checks as rows for the admin index: (name, passed, message)."""
    results = async_to_sync(run_checks)()
    return [(name, not result.error, str(result.error) if result.error else "OK") for name, result in results.items()]
