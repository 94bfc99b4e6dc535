"""Leases and the reaper: dead holders, lost messages and spent attempts end in minutes, from the database alone.

A dead holder is made the way it happens: the lease lock taken on a connection of
its own which is then closed (what Postgres does for a SIGKILLed worker), or a
connection that keeps the lock but stops beating. Real worker processes are
killed in tests/test_tasks.py.
"""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from registrations.models import AppRegistration, PendingRefresh, SyncRun
from registrations.simulator import Faults
from registrations.sync import build_client, leases, reaper, run_partition, run_sync, seen
from registrations.sync.leases import LEASE_LOCK_CLASS, LeaseLost

from .support import assert_mirrors, sync_lock_is_free

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def split(settings):
    settings.VERIFIK_SYNC_PARTITION_PAGES = 2
    settings.VERIFIK_SYNC_DETAILS = False
    settings.VERIFIK_RUN_LEASE_SECONDS = 3


class Queue:
    """What the reaper hands out, as the Celery tasks would receive it."""

    def __init__(self):
        self.partitions, self.refreshes, self.details = [], [], []

    def reap(self):
        return reaper.reap(
            on_partitions=lambda parent, ids, details: self.partitions.extend(ids),
            on_refresh=lambda pending: self.refreshes.append(pending.verifik_id),
            on_details=self.details.extend,
        )


def family(on_partitions=None):
    queued = []
    parent = run_sync(split=True, details=False, on_partitions=lambda run, ids, details: queued.extend(ids))
    assert parent.outcome == SyncRun.Outcome.RUNNING and len(queued) == parent.partitions > 5
    return parent, queued


def params():
    return connection.get_connection_params()


def died_at_page(partition_id, page):
    """A worker took the partition's lease, committed up to `page`, and died: its connection (and lock) are gone."""
    with psycopg.connect(**params(), autocommit=True) as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(%s, %s)", [LEASE_LOCK_CLASS, partition_id]).fetchone()[0]
        SyncRun.objects.filter(pk=partition_id).update(heartbeat_at=timezone.now(), committed_page=page)
        # What Postgres does when the backend ends; said here, as a backend's exit trails its client's close.
        holder.execute("SELECT pg_advisory_unlock_all()")


def age():
    """A time a lease and a bit in the past."""
    return timezone.now() - timedelta(seconds=10)


class WorkerKilled(BaseException):
    """Not an Exception: nothing in the sync catches it, as nothing runs after a SIGKILL."""


class DiesAtPage:
    """The partition's client; the worker dies when the walk asks for page `page`."""

    def __init__(self, page):
        self.client, self.page = build_client(), page

    def list_page(self, number, limit, statuses=None):
        if number == self.page:
            raise WorkerKilled
        return self.client.list_page(number, limit, statuses=statuses)


def test_a_partition_whose_worker_died_is_walked_again_from_its_last_committed_page(verifik, split, settings):
    settings.VERIFIK_SYNC_PARTITION_PAGES = 4
    account = verifik(count=300, faults=Faults(latency=0.03))  # a write commits while the next page is fetched
    parent, queued = family()
    longest = SyncRun.objects.get(pk=queued[0])  # longest first: four pages
    first = longest.partition["first"]
    for partition_id in queued[1:]:
        run_partition(partition_id, details=False)
    with pytest.raises(WorkerKilled):
        run_partition(longest.pk, details=False, client=DiesAtPage(first + 3))
    longest = longest.pk
    dead = SyncRun.objects.get(pk=longest)
    assert dead.outcome == SyncRun.Outcome.RUNNING and first <= dead.committed_page < first + 3
    queue = Queue()
    report = queue.reap()  # at once: the lock is free, no need to wait for the heartbeat to age
    dead.refresh_from_db()
    assert dead.outcome == SyncRun.Outcome.FAILED and "lease lock was free" in dead.error
    assert report.failed == [longest] and queue.partitions == report.redispatched
    again = SyncRun.objects.get(pk=queue.partitions[0])
    assert again.partition == {**dead.partition, "first": dead.committed_page, "attempt": 2, "replaces": dead.pk}
    assert SyncRun.objects.get(pk=parent.pk).outcome == SyncRun.Outcome.RUNNING
    pages = []
    account.before_list_page = pages.append
    closed = run_partition(again.pk, details=False)
    assert closed.outcome == SyncRun.Outcome.SUCCEEDED, closed.error
    assert (closed.partitions_done, closed.seen) == (closed.partitions, 300)
    assert pages[0] == dead.committed_page  # from its last committed page, not from page 1 (the last is the close)
    assert_mirrors(account)
    assert not SyncRun.objects.filter(outcome=SyncRun.Outcome.RUNNING).exists()


