"""Scenario 5 helper: real Celery workers fetching details, fed by a real Redis broker."""

import os
import signal
import subprocess
import sys
import time

import redis

from registrations import sync, tasks
from registrations.models import AppRegistration

from .harness import ROOT, TOKEN

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")


def start_worker(simulator, concurrency, **extra_env):
    """A real Celery worker process against the bench broker and `simulator`; stop it with stop_worker()."""
    env = {
        **os.environ,
        "CELERY_BROKER_URL": BROKER,
        "VERIFIK_API_BASE_URL": simulator.url,
        "VERIFIK_API_TOKEN": TOKEN,
        **extra_env,
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "verifik_admin",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
    ]
    command += ["--loglevel=WARNING", "--without-gossip", "--without-mingle"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop_worker(worker):
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(30)


def fan_out_rate(simulator, concurrency, api_rate):
    """Seconds for `concurrency` worker processes to fetch the details a cold sync fans out."""
    redis.Redis.from_url(BROKER).flushdb()
    worker = start_worker(simulator, concurrency, VERIFIK_API_RATE=api_rate)
    app = tasks.fetch_registration_details.app
    saved = {"broker_url": app.conf.broker_url, "task_always_eager": app.conf.task_always_eager}
    app.close()
    app.conf.update(broker_url=BROKER, task_always_eager=False)
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not start")
        sync.run_sync(details=False)
        start = time.perf_counter()
        run = sync.run_sync(details=True, on_details=tasks._fan_out_details)
        while AppRegistration.objects.filter(details_pending=True).exists():
            time.sleep(0.05)
        assert run.details_queued > 0
        return time.perf_counter() - start
    finally:
        stop_worker(worker)
        app.close()
        app.conf.update(saved)
