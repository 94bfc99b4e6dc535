"""The mirror stays correct under faults: the API misbehaving, the database going away, races."""

import threading

import pytest
from django.db import connection, connections
from django.utils import timezone

from registrations import mapping
from registrations.mapping import map_registration, payload_hash
from registrations.models import AppRegistration, SyncRun
from registrations.simulator import Faults
from registrations.sync import SyncFailed, refresh, run_sync, store_detail, store_page, upsert
from registrations.verifik import VerifikClient

from .conftest import TOKEN
from .support import assert_mirrors, side_connection, wait_until

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "faults",
    [
        Faults(error_every=3),  # bursts of 503 with an HTML body
        Faults(rate_limit_every=2, retry_after=0),  # a 429 storm: every other request
        Faults(drop_every=4),  # connections closed without an answer
        Faults(truncate_every=5),  # half a JSON body
        Faults(short_page_every=3),  # pages that suddenly come back short
        Faults(slow_every=6, slow_seconds=1.0),  # read timeouts
    ],
    ids=["503-bursts", "429-storm", "dropped", "truncated", "short-pages", "timeouts"],
)
def test_every_fault_ends_with_exactly_the_upstream_data(verifik, settings, faults):
    account = verifik(count=70, faults=faults)
    settings.VERIFIK_TIMEOUT = 0.3
    settings.VERIFIK_MAX_RETRIES = 6
    run = run_sync(details=True)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.details_failed == 0
    assert run.removed == 0
    assert_mirrors(account)


def test_a_sync_that_runs_out_of_retries_fails_clearly_and_marks_nothing_removed(verifik, settings):
    account = verifik(count=50)
    run_sync(details=False)
    account.remove(account.records[0]["_id"])
    account.faults.error_every = 1  # Verifik is down from now on
    settings.VERIFIK_MAX_RETRIES = 2
    with pytest.raises(SyncFailed) as excinfo:
        run_sync(details=False)
    assert "HTTP 503" in excinfo.value.run.error and "gave up after 3 attempts" in excinfo.value.run.error
    assert not AppRegistration.objects.filter(removed_upstream_at__isnull=False).exists()


