"""GET /health/ and the admin index's service health, against a real broker, worker and beat.

Anonymous callers get the stored report; the check semantics are tested on the fresh one
(HEALTH_TOKEN), the storing and sharing on the anonymous one.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.core.cache import caches
from django.db import connection
from django.utils import timezone

from access import devices
from registrations.models import SyncRun
from registrations.sync import run_sync
from verifik_admin import health as health_view
from verifik_admin.embedded import EmbeddedValkey

from .support import password_only_login, side_connection, staff, totp_code, wait_until

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {"database", "broker", "workers", "beat", "full_sync", "freshness"}
HEALTH_TOKEN = "health-token-for-the-tests-0b7e"
FRESH = {"Authorization": f"Bearer {HEALTH_TOKEN}"}
NOT_CHECKED_YET = {"status": "failing", "checks": dict.fromkeys(CHECKS, "Unavailable: not checked yet")}

pytestmark = pytest.mark.django_db(transaction=True)  # the checks run in threads of their own


def refreshing():
    return any(thread.name == "health-refresh" for thread in threading.enumerate())


@pytest.fixture(autouse=True)
def empty_health_caches(settings):
    """Each test starts without a stored report, and ends with no refresh of this process still running."""
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    forget_stored_reports()
    yield
    wait_until(lambda: not refreshing(), 30, "the background refresh to end")
    forget_stored_reports()


def forget_stored_reports():
    for alias in ("health", "health-local"):
        caches[alias].clear()
    health_view._read["entry"] = None  # this process's copy of the shared one


def database_url():
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def valkey(tmp_path):
    """A broker of this test's own, which it can stop and start again on the same port."""
    server = EmbeddedValkey(tmp_path / "valkey").start()
    yield server
    server.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def spawn(valkey, tmp_path):
    """Start a process of the project against the test database and this test's broker; killed at the end."""
    started = []

    def start(*command, ready, **extra_env):
        log = tmp_path / f"process-{len(started)}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "verifik_admin.test_settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": valkey.url(0),
            "HEALTH_TOKEN": HEALTH_TOKEN,
            **extra_env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log_path = log
        started.append(process)
        wait_until(lambda: ready(log.read_text()) or process.poll() is not None, 60, f"{command[:3]}")
        assert process.poll() is None, log.read_text()
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def start_web(spawn, workers=1, **extra_env):
    """gunicorn serving the project, as in production; `web.get(path, headers)`."""
    port = free_port()
    command = ["gunicorn", "verifik_admin.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    process = spawn(*command, ready=lambda log: log.count("Booting worker") >= workers, **extra_env)

    class Web:
        def get(self, path, headers=None):
            return requests.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=30)

    web = Web()
    web.log_path = process.log_path
    wait_until(lambda: web.get("/health/").status_code in (200, 503), 30, "gunicorn to answer")
    return web


@pytest.fixture
def web(spawn):
    return start_web(spawn)


def health(client, fresh=True):
    """(status, body) of /health/: the checks run now (HEALTH_TOKEN), or with fresh=False the stored report."""
    response = client.get("/health/", headers=FRESH if fresh else {})
    body = response.json()
    assert set(body["checks"]) == CHECKS, body
    return response.status_code, body


def failing(body):
    return {name for name, outcome in body["checks"].items() if outcome != "OK"}


