"""GET /health/ and the admin index's service health, against a real broker, worker and beat."""

import os
import signal
import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.db import connection
from django.utils import timezone

from registrations.models import SyncRun
from registrations.sync import run_sync
from verifik_admin.embedded import EmbeddedValkey

from .support import wait_until

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {"database", "broker", "workers", "beat", "full_sync", "freshness"}

pytestmark = pytest.mark.django_db(transaction=True)  # the checks run in threads of their own


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

    def start(*command, ready):
        log = tmp_path / f"process-{len(started)}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "verifik_admin.test_settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": valkey.url(0),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        wait_until(lambda: ready(log.read_text()) or process.poll() is not None, 60, f"{command[:3]}")
        assert process.poll() is None, log.read_text()
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def web(spawn):
    """gunicorn serving the project, as in production; `web.get(path)`."""
    port = free_port()
    spawn("gunicorn", "verifik_admin.wsgi", "--bind", f"127.0.0.1:{port}", ready=lambda log: "Booting worker" in log)

    class Web:
        def get(self, path):
            return requests.get(f"http://127.0.0.1:{port}{path}", timeout=30)

    wait_until(lambda: Web().get("/health/").status_code in (200, 503), 30, "gunicorn to answer")
    return Web()


def health(client):
    response = client.get("/health/")
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
