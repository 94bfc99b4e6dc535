"""Log lines an operator can query: JSON (or plain) with run_id, task_id and request_id, and never a secret."""

import copy
import io
import json
import logging
import logging.config
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from registrations.simulator import Faults, SimulatedVerifik, SimulatorServer

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "sentinel-token-4b1d9e"
SECRET = "sentinel-webhook-secret-77c2"

pytestmark = pytest.mark.django_db(transaction=True)  # the subprocesses write to the test database


def database_url():
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def upstream():
    """A simulator that wants the sentinel token and answers the first requests of each kind with faults."""
    account = SimulatedVerifik(count=25, seed=11, token=TOKEN, faults=Faults(fail_first=2, rate_limit_every=6))
    account.faults.retry_after = 0
    server = SimulatorServer(account).start()
    account.url = server.url
    yield account
    server.stop()


def run_logged(upstream, code, log_format="json"):
    """Run `code` after django.setup() in a production-settings process; return its log lines (stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VERIFIK_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="verifik_admin.settings",
        DJANGO_SECRET_KEY="logging-test",
        DJANGO_LOG_FORMAT=log_format,
        DATABASE_URL=database_url(),
        CELERY_TASK_ALWAYS_EAGER="true",  # the task runs in this process, with its task id
        VERIFIK_API_BASE_URL=upstream.url,
        VERIFIK_API_TOKEN=TOKEN,
        VERIFIK_WEBHOOK_SECRET=SECRET,
        VERIFIK_BACKOFF="0.001",
        VERIFIK_PAGE_SIZE="10",
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert TOKEN not in result.stdout + result.stderr and SECRET not in result.stdout + result.stderr
    return result.stderr.splitlines()


def test_every_line_of_a_refresh_task_is_json_with_run_id_and_task_id(upstream):
    verifik_id = upstream.records[4]["_id"]
    lines = run_logged(upstream, f"from registrations import tasks; tasks.refresh_registration.delay({verifik_id!r})")
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    refresh = [r for r in records if r["logger"].startswith("registrations.")]
    assert len(refresh) >= 2, lines  # the faults made the client log its retries
    assert all(r.get("run_id") and r.get("task_id") for r in refresh), refresh
    (done,) = [r for r in records if r["logger"] == "celery.app.trace"]
    assert done["task_id"] == refresh[0]["task_id"], "Celery's own lines of the task carry its id too"


def test_every_line_of_a_sync_is_json_with_its_run_id(upstream):
    upstream.faults.short_page_every = 5
    lines = run_logged(upstream, "from django.core.management import call_command; call_command('sync_registrations')")
    records = [json.loads(line) for line in lines]
    sync = [r for r in records if r["logger"].startswith("registrations.")]
    assert len(sync) >= 3, lines  # retries of the first page, short pages
    run_ids = {r.get("run_id") for r in sync}
    assert len(run_ids) == 1 and None not in run_ids, [r for r in sync if not r.get("run_id")]


def test_plain_lines_name_the_run_and_task_and_hide_the_secrets(upstream):
    verifik_id = upstream.records[2]["_id"]
    code = (
        "import logging; from registrations import tasks\n"
        f"logging.getLogger('probe').warning('token %s in a message', {TOKEN!r})\n"
        f"tasks.refresh_registration.delay({verifik_id!r})"
    )
    lines = run_logged(upstream, code, log_format="plain")
    assert "WARNING probe: token *** in a message" in lines[0]
    retries = [line for line in lines if " registrations.verifik: " in line]
    assert retries and all("run_id=" in line and "task_id=" in line for line in retries), lines


@pytest.fixture
def captured_json_logs(settings):
    """The configured LOGGING, with its console handler writing JSON into a buffer."""
    buffer = io.StringIO()
    config = copy.deepcopy(django_settings.LOGGING)
    config["handlers"]["console"].update(formatter="json", stream=buffer)
    config["formatters"]["json"]["secrets"] = config["filters"]["redact"]["secrets"] = [SECRET, TOKEN]
    logging.config.dictConfig(config)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logging.config.dictConfig(django_settings.LOGGING)


def test_every_request_line_carries_its_request_id_and_no_secret(client, settings, captured_json_logs):
    settings.VERIFIK_WEBHOOK_SECRET = SECRET
    response = client.get("/admin/login/", HTTP_X_REQUEST_ID="lb-1234")
    assert response["X-Request-ID"] == "lb-1234"
    client.post(f"/webhooks/verifik/{SECRET}/", "not json", content_type="application/json")
    missing = client.get("/no/such/page/")
    records = captured_json_logs()
    requests = [r for r in records if r["logger"] == "verifik_admin.requests"]
    assert [r["path"] for r in requests] == ["/admin/login/", "/webhooks/verifik/***/", "/no/such/page/"]
    assert requests[0]["request_id"] == "lb-1234" and requests[0]["status"] == 200
    assert requests[2]["request_id"] == missing["X-Request-ID"] != "lb-1234"
    not_found = [r for r in records if r["logger"] == "django.request"]
    assert not_found and all(r["request_id"] for r in not_found), records  # logged after the middleware returned
    assert SECRET not in json.dumps(records)
    assert all("request" not in r for r in records), "the HttpRequest object is not a log field"