def test_pages_the_dead_attempt_marked_seen_but_never_wrote_are_written_by_the_next(verifik, split):
    """The walk marks a page's ids seen before its write commits: the retry must not skip them as repeats."""
    account = verifik(count=300)
    parent, queued = family()
    for partition_id in queued[1:]:
        run_partition(partition_id, details=False)
    dead = SyncRun.objects.get(pk=queued[0])
    status, first = dead.partition["status"], dead.partition["first"]
    on_page = [r["_id"] for r in account.listing([status])[(first - 1) * 10 : (first + 1) * 10]]
    # Its two pages were marked seen by the family's walk key, then the worker died before the write.
    assert seen.mark(parent.pk, on_page) == set(on_page)
    AppRegistration.objects.filter(verifik_id__in=on_page).delete()
    died_at_page(dead.pk, first)
    queue = Queue()
    queue.reap()
    closed = run_partition(queue.partitions[0], details=False)
    assert closed.outcome == SyncRun.Outcome.SUCCEEDED, closed.error
    assert_mirrors(account)


def test_a_holder_that_keeps_its_lock_but_stops_beating_is_failed_and_learns_it(verifik, split, settings):
    verifik(count=30)
    run = leases.create(kind=SyncRun.Kind.ACTIVE, trigger="schedule", statuses=["STARTED"])
    try:
        queue = Queue()
        assert queue.reap().failed == []  # alive: its lock is held, its heartbeat fresh
        SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=age())
        assert queue.reap().failed == [run.pk]
        run.refresh_from_db()
        assert run.outcome == SyncRun.Outcome.FAILED
        assert "sent no heartbeat for" in run.error and "(VERIFIK_RUN_LEASE_SECONDS = 3)" in run.error
        with pytest.raises(LeaseLost, match="the reaper failed this run"):
            leases.beat(run)  # the holder, at its next page, stops
    finally:
        leases.release(run.pk)


def test_a_listing_run_whose_connection_died_is_failed_at_once(verifik, split):
    verifik(count=30)
    run = SyncRun.objects.create(kind=SyncRun.Kind.ACTIVE, trigger="schedule", heartbeat_at=timezone.now())
    assert Queue().reap().failed == [run.pk]
    run.refresh_from_db()
    assert run.outcome == SyncRun.Outcome.FAILED and "stopped before it finished" in run.error


def test_a_partition_never_started_is_sent_again_only_past_the_lease_while_its_family_made_no_progress(
    verifik, split, settings
):
    settings.VERIFIK_RUN_LEASE_SECONDS = 8  # age() is 10 s back
    settings.VERIFIK_PARTITION_ATTEMPTS = 2
    verifik(count=300)
    parent, queued = family()
    queue = Queue()
    assert queue.reap().resent == []  # just dispatched: waiting in the queue is normal
    SyncRun.objects.filter(parent=parent).update(started_at=age())
    with psycopg.connect(**params(), autocommit=True) as busy:  # a sibling walks: the others wait their turn
        busy.execute("SELECT pg_advisory_lock(%s, %s)", [LEASE_LOCK_CLASS, queued[0]])
        SyncRun.objects.filter(pk=queued[0]).update(heartbeat_at=timezone.now())
        assert queue.reap().resent == []
        busy.execute("SELECT pg_advisory_unlock_all()")  # its worker dies
    run_partition(queued[1], details=False)
    report = queue.reap()  # the sibling's worker died, another sibling just ended: the rest still wait their turn
    assert (report.failed, report.resent) == ([queued[0]], [])
    SyncRun.objects.filter(pk__in=queued[:2]).update(heartbeat_at=age())
    report = queue.reap()  # no progress for a lease: their messages were lost, and are sent again
    assert sorted(report.resent) == sorted(queued[2:]) and report.failed == []
    assert set(queued[2:]) <= set(queue.partitions)
    lost = SyncRun.objects.get(pk=queued[2])
    assert lost.outcome == SyncRun.Outcome.RUNNING and lost.partition["resent"] == 1
    assert queue.reap().resent == []  # once a lease, not at every pass
    for child in SyncRun.objects.filter(pk__in=queued[2:]):
        child.partition["resent_at"] = age().isoformat()
        child.save(update_fields=["partition"])
    report = queue.reap()  # sent twice (VERIFIK_PARTITION_ATTEMPTS = 2), never started: a dead attempt each
    assert sorted(report.failed) == sorted(queued[2:]) and len(report.redispatched) == len(queued) - 2
    lost.refresh_from_db()
    assert lost.outcome == SyncRun.Outcome.FAILED and "Sent to the workers 2 times" in lost.error
    assert "messages were lost" in lost.error
    for partition_id in queue.partitions:  # every message, duplicates included: the run taken or ended returns
        last = run_partition(partition_id, details=False)
    assert last.outcome == SyncRun.Outcome.SUCCEEDED, last.error
    assert not SyncRun.objects.filter(outcome=SyncRun.Outcome.RUNNING).exists()


