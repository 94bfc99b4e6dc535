"""Scenarios 5 and 8 helpers: real Celery workers (detail fetches; a full sync split across workers), real Redis."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import redis

from registrations import sync, tasks
from registrations.models import AppRegistration, SyncRun

from .harness import ROOT, TOKEN, MachineCPU

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")


@contextmanager
def sending_to_workers(app):
    """This process sends `app`'s tasks to the benchmark's broker (not eagerly) once a worker answers there."""
    saved = {"broker_url": app.conf.broker_url, "task_always_eager": app.conf.task_always_eager}
    app.close()
    app.conf.update(broker_url=BROKER, task_always_eager=False)
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not start")
        yield
    finally:
        app.close()
        app.conf.update(saved)


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
    try:
        with sending_to_workers(tasks.fetch_registration_details.app):
            sync.run_sync(details=False)
            start = time.perf_counter()
            run = sync.run_sync(details=True, on_details=tasks._fan_out_details)
            while AppRegistration.objects.filter(details_pending=True).exists():
                time.sleep(0.05)
            assert run.details_queued > 0
            return time.perf_counter() - start
    finally:
        stop_worker(worker)


def full_sync_seconds(simulator, concurrency, partition_pages):
    """Seconds for `concurrency` worker processes to finish one full sync task (details off), queue to close.

    Returns (seconds, partitions, the machine's MachineCPU over that time).

    `partition_pages` 0 is the sequential walk; otherwise the full sync splits into
    partitions of that many pages, which the processes walk side by side.
    """
    redis.Redis.from_url(BROKER).flushdb()
    env = {
        **os.environ,
        "CELERY_BROKER_URL": BROKER,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "VERIFIK_API_BASE_URL": simulator.url,
        "VERIFIK_API_TOKEN": TOKEN,
        "VERIFIK_PAGE_SIZE": "100",
        "VERIFIK_SYNC_DETAILS": "false",
        "VERIFIK_SYNC_PARTITION_PAGES": str(partition_pages),
    }
    command = [sys.executable, "-m", "celery", "-A", "verifik_admin", "worker", "--pool=prefork"]
    command += [f"--concurrency={concurrency}", "--loglevel=WARNING", "--without-gossip", "--without-mingle"]
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        with sending_to_workers(tasks.sync_registrations.app):
            last = SyncRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            with MachineCPU() as cpu:
                start = time.perf_counter()
                tasks.sync_registrations.delay(trigger=SyncRun.Trigger.COMMAND)
                while True:
                    run = SyncRun.objects.filter(pk__gt=last, kind=SyncRun.Kind.FULL).exclude(outcome="running").first()
                    if run is not None:
                        break
                    time.sleep(0.05)
                seconds = time.perf_counter() - start
            assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
            return seconds, run.partitions, cpu
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
