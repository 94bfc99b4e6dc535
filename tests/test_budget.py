"""One API budget per Verifik account: a token bucket in Redis shared by every process, with AIMD on 429s."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import connection

from registrations import budget
from registrations.models import SyncRun
from registrations.simulator import Faults
from registrations.sync import refresh, run_sync, runs
from registrations.verifik import VerifikClient

from .conftest import TOKEN
from .support import database_url, wait_until
from .test_tasks import broker, send, workers  # noqa: F401 (fixtures: real Redis broker, real worker processes)

BROKER_URL = os.environ.get("CELERY_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent


def most_in_one_second(times):
    """The most timestamps in any one-second window (sliding over the timestamps themselves)."""
    times = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.fixture(params=["redis", "local"])
def fresh_budget(request):
    """A new account's budget, shared in the real Redis or kept in this process: `fresh_budget(rate)`."""

    def make(rate, **kwargs):
        url = BROKER_URL if request.param == "redis" else ""
        return budget.Budget(f"verifik-budget:test:{uuid.uuid4().hex}", rate, redis_url=url, **kwargs)

    return make


def take(b, priority=budget.SYNC, waiter="w"):
    return b._call("take", priority, waiter)


def test_threads_taking_tokens_for_two_seconds_never_exceed_the_rate(fresh_budget):
    b = fresh_budget(40)
    granted, lock, stop = [], threading.Lock(), time.monotonic() + 2.0

    def hammer():
        while True:
            b.acquire()
            now = time.monotonic()
            if now >= stop:
                return
            with lock:
                granted.append(now)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 40 <= len(granted) <= 40 * 2 + budget.BURST
    assert most_in_one_second(granted) <= 40 + budget.BURST


def test_a_429_halves_the_shared_rate_once_and_it_recovers(fresh_budget):
    b = fresh_budget(20)
    assert take(b)[2] == pytest.approx(20)
    b.throttled(retry_after=0)
    b.throttled(retry_after=0)  # refused together with the first: one cut
    _, _, rate, _ = take(b)
    assert 10 <= rate < 11
    # Everyone else sharing the account sees the same cut.
    other = budget.Budget(b.key, 20, redis_url=b.redis_url)
    assert take(other)[2] < 11
    wait_until(lambda: take(b)[2] >= 11.5, 10, "the rate to climb back")