def test_spent_attempts_fail_the_family_at_once_and_free_the_full_lane(verifik, split, settings):
    settings.VERIFIK_PARTITION_ATTEMPTS = 2
    account = verifik(count=300)
    parent, queued = family()
    queue = Queue()
    target = queued[0]
    for attempt in (1, 2):
        died_at_page(target, 1)
        queue.reap()
        if attempt == 1:
            target = queue.partitions[-1]
    parent.refresh_from_db()
    assert parent.outcome == SyncRun.Outcome.FAILED and parent.finished_at is not None
    assert "failed 2 attempts (VERIFIK_PARTITION_ATTEMPTS = 2)" in parent.error
    assert "nothing was marked removed upstream" in parent.error and "lease lock was free" in parent.error
    assert not SyncRun.objects.filter(outcome=SyncRun.Outcome.RUNNING).exists()
    assert run_partition(queued[1], details=False).outcome == SyncRun.Outcome.FAILED  # a late message does nothing
    assert SyncRun.objects.get(pk=queued[1]).pages == 0
    assert sync_lock_is_free()
    again = run_sync(split=True, details=False)
    assert again.outcome == SyncRun.Outcome.SUCCEEDED, again.error
    assert_mirrors(account)


def test_a_walking_partition_stops_at_its_next_page_once_its_family_failed(verifik, split):
    verifik(count=300)
    parent, queued = family()
    reaper.fail_family(parent, "failed by the test")
    child = SyncRun.objects.get(pk=queued[0])
    with pytest.raises(LeaseLost, match="its full sync ended"):
        leases.beat(child)


def test_a_family_whose_closer_died_is_failed(verifik, split):
    verifik(count=300)
    parent, queued = family()
    SyncRun.objects.filter(parent=parent).update(
        outcome=SyncRun.Outcome.SUCCEEDED, finished_at=age(), heartbeat_at=age()
    )
    SyncRun.objects.filter(pk=parent.pk).update(partitions_done=parent.partitions)
    assert Queue().reap().families_failed == [parent.pk]
    parent.refresh_from_db()
    assert parent.outcome == SyncRun.Outcome.FAILED and "closing the full sync stopped" in parent.error


def test_refresh_claims_whose_message_was_lost_are_queued_again(verifik, split):
    account = verifik(count=5)
    lost, running, fresh = (r["_id"] for r in account.records[:3])
    for verifik_id in (lost, running, fresh):
        PendingRefresh.objects.create(verifik_id=verifik_id)
    PendingRefresh.objects.filter(verifik_id__in=[lost, running]).update(updated_at=age())
    SyncRun.objects.create(kind=SyncRun.Kind.SINGLE, trigger="user", verifik_id=running)
    queue = Queue()
    queue.reap()
    assert queue.refreshes == [lost]
    queue.reap()
    assert queue.refreshes == [lost]  # queued again once a lease, not at every pass


def test_detail_fetches_handed_out_past_their_requeue_window_are_queued_again(verifik, split, settings):
    account = verifik(count=6)
    run_sync(details=False)
    ids = sorted(r["_id"] for r in account.records)
    now = timezone.now()
    AppRegistration.objects.filter(verifik_id__in=ids[:2]).update(details_queued_at=now - timedelta(hours=2))
    AppRegistration.objects.filter(verifik_id__in=ids[2:4]).update(details_queued_at=now)
    queue = Queue()
    assert queue.reap().details == 2
    assert sorted(queue.details) == ids[:2]  # never-queued ones wait for the next sync, recent ones for their fetch
    assert queue.reap().details == 0


def test_one_reaper_at_a_time(verifik, split):
    with psycopg.connect(**params(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [reaper.REAPER_LOCK_KEY])
        assert Queue().reap().skipped
        other.execute("SELECT pg_advisory_unlock_all()")
    assert not Queue().reap().skipped


def test_a_partition_whose_database_connection_died_is_left_to_the_reaper_and_walked_again(verifik, split):
    """A Postgres restart ends every connection: the partition is neither failed nor counted, but walked again."""
    account = verifik(count=300)
    parent, queued = family()
    for partition_id in queued[1:]:
        run_partition(partition_id, details=False)
    connection.ensure_connection()
    ours = connection.connection.info.backend_pid
    killed = []

    def kill_our_connection(page):  # the simulator's thread, before it serves the partition's second page
        if page == 2 and not killed:
            with psycopg.connect(**params(), autocommit=True) as killer:
                killed.append(killer.execute("SELECT pg_terminate_backend(%s)", [ours]).fetchone()[0])

    account.before_list_page = kill_our_connection
    assert run_partition(queued[0], details=False).outcome == SyncRun.Outcome.RUNNING
    assert killed == [True]
    assert SyncRun.objects.get(pk=queued[0]).outcome == SyncRun.Outcome.RUNNING  # not failed: the reaper decides
    queue = Queue()
    assert queue.reap().failed == [queued[0]]
    account.before_list_page = None
    closed = run_partition(queue.partitions[0], details=False)
    assert closed.outcome == SyncRun.Outcome.SUCCEEDED, closed.error
    assert_mirrors(account)
