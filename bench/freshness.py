"""Scenario 15: how stale the active statuses get, on real workers and a real beat, with and without faults.

An in-process simulator serves a small account whose full walk is slow (each page of a status partition waits,
standing for an account far larger than its active set) while the active lane's listing answers at once.
Beat queues an active sync every VERIFIK_ACTIVE_SYNC_MINUTES and the reaper every VERIFIK_REAPER_SECONDS; a
split full sync runs meanwhile. Every few seconds one registration changes upstream into an active status;
the lag is the time from that change until the mirror holds its new `version`.
"""

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis
from celery import Celery

from registrations import mapping
from registrations.models import AppRegistration, SyncRun
from registrations.simulator import Faults, SimulatedVerifik, SimulatorServer
from registrations.sync import run_sync

from .harness import ROOT, TOKEN, pointed_at, truncate_mirror
from .workers import BROKER, start_worker

ACTIVE_MINUTES = 0.25  # an active sync every 15 s
REAPER_SECONDS = 5
LEASE_SECONDS = 20
PAGE_SIZE = 50
PARTITION_PAGES = 3
CONCURRENCY = 2
ACTIVE = list(mapping.ACTIVE_STATUSES)
ENV = {
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "VERIFIK_ACTIVE_SYNC_MINUTES": str(ACTIVE_MINUTES),
    "VERIFIK_FULL_SYNC_HOURS": "1000",  # the scenario starts the full sync itself
    "VERIFIK_REAPER_SECONDS": str(REAPER_SECONDS),
    "VERIFIK_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
    "VERIFIK_PAGE_SIZE": str(PAGE_SIZE),
    "VERIFIK_SYNC_PARTITION_PAGES": str(PARTITION_PAGES),
    "VERIFIK_SYNC_DETAILS": "false",
}
FAULTS = ["none", "worker killed", "broker flushed"]


class SlowFullWalk(SimulatedVerifik):
    """Pages of one status (the full sync's partitions) wait `full_page_seconds`; the active lane's do not."""

    full_page_seconds = 0.0

    def _list(self, params, populates, short=False):
        if "in_status" not in params and params.get("limit", ["10"])[0] != "1":  # not the active lane, not a probe
            time.sleep(self.full_page_seconds)
        return super()._list(params, populates, short=short)


class QuietServer(SimulatorServer):
    """A killed worker's half-read answers end in broken pipes: expected here, not worth a traceback."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Changes(threading.Thread):
    """Every `every` seconds, one registration not in an active status moves into one upstream."""

    def __init__(self, account, every, ids):
        super().__init__(daemon=True)
        self.account, self.every, self.ids = account, every, iter(ids)
        self.stop, self.made = threading.Event(), []  # (verifik_id, __v, when)

    def run(self):
        n = 0
        while not self.stop.wait(self.every):
            verifik_id = next(self.ids)
            record = self.account.update(verifik_id, status=ACTIVE[n % len(ACTIVE)], notes=f"freshness change {n}")
            self.made.append((verifik_id, record["__v"], time.time()))
            n += 1


def _start_beat(server, schedule):
    env = {**os.environ, "CELERY_BROKER_URL": BROKER, "VERIFIK_API_BASE_URL": server.url, "VERIFIK_API_TOKEN": TOKEN}
    env.update(ENV)
    command = [sys.executable, "-m", "celery", "-A", "verifik_admin", "beat", "--schedule", schedule]
    command += ["--loglevel=WARNING"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _end(process, sig=signal.SIGTERM):
    try:
        os.killpg(process.pid, sig)
        process.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _within(condition, seconds, interval=0.2):
    """Poll `condition` for at most `seconds`: whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _partition_past_its_first_page():
    for child in SyncRun.objects.filter(kind="partition", outcome="running", committed_page__isnull=False):
        if child.committed_page > child.partition["first"]:
            return True
    return False