def test_health_answers_200_only_when_every_check_passes_and_names_the_broker_when_it_stops(
    web, spawn, verifik, valkey, tmp_path
):
    status, body = health(web)
    assert status == 503 and body["status"] == "failing"
    assert failing(body) == {"workers", "beat", "full_sync", "freshness"}, body
    assert body["checks"]["full_sync"] == "Unavailable: no full sync has succeeded yet"

    worker = ["celery", "-A", "verifik_admin", "worker", "--concurrency=1", "-n", f"h-{uuid.uuid4().hex[:8]}@%h"]
    spawn(*worker, ready=lambda log: " ready." in log)
    beat = ["celery", "-A", "verifik_admin", "beat", "--schedule", str(tmp_path / "beat-schedule")]
    spawn(*beat, ready=lambda log: "beat pidbox: Connected" in log)
    verifik(count=5)
    run_sync(details=False)
    run_sync(statuses=["STARTED"], details=False)
    all_ok = (200, {"status": "ok", "checks": dict.fromkeys(CHECKS, "OK")})
    wait_until(lambda: health(web) == all_ok, 60, lambda: f"200: {health(web)}")

    valkey.stop()
    status, body = health(web)
    assert status == 503 and "broker" in failing(body), body
    assert body["checks"]["database"] == body["checks"]["full_sync"] == "OK"

    # Anonymous callers: the stored report lived in that Redis; each process now keeps its own, and says so.
    wait_until(lambda: health(web, fresh=False)[1] != NOT_CHECKED_YET, 30, "this process's own report")
    status, body = health(web, fresh=False)
    assert status == 503 and "broker" in failing(body) and body["checks"]["database"] == "OK", body

    valkey.start()  # same port: the worker and beat reconnect by themselves
    wait_until(lambda: health(web) == all_ok, 60, lambda: f"200 again: {health(web)}")


def test_a_full_sync_older_than_two_intervals_fails_the_check(client, settings, admin_client):
    settings.CELERY_BROKER_URL = ""  # no broker: those checks fail too, with a reason, quickly
    settings.HEALTH_FULL_SYNC_MAX_AGE = timedelta(hours=48)
    finished = timezone.now() - timedelta(hours=49)
    SyncRun.objects.create(kind="full", trigger="schedule", outcome="succeeded", finished_at=finished)
    status, body = health(client)
    assert status == 503
    assert body["checks"]["full_sync"] == "Unavailable: the last successful full sync is 49 h old (limit 48 h)"
    assert body["checks"]["broker"] == body["checks"]["workers"] == "Unavailable: CELERY_BROKER_URL is not set"
    assert body["checks"]["database"] == "OK"

    page = admin_client.get("/admin/").content.decode()
    assert "Service health" in page and "49 h old (limit 48 h)" in page and page.count('alt="failing"') == 5

    SyncRun.objects.create(kind="full", trigger="schedule", outcome="succeeded", finished_at=timezone.now())
    assert health(client)[1]["checks"]["full_sync"] == "OK"


def test_health_needs_no_login_and_the_admin_index_does(client):
    assert client.get("/health/").status_code in (200, 503)
    assert client.get("/admin/").status_code == 302


# --- What anonymous callers get: the stored report -------------------------------------------


def stored_at():
    entry = caches["health"].get(health_view.REPORT_KEY)
    return entry and entry["at"]


@pytest.mark.timeout(60)  # a request that waited for the checks would wait for the lock: a hang is a failure
def test_an_anonymous_request_never_waits_for_the_checks(client, settings):
    settings.CELERY_BROKER_URL = ""  # the broker checks fail at once; the database ones are held below
    with side_connection() as side:
        side.execute("LOCK TABLE registrations_syncrun IN ACCESS EXCLUSIVE MODE")  # full_sync blocks on it
        response = client.get("/health/")
        assert (response.status_code, response.json()) == (503, NOT_CHECKED_YET)
        assert "X-Health-Checked-At" not in response
        assert refreshing() and stored_at() is None  # the refresh is running, blocked, and was not waited for
        assert client.get("/health/").json() == NOT_CHECKED_YET  # nor is it started twice
        side.rollback()
    wait_until(stored_at, 30, "the background refresh to store its report")
    response = client.get("/health/")
    assert response.status_code == 503 and response["X-Health-Checked-At"]
    assert response.json()["checks"]["full_sync"] == "Unavailable: no full sync has succeeded yet"
    assert "Cache-Control" in response and "no-cache" in response["Cache-Control"]