def test_the_rate_climbs_back_by_a_twentieth_a_second_and_stops_at_the_setting(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(budget.time, "monotonic", lambda: clock[0])
    b = budget.Budget("verifik-budget:test:clock", 20)
    b.throttled(retry_after=0)
    assert take(b)[2] == pytest.approx(10)
    clock[0] += 0.5
    b.throttled(retry_after=0)  # within the cool-down: no second cut
    clock[0] += 0.5
    assert take(b)[2] == pytest.approx(11)
    clock[0] += 1.0
    b.throttled(retry_after=0)
    assert take(b)[2] == pytest.approx(6)
    clock[0] += 60
    assert take(b)[2] == pytest.approx(20)
    for _ in range(12):
        clock[0] += budget.CUT_COOLDOWN
        b.throttled(retry_after=0)
    # A 429 every second holds the rate where halving meets a second's recovery (1/s), above the floor.
    assert 20 * budget.FLOOR <= take(b)[2] <= 1.1


def test_a_retry_after_pauses_every_caller(fresh_budget):
    b = fresh_budget(100, retry_after_cap=5)
    b.throttled(retry_after=3)
    granted, wait, _, _ = take(b)
    assert not granted and 2.5 < wait <= 3
    capped = fresh_budget(100, retry_after_cap=0.5)
    capped.throttled(retry_after=3600)
    assert take(capped)[1] <= 0.5


def test_a_waiting_refresh_goes_before_syncs(fresh_budget):
    b = fresh_budget(5)
    while take(b)[0]:
        pass  # drain the bucket
    assert not take(b, budget.REFRESH, "refresh-1")[0]  # it waits, and says so
    syncs_granted = []

    def refresh_turn():
        syncs_granted.append(take(b, budget.SYNC, "sync-1")[0])
        return take(b, budget.REFRESH, "refresh-1")[0]

    wait_until(refresh_turn, 5, "the refresh's token", interval=0.02)
    assert syncs_granted and not any(syncs_granted)
    wait_until(lambda: take(b, budget.SYNC, "sync-1")[0], 5, "the sync's turn once the refresh is served")


@pytest.mark.parametrize("ahead", [budget.ACTIVE, budget.REFRESH])
def test_the_active_lane_and_refreshes_go_before_the_full_lane(fresh_budget, ahead):
    """A full-lane request (budget.SYNC) takes no token while an active sync or a refresh waits for one."""
    b = fresh_budget(5)
    while take(b)[0]:
        pass
    assert not take(b, ahead, "ahead-1")[0]
    full_granted = []

    def ahead_turn():
        full_granted.append(take(b, budget.SYNC, "full-1")[0])
        return take(b, ahead, "ahead-1")[0]

    wait_until(ahead_turn, 5, "the waiting request's token", interval=0.02)
    assert full_granted and not any(full_granted)
    # Between themselves the two that go first do not wait on each other's waiters.
    other = budget.REFRESH if ahead == budget.ACTIVE else budget.ACTIVE
    assert not take(b, ahead, "ahead-2")[0]
    wait_until(lambda: take(b, other, "other-1")[0], 5, "the other first-tier request's token", interval=0.02)


def test_the_active_lane_draws_at_its_priority():
    from registrations.sync.listing import lane_priority

    assert (lane_priority(["STARTED"]), lane_priority([])) == (budget.ACTIVE, budget.SYNC)


def test_a_wait_past_the_deadline_fails_at_once_naming_the_bound(fresh_budget):
    b = fresh_budget(0.2)
    b.acquire()
    started = time.monotonic()
    with pytest.raises(budget.BudgetExhausted, match=r"VERIFIK_TASK_TIME_LIMIT \(1 s\)") as error:
        b.acquire(deadline=runs.Deadline(1, "VERIFIK_TASK_TIME_LIMIT"))
    assert error.value.retryable and time.monotonic() - started < 1


def test_when_redis_fails_the_budget_paces_this_process_and_says_where_without_the_password(caplog, monkeypatch):
    monkeypatch.setattr(budget, "_redis_down_until", {})
    b = budget.Budget("verifik-budget:test:down", 1000, redis_url="redis://:hunter2@127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="registrations.budget"):
        b.acquire()
        b.acquire()
    assert not b.shared
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "127.0.0.1:1" in warnings[0] and "hunter2" not in warnings[0]


def test_the_key_names_the_account_but_never_the_token():
    key = budget.account_key("https://api.verifik.co/", "s3cr3t-token")
    assert key.startswith("verifik-budget:https://api.verifik.co:") and "s3cr3t" not in key
    assert key != budget.account_key("https://api.verifik.co", "another-token")
    stored = redis.Redis.from_url(BROKER_URL)
    b = budget.Budget(key, 10, redis_url=BROKER_URL)
    b.acquire()
    assert stored.ttl(key) > 0 and all(b"s3cr3t" not in k for k in stored.keys("verifik-budget:*"))


class Recording:
    """A budget that records what the client tells it."""

    def __init__(self):
        self.calls = []

    def before_request(self):
        self.calls.append("request")

    def rate_limited(self, retry_after):
        self.calls.append(("429", retry_after))


def test_the_client_asks_the_budget_before_every_attempt_and_reports_every_429(verifik):
    account = verifik(count=3, faults=Faults(rate_limit_every=2, retry_after=7))
    recording = Recording()
    client = VerifikClient(account.url, TOKEN, backoff=0.001, retry_after_cap=0.01, budget=recording)
    client.list_page(1, limit=10)  # request 1: 200
    client.get(account.records[0]["_id"])  # request 2: 429, request 3: 200
    assert recording.calls == ["request", "request", ("429", 7.0), "request"]
    assert account.request_count == 3


@pytest.mark.django_db(transaction=True)
def test_every_call_path_draws_on_the_budget(verifik, settings):
    """Listing pages, detail fetches and refreshes, inline in this process: evenly spaced at VERIFIK_API_RATE."""
    account = verifik(count=25)
    settings.VERIFIK_API_RATE = 20
    run = run_sync(details=True)
    refresh(account.records[0]["_id"])
    assert run.details_fetched == 25 and SyncRun.objects.count() == 2
    log = account.request_log
    assert len(log) >= 25 + 3 + 1
    assert most_in_one_second(log) <= 20 + budget.BURST
    assert log[-1] - log[0] >= (len(log) - 1 - budget.BURST) / 20


@pytest.mark.django_db(transaction=True)
def test_a_429_through_the_client_cuts_the_accounts_shared_rate(verifik, settings):
    account = verifik(count=5, faults=Faults(rate_limit_every=2, retry_after=0))
    settings.VERIFIK_API_RATE = 50
    settings.VERIFIK_BUDGET_REDIS_URL = BROKER_URL
    client = runs.build_client()
    client.get(account.records[0]["_id"])  # request 1: 200
    client.get(account.records[1]["_id"])  # request 2: 429, then 200
    assert len(account.rate_limited_log) == 1
    assert runs.account_budget().shared
    assert take(runs.account_budget())[2] < 26


def test_the_deprecated_detail_rate_sets_the_account_wide_rate_with_a_warning():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERIFIK_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="verifik_admin.settings",  # production settings: no test defaults
        DJANGO_SECRET_KEY="test-only",
        CELERY_TASK_ALWAYS_EAGER="true",
        VERIFIK_DETAIL_RATE="600/m",
    )
    checked = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert "registrations.W001" in checked.stderr and "(now 10 requests/s)" in checked.stderr, checked.stderr
    refused = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "VERIFIK_API_RATE": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "VERIFIK_API_RATE must be above 0" in refused.stderr


def requests_per_second(log, start, end):
    return sum(start <= t < end for t in log) / (end - start)


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery_worker
def test_two_workers_and_a_refreshing_process_share_one_budget_and_back_off_together(verifik, broker, workers):  # noqa: F811
    """The contract: at VERIFIK_API_RATE=20, Verifik never sees more than 22 requests in any one second from two
    worker processes (a full sync and its detail fan-out) and a third process refreshing; 429s slow all of them."""
    account = verifik(count=600, faults=Faults(latency=0.002, retry_after=1))
    setup = {"VERIFIK_API_RATE": "20", "VERIFIK_PAGE_SIZE": "100", "VERIFIK_RETRY_AFTER_CAP": "1"}
    started = [workers(account, concurrency=2, **setup) for _ in range(2)]

    def logs():
        return "\n".join(worker.log.read_text()[-2000:] for worker in started)

    account.reset_stats()
    send(broker, "sync_registrations", trigger="user")
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "VERIFIK_API_BASE_URL": account.url,
        "VERIFIK_API_TOKEN": TOKEN,
        "VERIFIK_BUDGET_REDIS_URL": BROKER_URL,
        **setup,
    }
    ids = [record["_id"] for record in account.records[:300]]
    refresher = subprocess.Popen(
        [sys.executable, "manage.py", "refresh_registration", *ids],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        log = account.request_log
        fanned_out = SyncRun.objects.filter(kind="full", details_fetched__gt=0)
        wait_until(lambda: fanned_out.exists(), 30, lambda: f"the sync's detail fan-out; workers:\n{logs()}")
        wait_until(lambda: SyncRun.objects.filter(kind="single").exists(), 30, "the refreshing process")
        steady = log[-1]
        wait_until(lambda: log[-1] - steady >= 4, 30, "four seconds of traffic from all three processes")
        account.faults.rate_limit_every = 4
        wait_until(lambda: len(account.rate_limited_log) >= 3, 10, "three 429s")
        account.faults.rate_limit_every = 0
        first, last = account.rate_limited_log[0], account.rate_limited_log[-1]
        wait_until(lambda: log[-1] - last >= 3, 30, "three seconds after the 429s")
    finally:
        os.killpg(refresher.pid, signal.SIGKILL)
        refresher.wait(10)
    before = requests_per_second(log, first - 4, first)
    after = requests_per_second(log, last, last + 3)
    busiest = most_in_one_second(log)
    trace = f"before {before:.1f}/s, after {after:.1f}/s, busiest second {busiest}"
    assert busiest <= 22, trace
    assert before >= 10, f"the three processes should want more than the budget: {trace}"
    assert after < 0.8 * before, trace
    assert SyncRun.objects.filter(kind="single", outcome="succeeded").count() >= 5
    # The backlog drew on the budget too, though refreshes go first and the refresher always waits for one.
    assert SyncRun.objects.get(kind="full").details_fetched >= 5


@pytest.mark.timeout(300)
@pytest.mark.django_db
def test_the_budget_benchmark_runs_and_reports_its_trace(tmp_path):
    """bench/budget.py keeps working (what it measures is in docs/BENCHMARKS.md, never asserted here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VERIFIK_", "DATABASE_URL"))}
    env["BENCH_DATABASE_URL"] = database_url(f"{connection.settings_dict['NAME']}_bench_smoke")
    env["BENCH_BROKER_URL"] = BROKER_URL
    output = tmp_path / "out.json"
    command = [sys.executable, "-m", "bench.run", "--quick", "--only", "budget", "--output", str(output)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trace = json.loads(output.read_text())["budget"]
    assert len(trace["per_second"]) == 10 and sum(trace["per_second"]) == trace["requests"] > 0
    assert len(trace["rate_limited_at"]) == 3 and trace["ceiling"] == 21
    assert "9. API requests per second under the shared budget" in result.stdout
