"""How the processes start: required settings, no broker, `make run` itself, production static files."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import requests
from django.db import connection

from .support import wait_until

ROOT = Path(__file__).resolve().parent.parent


def database_url(name=None):
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{name or s['NAME']}"


def clean_env(**extra):
    """The environment without this project's variables (the test settings put some there)."""
    prefixes = ("DJANGO_", "VERIFIK_", "DATABASE_URL", "CELERY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, "DJANGO_SETTINGS_MODULE": "verifik_admin.settings", **extra}


def run(*command, timeout=60, **env):
    return subprocess.run(command, cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=timeout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production(**extra):
    return {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "runtime-test", **extra}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (production(CELERY_BROKER_URL="redis://127.0.0.1:1/0"), "DATABASE_URL is not set"),
        (production(DATABASE_URL="postgres://u@127.0.0.1:1/x"), "CELERY_BROKER_URL is not set"),
        (production(DATABASE_URL="sqlite:///db.sqlite3", CELERY_BROKER_URL="redis://x/0"), "must point at Postgres"),
    ],
)
def test_production_refuses_to_start_without_what_it_needs(env, named):
    result = run(sys.executable, "-c", "import django; django.setup()", **env)
    assert result.returncode != 0 and named in result.stderr, result.stderr[-2000:]


@pytest.mark.django_db
def test_without_a_broker_commands_work_and_enqueueing_says_what_is_missing():
    env = {"DJANGO_DEBUG": "true", "DATABASE_URL": database_url()}
    check = run(sys.executable, "manage.py", "showmigrations", "registrations", **env)
    assert check.returncode == 0 and "[X] 0001_mirror" in check.stdout, check.stderr
    queued = run(sys.executable, "manage.py", "sync_registrations", "--queue", **env)
    assert queued.returncode != 0
    assert "No Celery broker is configured: set CELERY_BROKER_URL" in queued.stderr and "Traceback" not in queued.stderr
    worker = run(sys.executable, "-m", "celery", "-A", "verifik_admin", "worker", **env)
    assert worker.returncode != 0 and "No Celery broker is configured" in worker.stderr, worker.stderr[-2000:]


def test_make_run_refuses_a_taken_port_in_one_line_and_starts_nothing():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(sys.executable, "-m", "verifik_admin.run_local", "--port", str(port), timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"make run: port {port} (RUN_PORT) is already in use: stop what holds it, or pick another, "
        f"e.g. make run RUN_PORT={port + 1}"
    ]
    assert result.stdout == ""


@pytest.fixture
def scratch_database():
    """A database of its own for a `make run` process, dropped at the end."""
    name = f"{connection.settings_dict['NAME']}_run"
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url(name)
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def full_syncs(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT trigger, outcome FROM registrations_syncrun WHERE kind = 'full' ORDER BY id"
        ).fetchall()


@pytest.mark.timeout(240)
def test_make_run_serves_a_healthy_admin_whose_syncs_workers_run_and_ctrl_c_leaves_nothing(scratch_database, tmp_path):
    """The launcher behind `make run`, on a scratch database (the embedded Valkey is its broker)."""
    web, sim = free_port(), free_port()
    log = tmp_path / "run.log"
    env = clean_env(DJANGO_DEBUG="true", DATABASE_URL=scratch_database)
    command = [sys.executable, "-m", "verifik_admin.run_local", "--port", str(web), "--sim-port", str(sim)]
    command += ["--sim-count", "60", "--data-dir", str(tmp_path / "data")]
    launcher = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    output = lambda: log.read_text()[-4000:]  # noqa: E731
    try:
        wait_until(lambda: "Admin: http" in log.read_text() or launcher.poll() is not None, 120, output)
        assert launcher.poll() is None, output()
        base = f"http://127.0.0.1:{web}"
        health = lambda: requests.get(f"{base}/health/", timeout=10)  # noqa: E731
        wait_until(lambda: health().status_code == 200, 90, lambda: f"{health().text}\n{output()}")
        assert full_syncs(scratch_database) == [("command", "succeeded")]  # queued, and a worker ran it

        browser = requests.Session()
        browser.get(f"{base}/admin/login/", timeout=10)
        token = browser.cookies["csrftoken"]
        login = {"username": "demo", "password": "demo", "csrfmiddlewaretoken": token, "next": "/admin/"}
        assert browser.post(f"{base}/admin/login/", data=login, timeout=10).url == f"{base}/admin/"
        page = browser.post(
            f"{base}/admin/registrations/appregistration/sync/",
            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": f"{base}/admin/"},
            timeout=10,
        )
        assert "Sync queued; a worker will run it shortly." in page.text
        done = [("command", "succeeded"), ("user", "succeeded")]
        wait_until(lambda: full_syncs(scratch_database) == done, 60, lambda: f"{full_syncs(scratch_database)}")
    finally:
        os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        launcher.wait(60)
    # honcho starts each process (and its children: pool workers, the autoreloader's server) in a group of its own
    groups = [launcher.pid] + [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", log.read_text())]
    assert len(groups) == 5, output()  # the launcher, web, worker, beat, simulator
    wait_until(lambda: not any(group_alive(g) for g in groups), 30, "every process to stop")
    broker = int(re.search(r"embedded Valkey on 127.0.0.1:(\d+)", log.read_text())[1])
    assert port_free(web) and port_free(sim) and port_free(broker), output()


@pytest.mark.django_db
@pytest.mark.timeout(240)
def test_gunicorn_serves_compressed_hashed_static_files_after_collectstatic(tmp_path):
    port = free_port()
    env = production(
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",  # the static files need no broker
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
    )
    collected = run(sys.executable, "manage.py", "collectstatic", "--noinput", timeout=180, **env)
    assert collected.returncode == 0, collected.stderr[-2000:]
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())["paths"]
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "verifik_admin.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=clean_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: not port_free(port) or server.poll() is not None, 60, "gunicorn")
        base = f"http://127.0.0.1:{port}/static/"
        plain = requests.get(base + "admin/css/base.css", timeout=10)
        assert plain.status_code == 200 and "text/css" in plain.headers["Content-Type"]
        hashed = requests.get(base + manifest["admin/css/base.css"], headers={"Accept-Encoding": "br"}, timeout=10)
        assert hashed.status_code == 200 and hashed.headers["Content-Encoding"] == "br"
        assert "immutable" in hashed.headers["Cache-Control"]
        assert requests.get(base + "registrations/admin.css", timeout=10).status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
