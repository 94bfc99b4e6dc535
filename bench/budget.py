"""Scenario 9: the API request rate under the shared budget, second by second.

Two real worker processes (a full sync, then its detail fan-out) and a third
process refreshing registrations share VERIFIK_API_RATE through Redis against
the simulator (here, in this process, so its request log can be read). Half-way,
Verifik answers a few requests 429 with `Retry-After: 1`: the whole fleet
pauses, the shared rate halves, then climbs back.
"""

import os
import subprocess
import sys
import time

import redis

from registrations import tasks
from registrations.budget import BURST
from registrations.simulator import Faults, SimulatedVerifik, SimulatorServer

from .harness import ROOT, TOKEN, truncate_mirror
from .workers import BROKER, start_worker, stop_worker

LATENCY = 0.02  # seconds per simulated request
INJECTED_429S = 3
CONCURRENCY = 3  # processes of each worker: together they want more than the budget


def most_in_one_second(times):
    """The most requests in any one-second window, sliding over the request times."""
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def budget_trace(rate=20, seconds=30, count=2000):
    """Requests per second seen by the simulator over `seconds`, with 429s injected at a third of the way."""
    truncate_mirror()
    redis.Redis.from_url(BROKER).flushdb()
    account = SimulatedVerifik(count=count, token=TOKEN, faults=Faults(latency=LATENCY, retry_after=1))
    server = SimulatorServer(account).start()
    setup = {"VERIFIK_API_RATE": str(rate), "VERIFIK_PAGE_SIZE": "100"}
    workers = [start_worker(server, CONCURRENCY, **setup) for _ in range(2)]
    app = tasks.sync_registrations.app
    saved = {"broker_url": app.conf.broker_url, "task_always_eager": app.conf.task_always_eager}
    app.close()
    app.conf.update(broker_url=BROKER, task_always_eager=False)
    refresher = None
    try:
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5)) < len(workers):
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
        account.reset_stats()
        tasks.sync_registrations.delay(trigger="user")
        env = {**os.environ, "VERIFIK_API_BASE_URL": server.url, "VERIFIK_BUDGET_REDIS_URL": BROKER, **setup}
        ids = [record["_id"] for record in account.records[:1000]]
        refresher = subprocess.Popen(
            [sys.executable, "manage.py", "refresh_registration", *ids],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while not account.request_log:
            time.sleep(0.05)
        start = account.request_log[0]
        time.sleep(max(0.0, start + seconds / 3 - time.monotonic()))
        account.faults.rate_limit_every = 5
        while len(account.rate_limited_log) < INJECTED_429S:
            time.sleep(0.01)
        account.faults.rate_limit_every = 0
        time.sleep(max(0.0, start + seconds - time.monotonic()))
    finally:
        if refresher is not None:
            refresher.kill()
            refresher.wait(10)
        for worker in workers:
            stop_worker(worker)
        app.close()
        app.conf.update(saved)
        server.stop()
    log = [t for t in account.request_log if t < start + seconds]
    throttled = [t - start for t in account.rate_limited_log]
    per_second = [0] * seconds
    for moment in log:
        per_second[int(moment - start)] += 1
    first, last = account.rate_limited_log[0], account.rate_limited_log[-1]
    before = sum(first - 5 <= t < first for t in log) / 5
    after = sum(last <= t < last + 3 for t in log) / 3
    return {
        "rate": rate,
        "seconds": seconds,
        "latency": LATENCY,
        "concurrency": CONCURRENCY,
        "requests": len(log),
        "per_second": per_second,
        "rate_limited_at": throttled,
        "busiest_second": most_in_one_second(log),
        "ceiling": rate + BURST,
        "before_429": before,
        "after_429": after,
        "mean": len(log) / seconds,
    }
