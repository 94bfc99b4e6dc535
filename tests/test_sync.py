import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from registrations.models import AppRegistration, SyncRun
from registrations.simulator import Faults
from registrations.sync import SyncFailed, refresh, run_sync
from registrations.verifik import InvalidRegistrationId

from .support import assert_mirrors

pytestmark = pytest.mark.django_db


def table_writes():
    """Rows inserted and updated in registrations so far in this transaction, by Postgres' own counters."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_ins + n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = %s",
            [AppRegistration._meta.db_table],
        )
        row = cursor.fetchone()
    return row[0] if row else 0


def test_full_sync_mirrors_every_registration_field_for_field(verifik):
    account = verifik(count=57)
    run = run_sync(details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    assert (run.created, run.updated, run.failed, run.removed) == (57, 0, 0, 0)
    assert run.pages == 7  # six pages of ten, then page one again to catch newcomers
    assert_mirrors(account)


def test_details_bring_every_populated_object(verifik, settings):
    account = verifik(count=12)
    run = run_sync(details=True)
    assert run.details_fetched == 12 and account.detail_requests == 12
    row = AppRegistration.objects.get(verifik_id=account.records[0]["_id"])
    assert set(row.populated) == set(settings.VERIFIK_POPULATES)
    assert row.populated["project"]["_id"] == row.project_id
    assert not AppRegistration.objects.filter(details_pending=True).exists()


def test_a_second_sync_writes_nothing(verifik):
    account = verifik(count=35)
    run_sync(details=True)
    before, details_before = table_writes(), account.detail_requests
    run = run_sync(details=True)
    assert table_writes() == before
    assert (run.created, run.updated, run.unchanged) == (0, 0, 35)
    assert account.detail_requests == details_before, "unchanged registrations are not fetched again"


def test_the_benchmark_simulator_serves_cached_listings_that_still_follow_changes(verifik):
    """The bench's simulator keeps each item's JSON (--cache-json): same bytes, so nothing is rewritten;
    a change made the way Verifik makes one (a new version) is served and stored."""
    account = verifik(count=25, cache_json=True)
    run_sync()
    changed = account.mutate(0.2, seed=3)
    run = run_sync()
    assert (run.created, run.updated, run.unchanged) == (0, len(changed), 25 - len(changed))
    assert set(
        AppRegistration.objects.filter(status="NEEDS_MANUAL_VERIFICATION").values_list("verifik_id", flat=True)
    ) >= set(changed)


def test_changes_additions_and_removals_upstream_show_after_the_next_sync(verifik):
    account = verifik(count=30)
    run_sync(details=False)
    changed = account.records[4]["_id"]
    removed = account.records[9]["_id"]
    account.update(changed, status="FAILED", name="Renamed Person", notes=None)
    account.remove(removed)
    added = account.add(3)
    run = run_sync(details=False)
    assert (run.created, run.updated, run.removed) == (3, 1, 1)
    row = AppRegistration.objects.get(verifik_id=changed)
    assert (row.status, row.name, row.notes) == ("FAILED", "Renamed Person", None)
    gone = AppRegistration.objects.get(verifik_id=removed)
    assert gone.removed_upstream_at is not None, "removed upstream is flagged, never deleted"
    assert AppRegistration.objects.filter(verifik_id__in=[r["_id"] for r in added]).count() == 3


def test_a_registration_that_reappears_is_no_longer_marked_removed(verifik):
    account = verifik(count=15)
    run_sync(details=False)
    record = account.records[3]
    account.remove(record["_id"])
    run_sync(details=False)
    account.records.append(record)
    account._reindex()
    run_sync(details=False)
    assert AppRegistration.objects.get(verifik_id=record["_id"]).removed_upstream_at is None


def test_older_data_never_overwrites_newer(verifik):
    account = verifik(count=10)
    record = account.records[2]
    newer = {**record, "status": "COMPLETED", "updatedAt": "2099-01-01T00:00:00.000Z"}
    from registrations.sync import store_detail

    store_detail(newer)
    run = run_sync(details=False)
    row = AppRegistration.objects.get(verifik_id=record["_id"])
    assert row.status == "COMPLETED" and row.updated_at.year == 2099
    assert run.unchanged == 1 and run.created == 9


def test_registrations_created_during_the_walk_are_not_missed(verifik):
    account = verifik(count=45)
    added = []
    account.before_list_page = lambda page: page == 3 and not added and added.extend(account.add(4))
    run = run_sync(details=False)
    assert AppRegistration.objects.count() == 49 == len(account.records)
    assert run.removed == 0 and run.created == 49
    assert_mirrors(account)


def test_a_registration_deleted_during_the_walk_does_not_hide_others(verifik):
    account = verifik(count=45)
    run_sync(details=False)
    victim = account.records[40]["_id"]  # on the first page, newest first
    done = []
    account.before_list_page = lambda page: page == 3 and not done and (done.append(1), account.remove(victim))
    run = run_sync(details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    removed = list(
        AppRegistration.objects.filter(removed_upstream_at__isnull=False).values_list("verifik_id", flat=True)
    )
    assert removed == [victim]


def test_a_bad_token_fails_clearly_and_stores_nothing(verifik, settings):
    verifik(count=20)
    settings.VERIFIK_API_TOKEN = "wrong-token"
    with pytest.raises(SyncFailed) as excinfo:
        run_sync(details=False)
    run = excinfo.value.run
    assert run.outcome == SyncRun.Outcome.FAILED and "VERIFIK_API_TOKEN" in run.error
    assert "wrong-token" not in run.error
    assert AppRegistration.objects.count() == 0


def test_503s_and_429s_are_survived_with_identical_data(verifik):
    account = verifik(count=80, faults=Faults(error_every=7, rate_limit_every=11, retry_after=0))
    run = run_sync(details=True)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.details_failed == 0
    assert_mirrors(account)


def test_a_partial_listing_keeps_what_the_details_said(verifik):
    account = verifik(count=12, list_keys="documented")
    run_sync(details=True)
    record = account.records[5]
    row = AppRegistration.objects.get(verifik_id=record["_id"])
    assert row.name == record["name"] and row.red_flags == record["redFlags"]
    before = table_writes()
    run_sync(details=True)
    assert table_writes() == before
    row.refresh_from_db()
    assert row.name == record["name"], "a key absent from the listing leaves the stored value alone"


def test_records_that_cannot_be_mapped_are_counted_and_the_rest_lands(verifik):
    account = verifik(count=20)
    account.records[3]["createdAt"] = "not a date"
    account.records[8]["redFlags"] = "several"
    account._reindex()
    run = run_sync(details=False)
    assert run.failed == 2 and run.created == 18
    assert {f["id"] for f in run.failures} == {account.records[3]["_id"], account.records[8]["_id"]}
    assert any("redFlags" in f["reason"] for f in run.failures)


def test_a_failed_detail_fetch_is_tried_again_by_the_next_sync(verifik):
    account = verifik(count=10)
    run_sync(details=False)
    assert AppRegistration.objects.filter(details_pending=True).count() == 10
    run = run_sync(details=True)
    assert run.details_fetched == 10
    assert not AppRegistration.objects.filter(details_pending=True).exists()
    assert account.detail_requests == 10


def test_status_filtered_sync_never_marks_removals(verifik):
    account = verifik(count=40)
    run_sync(details=False)
    run = run_sync(statuses=["STARTED", "ONGOING"], details=False)
    assert run.kind == SyncRun.Kind.ACTIVE and run.removed == 0
    assert run.seen == sum(r["status"] in ("STARTED", "ONGOING") for r in account.records)


def test_refresh_of_a_registration_gone_upstream_marks_it_removed(verifik):
    account = verifik(count=5)
    run_sync(details=False)
    gone = account.records[1]["_id"]
    account.remove(gone)
    run = refresh(gone)
    assert run.removed == 1
    assert AppRegistration.objects.get(verifik_id=gone).removed_upstream_at is not None


def test_refresh_with_a_malformed_id_sends_nothing(verifik):
    account = verifik(count=5)
    with pytest.raises(InvalidRegistrationId):
        refresh("nope")
    assert account.request_count == 0 and not SyncRun.objects.exists()


def test_sync_command_prints_a_summary(verifik, capsys):
    verifik(count=15)
    call_command("sync_registrations", "--no-details")
    out = capsys.readouterr().out
    assert "succeeded" in out and "15 created" in out


def test_sync_command_fails_with_a_clear_message(verifik, settings):
    verifik(count=5)
    settings.VERIFIK_API_TOKEN = "bad"
    with pytest.raises(CommandError, match="VERIFIK_API_TOKEN"):
        call_command("sync_registrations")


def test_refresh_command_refuses_a_malformed_id(verifik):
    account = verifik(count=5)
    with pytest.raises(CommandError, match="24 hexadecimal"):
        call_command("refresh_registration", "12345")
    assert account.request_count == 0
