"""A full sync split across workers: one walk per status (and page range), removals only when all completed."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection

from registrations import tasks
from registrations.models import AppRegistration, SyncRun
from registrations.simulator import Faults
from registrations.sync import SyncFailed, run_partition, run_sync
from registrations.sync.seen import TABLE as SEEN_TABLE

from .support import assert_mirrors, sync_lock_is_free

pytestmark = pytest.mark.django_db


@pytest.fixture
def split(settings):
    """Split any full sync of more than 2 pages (of 10): 300 registrations make ~16 partitions."""
    settings.VERIFIK_SYNC_PARTITION_PAGES = 2


def removed():
    return set(AppRegistration.objects.filter(removed_upstream_at__isnull=False).values_list("verifik_id", flat=True))


def seen_rows():
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {SEEN_TABLE}")  # noqa: S608
        return cursor.fetchone()[0]


def test_a_split_full_sync_mirrors_the_account_and_counts_on_the_parent(verifik, split, settings):
    account = verifik(count=300)
    settings.VERIFIK_SYNC_DETAILS = False
    run = SyncRun.objects.get(pk=tasks.sync_registrations.delay(trigger="user").get())  # eager: one after another
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert_mirrors(account)
    partitions = list(run.partition_runs.all())
    statuses = {p.partition["status"] for p in partitions}
    assert statuses == {r["status"] for r in account.records} and len(partitions) > len(statuses)
    assert all(p.outcome == SyncRun.Outcome.SUCCEEDED and p.kind == SyncRun.Kind.PARTITION for p in partitions)
    assert (run.partitions, run.partitions_done) == (len(partitions), len(partitions))
    assert (run.seen, run.created, run.updated, run.failed) == (300, 300, 0, 0)
    assert run.pages == sum(p.pages for p in partitions) and run.pages >= 30
    assert seen_rows() == 0 and sync_lock_is_free()
    again = run_sync(split=True, details=False)
    assert (again.partitions, again.seen, again.unchanged, again.created, again.updated) == (
        len(partitions),
        300,
        300,
        0,
        0,
    )


def test_partitions_are_queued_longest_first_so_workers_finish_together(verifik, split, settings):
    account = verifik(count=300)
    settings.VERIFIK_SYNC_DETAILS = False
    run = SyncRun.objects.get(pk=tasks.sync_registrations.delay(trigger="user").get())
    pages = {}
    for record in account.records:
        pages[record["status"]] = pages.get(record["status"], 0) + 1
    pages = {status: -(-n // 10) for status, n in pages.items()}

    def span(spec):
        last = pages.get(spec["status"], 1) if spec["last"] is None else spec["last"]
        return max(1, last - spec["first"] + 1)

    spans = [span(p.partition) for p in run.partition_runs.order_by("pk")]
    assert spans == sorted(spans, reverse=True) and spans[0] > spans[-1]


def test_one_failing_partition_marks_nothing_removed_and_fails_the_full_sync(verifik, split):
    account = verifik(count=300, faults=Faults(error_status=500))
    run_sync(split=True, details=False)
    gone = [account.records[3]["_id"], account.records[200]["_id"]]
    for verifik_id in gone:
        account.remove(verifik_id)
    account.faults.fail_status = "FAILED:2"  # its partition fails on its second page (the plan's probe passes)
    with pytest.raises(SyncFailed, match="partitions failed; nothing was marked removed upstream") as excinfo:
        run_sync(split=True, details=False)
    parent = excinfo.value.run
    assert (
        parent.outcome == SyncRun.Outcome.FAILED and "FAILED from page 1" in parent.error and "HTTP 500" in parent.error
    )
    outcomes = {(p.partition["status"], p.outcome) for p in parent.partition_runs.all()}
    assert ("FAILED", SyncRun.Outcome.FAILED) in outcomes and ("COMPLETED", SyncRun.Outcome.SUCCEEDED) in outcomes
    assert removed() == set() and parent.removed == 0 and seen_rows() == 0
    account.faults.fail_status = ""
    run = run_sync(split=True, details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.removed == 2 and removed() == set(gone)


def test_the_family_holds_the_single_flight_until_its_last_partition(verifik, split):
    verifik(count=300)
    queued = []
    parent = run_sync(split=True, details=False, on_partitions=lambda run, ids, details: queued.extend(ids))
    assert parent.outcome == SyncRun.Outcome.RUNNING and len(queued) == parent.partitions > 7
    assert sync_lock_is_free()  # between partitions nobody holds the lock: the family's row keeps others out
    skipped = run_sync(split=True, details=False)
    assert skipped.outcome == SyncRun.Outcome.SKIPPED and f"(run #{parent.pk})" in skipped.error
    # The active lane never waits on the full lane: it runs while the family lives.
    active = run_sync(statuses=["STARTED"], details=False)
    assert active.outcome == SyncRun.Outcome.SUCCEEDED and active.seen > 0
    for partition_id in queued[:-1]:
        assert run_partition(partition_id, details=False).outcome == SyncRun.Outcome.RUNNING
    run_partition(queued[0], details=False)  # a task delivered twice changes nothing
    closed = run_partition(queued[-1], details=False)
    assert closed.outcome == SyncRun.Outcome.SUCCEEDED and (closed.seen, closed.created) == (300, 300)
    assert run_sync(split=True, details=False).outcome == SyncRun.Outcome.SUCCEEDED


def test_a_family_past_its_deadline_is_failed_by_the_next_sync(verifik, split, settings):
    verifik(count=300)
    parent = run_sync(split=True, details=False, on_partitions=lambda run, ids, details: None)  # the broker lost them
    SyncRun.objects.filter(pk=parent.pk).update(
        started_at=parent.started_at - timedelta(seconds=settings.VERIFIK_SYNC_TIME_LIMIT + 301)
    )
    assert run_sync(split=True, details=False).outcome == SyncRun.Outcome.SUCCEEDED
    assert set(SyncRun.objects.filter(pk=parent.pk).values_list("outcome", flat=True)) == {"failed"}
    assert set(SyncRun.objects.filter(parent=parent).values_list("outcome", flat=True)) == {"failed"}


def test_a_listing_that_ignores_the_status_filter_is_walked_as_one(verifik, split):
    account = verifik(count=300)
    account.ignore_in_status = True
    original = account.listing
    account.listing = lambda statuses: original(())  # where_status ignored too
    run = run_sync(split=True, details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.partitions == 0
    assert "not split by status: the listing ignored the status filter" in run.note
    assert_mirrors(account)


def test_a_status_this_version_does_not_know_keeps_the_walk_whole(verifik, split):
    account = verifik(count=300)
    account.update(account.records[10]["_id"], status="ARCHIVED")
    run = run_sync(split=True, details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.partitions == 0
    assert "the statuses' totals add up to 299 where the listing reports 300" in run.note
    assert AppRegistration.objects.get(verifik_id=account.records[10]["_id"]).status == "ARCHIVED"


def test_a_removal_is_marked_by_a_split_sync_after_every_partition_completed(verifik, split):
    account = verifik(count=300)
    run_sync(split=True, details=False)
    gone = account.records[150]["_id"]
    account.remove(gone)
    account.reset_stats()
    run = run_sync(split=True, details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.partitions > 7
    assert run.removed == 1 and removed() == {gone} and account.detail_ids == [gone]


@pytest.mark.django_db(transaction=True)
def test_seen_ids_are_kept_in_the_scratch_table_while_walking_and_dropped_after(verifik, split):
    account = verifik(count=300)
    params = connection.get_connection_params()
    counts = []

    def count_seen(page):  # the simulator's thread, its own connection: sees what the sync committed
        with psycopg.connect(**params, autocommit=True) as other:
            counts.append(other.execute(f"SELECT count(*) FROM {SEEN_TABLE}").fetchone()[0])  # noqa: S608

    account.before_list_page = count_seen
    run = run_sync(split=True, details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    assert max(counts) >= 250 and counts == sorted(counts)  # filled page by page, by every partition
    assert seen_rows() == 0