def test_a_listing_that_keeps_shrinking_marks_nothing_removed(verifik):
    account = verifik(count=60)
    run_sync(details=False)
    victims = iter([r["_id"] for r in account.records[:20]])
    account.before_list_page = lambda page: page == 2 and account.remove(next(victims))
    run = run_sync(details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    assert "were not marked removed upstream" in run.note
    assert not AppRegistration.objects.filter(removed_upstream_at__isnull=False).exists()


def test_no_page_is_half_written(verifik):
    account = verifik(count=30)
    account.records[25]["redFlags"] = {"not": "a number"}  # on page 1 (newest first), rejected alone
    account._reindex()
    calls = []

    def fail_on_second_page(page):
        calls.append(page)
        if len(calls) == 2:
            raise RuntimeError("worker killed")

    with pytest.raises(SyncFailed):
        run_sync(details=False, before_page=fail_on_second_page)
    assert AppRegistration.objects.count() in (9, 19)  # whole pages only, less the rejected record


def test_newer_data_wins_when_a_refresh_races_the_sync(verifik):
    """The listing was read before Verifik changed the registration; a refresh stored the change first."""
    account = verifik(count=12)
    record = account.records[-1]
    stale_page = VerifikClient(account.url, TOKEN).list_page(1, 10).items
    account.update(record["_id"], status="COMPLETED", notes="newer")
    refresh(record["_id"])
    result = store_page(stale_page, set())
    row = AppRegistration.objects.get(verifik_id=record["_id"])
    assert (row.status, row.notes) == ("COMPLETED", "newer") and result.unchanged == 1
    assert AppRegistration.objects.filter(verifik_id=record["_id"]).count() == 1


def test_the_upsert_itself_refuses_older_data(verifik):
    """Even past the service's own check, the statement's WHERE keeps the newer version."""
    account = verifik(count=3)
    record = account.records[0]
    store_detail({**record, "updatedAt": "2099-01-01T00:00:00Z", "name": "Newest"})
    mapped = map_registration({**record, "name": "Older"})
    upsert.write([upsert._row(mapped, now=mapped.fields["updated_at"], listing_hash=payload_hash(record))], "listing")
    assert AppRegistration.objects.get(verifik_id=record["_id"]).name == "Newest"


def test_unexpected_shapes_are_stored_sensibly_or_rejected_alone(verifik):
    account = verifik(count=8)
    r = account.records
    r[0]["redFlags"] = "2"
    r[1]["failedEmailValidations"] = None
    r[2]["status"] = "PAUSED_BY_OPERATOR"
    r[3]["project"] = {"_id": r[3]["project"], "name": "Populated where an id was expected"}
    r[4]["extraKey"] = {"nested": [1, 2]}
    r[5]["createdAt"] = {"$date": 1}
    account._reindex()
    run = run_sync(details=False)
    assert run.created == 7 and run.failed == 1 and "createdAt" in run.failures[0]["reason"]
    rows = {row.verifik_id: row for row in AppRegistration.objects.all()}
    assert rows[r[0]["_id"]].red_flags == 2
    assert rows[r[1]["_id"]].failed_email_validations is None
    assert rows[r[2]["_id"]].status == "PAUSED_BY_OPERATOR"
    assert rows[r[3]["_id"]].project_id == r[3]["project"]["_id"]
    assert rows[r[3]["_id"]].populated["project"]["name"].startswith("Populated")
    assert rows[r[4]["_id"]].raw["extraKey"] == {"nested": [1, 2]}


def test_redacted_keys_and_oversized_parts_are_not_stored(verifik, settings):
    account = verifik(count=4)
    settings.VERIFIK_RAW_REDACT = ["documentNumber", "imageBase64"]
    settings.VERIFIK_RAW_MAX_PART_BYTES = 2000
    account.records[0]["selfie"] = {"imageBase64": "QUJD" * 5000}
    account.records[1]["hugeBlob"] = ["x" * 100] * 100
    account._reindex()
    run = run_sync(details=True)
    assert run.oversized == 1
    big = AppRegistration.objects.get(verifik_id=account.records[1]["_id"])
    assert big.raw["hugeBlob"]["_omitted"] and big.raw["hugeBlob"]["bytes"] > 2000
    stored = str(list(AppRegistration.objects.values_list("raw", "populated")))
    assert "documentNumber" not in stored and "imageBase64" not in stored and "QUJD" not in stored


@pytest.mark.django_db(transaction=True)
def test_the_database_going_away_fails_the_run_cleanly_and_the_next_sync_completes(verifik):
    account = verifik(count=60)
    connection.ensure_connection()
    ours = connection.connection.info.backend_pid  # the walk's connection (this thread's); the hook runs in another
    killed = []

    def kill_our_connection(page):
        if page == 3 and not killed:
            with side_connection() as killer:
                killed.append(killer.execute("SELECT pg_terminate_backend(%s)", [ours]).fetchone()[0])

    with pytest.raises(SyncFailed) as excinfo:
        run_sync(details=False, before_page=kill_our_connection)
    assert killed == [True]
    failed = SyncRun.objects.get(pk=excinfo.value.run.pk)
    assert failed.outcome == SyncRun.Outcome.FAILED and "Internal error" in failed.error
    run = run_sync(details=False)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    assert_mirrors(account)


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_and_syncs_never_duplicate_rows(verifik):
    account = verifik(count=40)
    ids = [r["_id"] for r in account.records[:10]]
    errors = []

    def refresher():
        try:
            for verifik_id in ids:
                account.update(verifik_id, notes=f"refreshed {verifik_id}")
                refresh(verifik_id, trigger=SyncRun.Trigger.WEBHOOK, kind=SyncRun.Kind.WEBHOOK)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=refresher)
    thread.start()
    run_sync(details=False)
    thread.join(60)
    assert not errors
    run_sync(details=False)
    assert AppRegistration.objects.count() == 40
    for verifik_id in ids:
        assert AppRegistration.objects.get(verifik_id=verifik_id).notes == f"refreshed {verifik_id}"