def test_the_stored_report_is_refreshed_once_it_is_older_than_the_window(client, settings):
    settings.CELERY_BROKER_URL = ""
    settings.HEALTH_CACHE_SECONDS = 3600
    client.get("/health/")
    wait_until(stored_at, 30, "the first report")
    first = stored_at()
    SyncRun.objects.create(kind="full", trigger="schedule", outcome="succeeded", finished_at=timezone.now())
    for _ in range(5):  # within the window: the same report, no refresh
        assert client.get("/health/").json()["checks"]["full_sync"] == "Unavailable: no full sync has succeeded yet"
        assert not refreshing() and stored_at() == first
    assert health(client)[1]["checks"]["full_sync"] == "OK"  # the fresh report sees it at once

    entry = caches["health"].get(health_view.REPORT_KEY)
    caches["health"].set(health_view.REPORT_KEY, {**entry, "at": entry["at"] - 3600})  # the window has passed
    health_view._read["entry"] = None  # as in another process, whose copy came from the shared cache
    stale = client.get("/health/")
    assert stale.json()["checks"]["full_sync"] == "Unavailable: no full sync has succeeded yet"  # served, not waited
    wait_until(lambda: stored_at() > first, 30, "the refresh")
    assert client.get("/health/").json()["checks"]["full_sync"] == "OK"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-token",
        f"Bearer {HEALTH_TOKEN[:-1]}",
        f"Bearer {HEALTH_TOKEN}x",
        f"Basic {HEALTH_TOKEN}",
        HEALTH_TOKEN,
        "Bearer ",
    ],
)
def test_only_the_exact_token_or_a_verified_staff_session_runs_the_checks(client, settings, authorization):
    settings.CELERY_BROKER_URL = ""
    client.get("/health/")
    wait_until(stored_at, 30, "the first report")
    SyncRun.objects.create(kind="full", trigger="schedule", outcome="succeeded", finished_at=timezone.now())
    old = "Unavailable: no full sync has succeeded yet"

    def full_sync(**headers):
        return client.get("/health/", headers=headers).json()["checks"]["full_sync"]

    assert full_sync(Authorization=authorization) == old
    assert full_sync(Authorization=f"Bearer {HEALTH_TOKEN}") == "OK"
    settings.HEALTH_TOKEN = ""
    assert full_sync(Authorization="Bearer ") == old  # no token configured: nothing matches
    assert full_sync(Authorization=f"Bearer {HEALTH_TOKEN}") == old

    user = staff("hilda")
    password_only_login(client, user)  # a staff session, but not past the second factor (DJANGO_REQUIRE_2FA)
    assert full_sync() == old
    client.logout()
    device = devices.enrol_confirmed(user)
    login = {"username": "hilda", "password": "pw", "otp_token": totp_code(device), "next": "/admin/"}
    assert client.post("/admin/login/", login).status_code == 302
    assert full_sync() == "OK"

    client.logout()
    client.force_login(staff("norman"))
    staff_user = type(user).objects.get(username="norman")
    staff_user.is_staff = False
    staff_user.save()
    settings.DJANGO_REQUIRE_2FA = False
    assert full_sync() == old  # a session, not staff


def test_every_gunicorn_worker_serves_one_shared_report(spawn):
    web = start_web(spawn, workers=3, HEALTH_CACHE_SECONDS="3600")

    def anonymous(_):
        response = web.get("/health/")
        return response.status_code, response.json(), response.headers.get("X-Health-Checked-At")

    wait_until(lambda: anonymous(0)[2], 30, "the first stored report")
    with ThreadPoolExecutor(12) as pool:
        answers = set((status, repr(body), checked_at) for status, body, checked_at in pool.map(anonymous, range(60)))
    assert len(answers) == 1, answers  # whichever process answered
    log = web.log_path.read_text()
    assert log.count("health checks run for the stored report") == 1, log[-3000:]


def test_the_anonymous_answer_still_checks_the_host(client):
    assert client.get("/health/", headers={"Host": "attacker.example"}).status_code == 400
    assert client.head("/health/").status_code == 503  # nothing stored yet: "not checked yet"
