"""What the listing says is checked before it is believed: empty or odd answers never mark registrations removed."""

import threading

import psycopg
import pytest
from django.db import connection

from registrations.models import AppRegistration, SyncRun
from registrations.simulator import Faults
from registrations.sync import SYNC_LOCK_KEY, SyncFailed, run_sync

from .support import assert_mirrors

pytestmark = pytest.mark.django_db


def removed():
    return AppRegistration.objects.filter(removed_upstream_at__isnull=False).count()


def test_a_listing_of_bare_empty_pages_fails_the_run_and_marks_nothing(verifik):
    account = verifik(count=30)
    run_sync(details=False)
    account.list_transform = lambda body, page: {"data": []}
    with pytest.raises(SyncFailed, match="lacks a numeric 'total' and 'pages'") as excinfo:
        run_sync(details=False)
    assert excinfo.value.run.outcome == SyncRun.Outcome.FAILED and removed() == 0


def test_pages_missing_their_total_fail_the_run_and_mark_nothing(verifik):
    account = verifik(count=30)
    run_sync(details=False)
    account.list_transform = lambda body, page: {k: v for k, v in body.items() if k != "total"}
    with pytest.raises(SyncFailed, match="lacks a numeric 'total'"):
        run_sync(details=False)
    assert removed() == 0


def test_an_empty_but_well_formed_listing_marks_nothing_and_says_so(verifik):
    account = verifik(count=30)
    run_sync(details=False)
    account.list_transform = lambda body, page: {"data": [], "total": 0, "limit": 10, "page": page, "pages": 0}
    run = run_sync(details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.removed == 0 and removed() == 0
    assert "served no registrations" in run.note


def test_a_page_other_than_the_one_asked_for_fails_the_run(verifik):
    account = verifik(count=30)
    account.list_transform = lambda body, page: {**body, "page": 1}
    with pytest.raises(SyncFailed, match="answered page 1 when page 2 was asked for"):
        run_sync(details=False)


def test_when_a_tenth_vanishes_the_removal_cap_trips_and_nothing_is_marked(verifik):
    account = verifik(count=40)
    run_sync(details=False)
    for record in list(account.records[5:9]):
        account.remove(record["_id"])
    run = run_sync(details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.removed == 0 and removed() == 0
    assert "VERIFIK_REMOVAL_MAX_FRACTION" in run.note and "When the removal cap trips" in run.note


def test_the_cap_can_be_raised_for_a_known_clean_up(verifik, settings):
    account = verifik(count=40)
    run_sync(details=False)
    gone = [r["_id"] for r in account.records[5:9]]
    for verifik_id in gone:
        account.remove(verifik_id)
    settings.VERIFIK_REMOVAL_MAX_FRACTION = 0.2
    run = run_sync(details=False)
    assert run.removed == 4 and set(
        AppRegistration.objects.filter(removed_upstream_at__isnull=False).values_list("verifik_id", flat=True)
    ) == set(gone)


def test_a_candidate_whose_detail_still_answers_is_kept_and_stored(verifik, settings):
    account = verifik(count=30)
    settings.VERIFIK_PAGE_SIZE = 100  # one page: dropping an item keeps the listing consistent
    run_sync(details=False)
    hidden = account.records[7]["_id"]
    account.update(hidden, notes="still here, only the listing forgot it")

    def forget(body, page):
        data = [item for item in body["data"] if item["_id"] != hidden]
        return {**body, "data": data, "total": body["total"] - 1}

    account.list_transform = forget
    account.reset_stats()
    run = run_sync(details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.removed == 0 and removed() == 0
    assert account.detail_ids == [hidden] and "still answered their detail GET" in run.note
    assert AppRegistration.objects.get(verifik_id=hidden).notes == "still here, only the listing forgot it"


def test_a_listing_that_ignores_the_status_filter_falls_back_to_one_walk_per_status(verifik):
    account = verifik(count=60)
    account.ignore_in_status = True
    statuses = ["STARTED", "ONGOING"]
    run = run_sync(statuses=statuses, details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    assert "ignored the status filter" in run.note and "each status was walked on its own" in run.note
    wanted = {r["_id"] for r in account.records if r["status"] in statuses}
    assert wanted <= set(AppRegistration.objects.values_list("verifik_id", flat=True))


def test_a_listing_that_never_ends_stops_at_the_page_cap(verifik):
    account = verifik(count=20)
    newest = account.records[-10:]
    # Every page claims another after it and repeats the newest registrations past the end.
    account.list_transform = lambda body, page: {**body, "data": body["data"] or newest, "pages": page + 1}
    with pytest.raises(SyncFailed, match="kept serving more pages") as excinfo:
        run_sync(details=False)
    assert excinfo.value.run.pages <= 2 + 10 + 1
    assert lock_is_free()


def test_a_sync_past_its_time_limit_fails_with_the_reason_and_frees_the_lock(verifik, settings):
    verifik(count=200, faults=Faults(latency=0.02))
    settings.VERIFIK_SYNC_TIME_LIMIT = 0.15
    with pytest.raises(SyncFailed, match="Stopped after VERIFIK_SYNC_TIME_LIMIT"):
        run_sync(details=False)
    assert lock_is_free()
    settings.VERIFIK_SYNC_TIME_LIMIT = 600
    assert run_sync(details=False).outcome == SyncRun.Outcome.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_hung_statement_fails_the_run_at_the_statement_timeout_and_frees_the_lock(verifik, settings):
    account = verifik(count=20)
    settings.VERIFIK_SYNC_STATEMENT_TIMEOUT = 0.5
    locked, release = threading.Event(), threading.Event()
    params = connection.get_connection_params()

    def hold_the_table():
        with psycopg.connect(**params, autocommit=False) as other:
            other.execute("LOCK TABLE registrations_appregistration IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_table)
    holder.start()
    try:
        assert locked.wait(10)
        with pytest.raises(SyncFailed, match="VERIFIK_SYNC_STATEMENT_TIMEOUT") as excinfo:
            run_sync(details=False)
    finally:
        release.set()
        holder.join(10)
    assert SyncRun.objects.get(pk=excinfo.value.run.pk).outcome == SyncRun.Outcome.FAILED
    assert lock_is_free()
    assert run_sync(details=False).outcome == SyncRun.Outcome.SUCCEEDED
    assert_mirrors(account)


def lock_is_free():
    """Nobody holds the single-flight lock of listing syncs in this database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.objid = %s AND d.datname = current_database()",
            [SYNC_LOCK_KEY],
        )
        return cursor.fetchone()[0] == 0