def _partitions_queued():
    running = SyncRun.objects.filter(kind="partition", outcome="running")
    return running.filter(heartbeat_at__isnull=False).exists() and running.filter(heartbeat_at__isnull=True).count() > 3


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def one_case(server, fault, seconds, every, ids, fault_after):
    """Workers and beat for `seconds` of changes; the fault `fault_after` s in, once the full sync is under way."""
    account = server.account
    redis.Redis.from_url(BROKER).flushdb()
    since = SyncRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    workers = [start_worker(server, CONCURRENCY, **ENV)]
    sender = Celery("bench-sender", broker=BROKER, set_as_current=False)
    schedule = tempfile.mkdtemp(prefix="freshness-beat-")
    beat = None
    changes = Changes(account, every, ids)
    lags, fault_at = {}, None
    try:
        if not _within(lambda: sender.control.ping(timeout=0.5), 90):
            raise RuntimeError("the worker did not start")
        beat = _start_beat(server, os.path.join(schedule, "beat"))
        sender.send_task("registrations.tasks.sync_registrations", kwargs={"trigger": "command"})
        started = time.time()
        changes.start()

        def observe():
            pending = {(i, v): t for i, v, t in list(changes.made) if (i, v) not in lags}
            if pending:
                now = time.time()
                stored = dict(
                    AppRegistration.objects.filter(verifik_id__in={i for i, _ in pending}).values_list(
                        "verifik_id", "version"
                    )
                )
                for (verifik_id, version), when in pending.items():
                    if (stored.get(verifik_id) or 0) >= version:
                        lags[(verifik_id, version)] = now - when

        while time.time() - started < seconds:
            observe()
            if fault_at is None and fault != "none" and time.time() - started >= fault_after:
                if fault == "worker killed" and _partition_past_its_first_page():
                    _end(workers[0], signal.SIGKILL)  # its whole process group: nothing of it runs after
                    fault_at = time.time()
                    workers.append(start_worker(server, CONCURRENCY, **ENV))  # what a supervisor does
                elif fault == "broker flushed" and _partitions_queued():
                    redis.Redis.from_url(BROKER).flushdb()  # the broker comes back empty
                    fault_at = time.time()
            time.sleep(0.2)
        changes.stop.set()
        changes.join(10)
        drain = 2 * ACTIVE_MINUTES * 60 + 30
        _within(lambda: observe() or len(lags) == len(changes.made), drain)  # a change never seen fails the goal
        family = SyncRun.objects.filter(pk__gt=since, kind="full").order_by("pk").first()
        if family is None:
            raise RuntimeError("the full sync never started")
        _within(lambda: SyncRun.objects.get(pk=family.pk).outcome != "running", 180)  # else reported running
        cutoff = SyncRun.objects.order_by("-pk").values_list("pk", flat=True).first()
        left = SyncRun.objects.filter(pk__gt=since, pk__lte=cutoff, outcome="running")
        # An active sync beat queued a moment ago may still be walking; a dead one has a lease and a reaper pass.
        _within(lambda: not left.exists(), LEASE_SECONDS + 2 * REAPER_SECONDS, 0.5)
        still_running = list(left.values_list("kind", flat=True))
    finally:
        changes.stop.set()
        if beat is not None:
            _end(beat, signal.SIGKILL)
        for worker in workers:
            if worker.poll() is None:
                _end(worker)
        sender.close()
    family.refresh_from_db()
    runs = SyncRun.objects.filter(pk__gt=since)
    active = runs.filter(kind="active")
    walks = [(r.finished_at - r.started_at).total_seconds() for r in active.filter(outcome="succeeded")]
    partitions = runs.filter(kind="partition")
    values = list(lags.values()) or [float("nan")]
    active_walk = statistics.median(walks) if walks else float("nan")
    goal = 2 * ACTIVE_MINUTES * 60 + active_walk
    ended_at = family.finished_at.timestamp() if family.finished_at else None
    return {
        "fault": fault,
        "changes": len(changes.made),
        "seen": len(values),
        "p50": statistics.median(values),
        "p99": _percentile(values, 0.99),
        "max": max(values),
        "active_walk_median": active_walk,
        "active_walk_max": max(walks) if walks else float("nan"),
        "active_runs": {o: active.filter(outcome=o).count() for o in ("succeeded", "skipped", "failed", "running")},
        "goal": goal,
        "met": len(values) == len(changes.made) and max(values) <= goal,
        "full_outcome": family.outcome,
        "full_seconds": (ended_at - family.started_at.timestamp()) if ended_at else None,
        "full_ended_after_fault": (ended_at - fault_at) if ended_at and fault_at else None,
        "fault_at": (fault_at - started) if fault_at else None,
        "partitions": partitions.filter(partition__replaces__isnull=True).count(),
        "partitions_walked_again": partitions.filter(partition__replaces__isnull=False).count(),
        "partitions_resent": sum(1 for p in partitions.values_list("partition", flat=True) if p.get("resent")),
        "left_running": still_running,
    }


def freshness(count, seconds, every, cases, full_page_seconds=1.0, fault_after=15):
    """Each case in `cases` on the same account: a cold sync first, then workers, beat, changes, the fault."""
    account = SlowFullWalk(count=count, token=TOKEN, cache_json=True, faults=Faults(latency=0.005))
    server = QuietServer(account).start()
    try:
        truncate_mirror()
        with pointed_at(server):
            run_sync(details=False)  # the mirror starts complete: the scenario measures staying fresh
        account.full_page_seconds = full_page_seconds
        inactive = [r["_id"] for r in account.records if r["status"] not in ACTIVE]
        random.Random(15).shuffle(inactive)
        per_case = int(seconds / every) + 5
        results = []
        for n, fault in enumerate(cases):
            ids = inactive[n * per_case : (n + 1) * per_case]
            results.append(one_case(server, fault, seconds, every, ids, fault_after))
        return {
            "count": count,
            "active": sum(r["status"] in ACTIVE for r in account.records),
            "page_size": PAGE_SIZE,
            "partition_pages": PARTITION_PAGES,
            "full_page_seconds": full_page_seconds,
            "active_interval_s": ACTIVE_MINUTES * 60,
            "reaper_s": REAPER_SECONDS,
            "lease_s": LEASE_SECONDS,
            "concurrency": CONCURRENCY,
            "every": every,
            "seconds": seconds,
            "cases": results,
        }
    finally:
        server.stop()
