"""One bad record never stops a sync: it is stored faithfully (cleaned where it must be) or rejected alone."""

import pytest
from django.urls import reverse

from registrations.cleaning import DEPTH_MARKER, MAX_DEPTH
from registrations.models import AppRegistration, StatusChange, SyncRun
from registrations.sync import SyncFailed, refresh, run_sync

from .support import assert_mirrors, random_text

pytestmark = pytest.mark.django_db

TEN_MB = 10 * 1024 * 1024
POISONED = 13  # on the second page of ten


def nested(depth):
    value = "bottom"
    for _ in range(depth):
        value = {"deeper": value}
    return value


def depth_of(value):
    depth = 0
    while isinstance(value, dict) and "deeper" in value:
        value, depth = value["deeper"], depth + 1
    return depth, value


# category -> (changes to the poisoned record, whether it is stored, check of the stored row or reason fragment)
CASES = {
    "nul": (
        {"name": "Ana\x00 Doe", "redFlagsDetails": {"note\x00": "a\x00b", "deep": ["x\x00"]}},
        True,
        lambda row: row.name == "Ana Doe" and row.red_flags_details == {"note": "ab", "deep": ["x"]},
    ),
    "int past int32": ({"redFlags": 2**40}, True, lambda row: row.red_flags == 2**40),
    "int past int64": ({"__v": 10**30}, False, "__v: integer outside the 64-bit range"),
    "year-1 date with offset": ({"createdAt": "0001-01-01T00:00:00+01:00"}, False, "createdAt: date out of range"),
    "500-deep JSON": (
        {"redFlagsDetails": nested(500)},
        True,
        # The payload itself is level 0, so redFlagsDetails keeps MAX_DEPTH - 1 levels below it.
        lambda row: depth_of(row.red_flags_details) == (MAX_DEPTH - 1, DEPTH_MARKER),
    ),
    "10 MB string": ({"notes": "n" * TEN_MB}, True, lambda row: len(row.notes) == TEN_MB),
    "10 MB string in an indexed column": (
        {"language": random_text(TEN_MB)},
        False,
        "refused by the database",
    ),
}


@pytest.mark.parametrize("category", list(CASES))
def test_a_bad_record_is_stored_or_rejected_alone_and_the_sync_goes_on(verifik, admin_client, category, settings):
    changes, stored, expectation = CASES[category]
    account = verifik(count=35)
    run_sync(details=False)
    bad_id = account.records[-1 - POISONED]["_id"]  # listed newest first: index 13 of the listing
    before = AppRegistration.objects.get(verifik_id=bad_id)
    account.update(bad_id, **changes)
    changed = [r["_id"] for r in account.records[:3] + account.records[-3:]]  # first and last pages
    for n, verifik_id in enumerate(changed):
        account.update(verifik_id, notes=f"changed upstream {n}", status="FAILED")

    run = run_sync(details=False)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED and run.pages >= 4
    row = AppRegistration.objects.get(verifik_id=bad_id)
    if stored:
        assert run.failed == 0 and run.updated == len(changed) + 1
        assert expectation(row)
    else:
        assert run.failed == 1 and run.updated == len(changed)
        assert [f["id"] for f in run.failures] == [bad_id] and expectation in run.failures[0]["reason"]
        assert (row.updated_at, row.version, row.listing_hash) == (
            before.updated_at,
            before.version,
            before.listing_hash,
        )
    for verifik_id in changed:
        assert AppRegistration.objects.get(verifik_id=verifik_id).notes.startswith("changed upstream")
    assert_mirrors(account, skip=[bad_id])

    again = run_sync(details=False)  # the next sync works, and tries a rejected record again
    assert again.outcome == SyncRun.Outcome.SUCCEEDED and again.failed == (0 if stored else 1)
    assert again.created == again.updated == 0

    for zone in ("UTC", "America/Bogota", "Pacific/Kiritimati"):
        settings.TIME_ZONE = zone
        listing = admin_client.get(reverse("admin:registrations_appregistration_changelist"))
        detail = admin_client.get(reverse("admin:registrations_appregistration_change", args=[row.pk]))
        runs_page = admin_client.get(reverse("admin:registrations_syncrun_change", args=[run.pk]))
        assert (listing.status_code, detail.status_code, runs_page.status_code) == (200, 200, 200)
    if not stored:
        assert bad_id in runs_page.content.decode()


