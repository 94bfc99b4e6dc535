"""Pages written behind the walk (sync/writer.py): on a second connection, in order, several in one transaction.

Transactional tests: the writer only runs outside a caller's transaction (inside one, pages are
written inline, as every other sync test does).
"""

import pytest
from django.db import connection

from registrations.models import AppRegistration, StatusChange, SyncRun
from registrations.sync import SyncFailed, run_sync
from registrations.sync.upsert import finish_page, prepare_page, write_pages
from registrations.sync.writer import BATCH_PAGES, CONNECTION_NAME
from registrations.verifik import VerifikClient

from .conftest import TOKEN
from .support import assert_mirrors, random_text, side_connection

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = {"language": random_text(20_000)}  # past btree's index row limit: the database refuses the row


def transactions_that_wrote(verifik_ids):
    """How many transactions wrote these registrations' rows (rows written in one share their xmin)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(DISTINCT xmin::text) FROM {AppRegistration._meta.db_table} WHERE verifik_id = ANY(%s)",  # noqa: S608
            [list(verifik_ids)],
        )
        return cursor.fetchone()[0]


def test_pages_queued_behind_a_slow_write_go_in_one_transaction_and_a_refused_row_stays_alone(verifik, settings):
    settings.VERIFIK_SYNC_STATEMENT_TIMEOUT = 20  # a write that never gets the lock fails the test, not hangs it
    account = verifik(count=100)  # ten pages of ten, newest first
    bad_id = account.records[-1 - 85]["_id"]  # on page 9
    account.update(bad_id, **REFUSED)
    blocker = side_connection()
    # A SHARE lock lets the walk read the table but holds the writer's first COPY until page 7 is fetched.
    blocker.execute(f"LOCK TABLE {AppRegistration._meta.db_table} IN SHARE MODE")

    def release(page):
        if page == 7:
            blocker.rollback()

    try:
        run = run_sync(details=False, before_page=release)
    finally:
        blocker.close()

    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    assert (run.pages, run.created, run.failed) == (11, 99, 1)  # ten, and page 1 read again at the end
    assert [f["id"] for f in run.failures] == [bad_id] and "refused by the database" in run.failures[0]["reason"]
    assert_mirrors(account, skip=[bad_id])
    assert StatusChange.objects.filter(from_status__isnull=True).count() == 99
    # Page 1 waited for the lock while pages 2 to 6 queued (BATCH_PAGES): those five went in one transaction.
    assert BATCH_PAGES == 5
    assert transactions_that_wrote(r["_id"] for r in account.records[-60:-10]) == 1
    assert transactions_that_wrote(r["_id"] for r in account.records[-10:]) == 1


def test_the_writer_connection_going_away_fails_the_run_and_the_next_sync_completes(verifik):
    account = verifik(count=60)
    killed = []

    def kill_the_writer(page):
        if page == 4 and not killed:
            with side_connection() as killer:
                rows = killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    [CONNECTION_NAME],
                ).fetchall()
            killed.extend(rows)

    with pytest.raises(SyncFailed) as excinfo:
        run_sync(details=False, before_page=kill_the_writer)

    assert killed == [(True,)]
    failed = SyncRun.objects.get(pk=excinfo.value.run.pk)
    assert failed.outcome == SyncRun.Outcome.FAILED and "Internal error" in failed.error
    stored = AppRegistration.objects.count()
    assert stored % 10 == 0 and StatusChange.objects.count() == stored  # whole pages, each with its history
    run = run_sync(details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.created == 60 - stored
    assert_mirrors(account)


def test_a_walk_that_fails_leaves_whole_pages_and_the_next_sync_completes(verifik):
    account = verifik(count=60)
    calls = []

    def fail_on_fourth_page(page):
        calls.append(page)
        if len(calls) == 4:
            raise RuntimeError("worker killed")

    with pytest.raises(SyncFailed):
        run_sync(details=False, before_page=fail_on_fourth_page)

    stored = AppRegistration.objects.count()
    assert stored in (10, 20, 30) and StatusChange.objects.count() == stored
    assert run_sync(details=False).outcome == SyncRun.Outcome.SUCCEEDED
    assert_mirrors(account)


def test_one_write_of_several_pages_counts_each_page_and_refuses_only_the_bad_row(verifik):
    account = verifik(count=30)
    bad_id = account.records[-1 - 14]["_id"]  # page 2
    account.update(bad_id, **REFUSED)
    client = VerifikClient(account.url, TOKEN)
    seen = set()
    pages = [prepare_page(client.list_page(n, 10).items, seen) for n in (1, 2, 3)]

    refused = write_pages(pages)

    results = [finish_page(page, refused) for page in pages]
    assert [r.created for r in results] == [10, 9, 10]
    assert [[f["id"] for f in r.failures] for r in results] == [[], [bad_id], []]
    assert AppRegistration.objects.count() == 29 and not AppRegistration.objects.filter(verifik_id=bad_id).exists()