ACTIVE = list(mapping.ACTIVE_STATUSES)


class ActiveLane(threading.Thread):
    """Active syncs one after another, on their own connection, until told to stop."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.errors = threading.Event(), []

    def run(self):
        try:
            while not self.stop.is_set():
                run_sync(statuses=ACTIVE, details=False)
        except Exception as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)
        finally:
            connections.close_all()


def active_sync_since(moment):
    return SyncRun.objects.filter(kind="active", outcome="succeeded", started_at__gt=moment).exists()


@pytest.mark.django_db(transaction=True)
def test_an_active_sync_and_a_full_walk_over_the_same_changing_registrations_in_parallel_end_exact(verifik):
    """The full walk holds pages read before a change while the active lane stores the change: the guarded
    upsert keeps the newer updatedAt whichever write lands last, so the mirror ends exact with no sync after."""
    account = verifik(count=200, faults=Faults(latency=0.01))
    run_sync(details=False)
    listing = account.listing(())
    changed = []

    def change_what_the_walk_just_read(page):
        if 3 <= page <= 8:
            just_read = listing[(page - 2) * 10 : (page - 1) * 10]
            record = next(r for r in just_read if r["status"] in ACTIVE and r["_id"] not in changed)
            account.update(record["_id"], notes=f"changed while the full walk was at page {page}")
            changed.append(record["_id"])
            moment = timezone.now()
            wait_until(lambda: active_sync_since(moment), 20, f"an active sync during the full walk's page {page}")

    lane = ActiveLane()
    lane.start()
    try:
        full = run_sync(details=False, before_page=change_what_the_walk_just_read)
    finally:
        lane.stop.set()
        lane.join(60)
    assert not lane.errors and len(changed) == 6
    assert full.outcome == SyncRun.Outcome.SUCCEEDED, full.error
    overlapping = SyncRun.objects.filter(
        kind="active", outcome="succeeded", started_at__gt=full.started_at, finished_at__lt=full.finished_at
    )
    assert overlapping.count() >= 6 and not SyncRun.objects.filter(kind="active", outcome="skipped").exists()
    assert_mirrors(account)  # no sync ran after the last one of either lane


@pytest.mark.django_db(transaction=True)
def test_a_registration_the_active_lane_stored_during_the_walk_is_never_marked_removed_by_it(verifik):
    account = verifik(count=60)
    run_sync(details=False)
    listing = account.listing(())
    target = next(r["_id"] for r in listing[40:] if r["status"] in ACTIVE)  # on a page the walk has not reached
    state = {}

    def during_the_walk(page):
        if page == 3 and not state:
            account.update(target, notes="stored by the active lane during the full walk")
            state["active"] = run_sync(statuses=ACTIVE, details=False)
            # Then Verifik drops it, and a new registration keeps the total: the walk stays complete.
            account.remove(target)
            account.add(1)

    full = run_sync(details=False, before_page=during_the_walk)
    assert state["active"].outcome == SyncRun.Outcome.SUCCEEDED  # the active lane ran during the walk
    assert full.outcome == SyncRun.Outcome.SUCCEEDED and "kept changing" not in full.note, full.note
    assert full.removed == 0
    assert AppRegistration.objects.get(verifik_id=target).removed_upstream_at is None
    again = run_sync(details=False)  # the next full walk, begun after, does mark it
    assert again.removed == 1
    assert AppRegistration.objects.get(verifik_id=target).removed_upstream_at is not None