def test_a_rejected_record_heals_on_the_next_sync_once_verifik_sends_a_storable_value(verifik):
    account = verifik(count=12)
    run_sync(details=False)
    verifik_id = account.records[4]["_id"]
    account.update(verifik_id, createdAt="0001-01-01T00:00:00+01:00", name="New name")
    assert run_sync(details=False).failed == 1
    account.update(verifik_id, createdAt="2025-02-01T00:00:00Z")
    healed = run_sync(details=False)
    assert (healed.failed, healed.updated) == (0, 1)
    assert AppRegistration.objects.get(verifik_id=verifik_id).name == "New name"


def test_boundary_dates_every_time_zone_can_show_are_stored_and_rendered(verifik, admin_client, settings):
    account = verifik(count=5)
    account.update(account.records[0]["_id"], createdAt="0001-01-02T00:00:00Z")
    account.update(account.records[1]["_id"], createdAt="9999-12-30T00:00:00Z")
    account.records[1]["updatedAt"] = "9999-12-30T00:00:00Z"
    run = run_sync(details=False)
    assert run.failed == 0 and AppRegistration.objects.count() == 5
    for zone in ("America/Bogota", "Pacific/Kiritimati"):
        settings.TIME_ZONE = zone
        for record in account.records[:2]:
            pk = AppRegistration.objects.get(verifik_id=record["_id"]).pk
            assert admin_client.get(reverse("admin:registrations_appregistration_change", args=[pk])).status_code == 200
        assert admin_client.get(reverse("admin:registrations_appregistration_changelist")).status_code == 200
        year = admin_client.get(reverse("admin:registrations_appregistration_changelist") + "?created_at__year=1")
        assert year.status_code == 200


def test_a_refresh_of_a_bad_record_fails_with_the_reason_and_keeps_the_stored_version(verifik):
    account = verifik(count=3)
    run_sync(details=False)
    verifik_id = account.records[0]["_id"]
    before = AppRegistration.objects.get(verifik_id=verifik_id)
    account.update(verifik_id, redFlags=2**70, name="Changed")
    with pytest.raises(SyncFailed, match="redFlags: integer outside the 64-bit range") as excinfo:
        refresh(verifik_id)
    assert excinfo.value.run.outcome == SyncRun.Outcome.FAILED
    after = AppRegistration.objects.get(verifik_id=verifik_id)
    assert (after.red_flags, after.name, after.updated_at) == (before.red_flags, before.name, before.updated_at)


def test_status_history_records_first_sight_and_changes_only(verifik):
    account = verifik(count=12)
    first = run_sync(details=False)
    assert StatusChange.objects.count() == 12
    assert set(StatusChange.objects.values_list("from_status", "sync_run_id").distinct()) == {(None, first.pk)}
    record = account.records[3]
    old_status = record["status"]
    account.update(record["_id"], status="FAILED" if old_status != "FAILED" else "COMPLETED")
    account.update(account.records[4]["_id"], notes="only the notes changed")
    second = run_sync(details=False)
    assert second.updated == 2
    change = StatusChange.objects.get(sync_run=second)
    assert (change.from_status, change.to_status) == (old_status, record["status"])
    assert change.registration.verifik_id == record["_id"]
    assert change.upstream_updated_at == AppRegistration.objects.get(verifik_id=record["_id"]).updated_at
    before = StatusChange.objects.count()
    assert run_sync(details=False).unchanged == 12 and StatusChange.objects.count() == before
