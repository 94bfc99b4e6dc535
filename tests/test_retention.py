"""Retention: the daily purge of registrations removed upstream, erase_registration, and what a sync does after."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from registrations import review, tasks
from registrations.models import AppRegistration, AuditEvent, ReviewDecision, StatusChange
from registrations.sync import purge_removed, run_sync

from .support import database_url, staff

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
PERSONAL = ("name", "email", "phone", "country_code", "notes", "red_flags_details", "failed_email_validations")


@pytest.fixture
def account(verifik):
    account = verifik(count=20)
    run_sync(details=True)
    return account


def removed(account, verifik_id, days_ago):
    """Remove it upstream, let a full sync see that, and date the removal `days_ago` days back."""
    account.remove(verifik_id)
    run_sync(details=False)
    when = timezone.now() - timedelta(days=days_ago)
    AppRegistration.objects.filter(verifik_id=verifik_id).update(removed_upstream_at=when)  # the test's clock
    return AppRegistration.objects.get(verifik_id=verifik_id)


def assert_erased(row):
    row.refresh_from_db()
    assert row.erased_at is not None
    assert all(getattr(row, name) is None for name in PERSONAL), {n: getattr(row, n) for n in PERSONAL}
    assert (row.raw, row.populated) == ({}, {})


def test_the_daily_purge_erases_old_removals_and_keeps_the_rest(account, settings):
    settings.VERIFIK_PURGE_REMOVED_AFTER_DAYS = 30
    records = account.records
    old, older = (removed(account, records[i]["_id"], days) for i, days in ((2, 31), (3, 400)))
    recent = removed(account, records[4]["_id"], 29)
    live = AppRegistration.objects.get(verifik_id=records[5]["_id"])
    reviewer = staff("rita", "Registration reviewers")
    decision = review.decide(old, reviewer, "rejected", "Forged document").decision
    kept = {r.pk: (r.verifik_id, r.status, r.created_at, r.updated_at, r.red_flags) for r in (old, older)}
    assert old.name and old.email and old.raw

    assert tasks.purge_removed_registrations.delay().get() == {"erased": 2, "more": False}

    for row in (old, older):
        assert_erased(row)
        assert (row.verifik_id, row.status, row.created_at, row.updated_at, row.red_flags) == kept[row.pk]
        assert row.removed_upstream_at is not None and StatusChange.objects.filter(registration=row).exists()
    assert ReviewDecision.objects.get() == decision and decision.reason == "Forged document"
    assert AuditEvent.objects.filter(action="decide", registration=old).exists(), "the audit trail stays"
    for row in (recent, live):
        before = (row.name, row.email, row.raw)
        row.refresh_from_db()
        assert row.erased_at is None and (row.name, row.email, row.raw) == before and row.name
    purges = AuditEvent.objects.filter(action="purge")
    assert sorted(e.registration_id for e in purges) == sorted([old.pk, older.pk])
    assert all(e.actor is None and "30 days" in e.details["reason"] for e in purges)
    assert tasks.purge_removed_registrations.delay().get() == {"erased": 0, "more": False}, "erased once"


def test_no_purge_while_retention_is_off(account, settings):
    settings.VERIFIK_PURGE_REMOVED_AFTER_DAYS = 0
    row = removed(account, account.records[2]["_id"], 5000)
    assert tasks.purge_removed_registrations.delay().get() == {"erased": 0, "more": False}
    row.refresh_from_db()
    assert row.erased_at is None and row.name and not AuditEvent.objects.filter(action="purge").exists()


def test_the_purge_works_in_batches_and_stops_at_its_budget(account):
    rows = [removed(account, r["_id"], 90) for r in list(account.records[:5])]
    first = purge_removed(30, batch_size=2, time_budget=0)
    assert first.erased == 2 and first.more
    rest = purge_removed(30, batch_size=2)
    assert rest.erased == 3 and not rest.more
    for row in rows:
        assert_erased(row)
    assert AuditEvent.objects.filter(action="purge").count() == 5


def test_the_purge_is_on_the_beat_schedule():
    schedule = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert "registrations.tasks.purge_removed_registrations" in schedule


def test_erasure_scrubs_the_persons_values_from_decision_reasons_and_comments(account):
    """Both paths (the daily purge and a data-subject request); another registration's texts stay as written."""
    rita = staff("rita", "Registration reviewers")
    purged = removed(account, account.records[7]["_id"], 90)
    requested = AppRegistration.objects.exclude(pk=purged.pk).exclude(name__contains="<").exclude(email=None).first()
    bystander = AppRegistration.objects.exclude(pk__in=[purged.pk, requested.pk]).exclude(email=None).first()
    written = {}
    for row in (purged, requested, bystander):
        first_word = row.name.split()[0]
        reason = f"{row.name} sent a blurry ID; {first_word.upper()} confirmed by phone {row.phone}"
        decision = review.decide(row, rita, "escalated", reason).decision
        comment = review.comment(row, rita, f"Wrote to {row.email}, document 1023456789; see the first photo")
        written[row.pk] = (row.name, row.email, row.phone, first_word, decision, comment)

    purge_removed(30)
    call_command("erase_registration", requested.verifik_id, reason="Data-subject request DSR-204")

    for row in (purged, requested):
        name, email, phone, first_word, decision, comment = written[row.pk]
        decision.refresh_from_db()
        comment.refresh_from_db()
        texts = decision.reason + " | " + comment.text
        for value in (name, email, phone, first_word, first_word.upper(), "1023456789"):
            assert value not in texts, (value, texts)
        assert "blurry ID" in decision.reason and "see the first photo" in comment.text  # the reviewer's words stay
    name, email, _, _, decision, comment = written[bystander.pk]
    decision.refresh_from_db()
    comment.refresh_from_db()
    assert name in decision.reason and email in comment.text


# --- erase_registration ---------------------------------------------------------------------------


def test_erase_registration_erases_one_now_with_the_reason(account, capsys):
    row = removed(account, account.records[6]["_id"], 1)
    other = AppRegistration.objects.exclude(pk=row.pk).first()
    call_command("erase_registration", row.verifik_id, reason="Data-subject request DSR-118")
    assert_erased(row)
    assert "Erased" in capsys.readouterr().out
    [event] = AuditEvent.objects.filter(action="purge")
    assert (event.registration, event.actor) == (row, None)
    assert event.details["reason"] == "Data-subject request DSR-118"
    other.refresh_from_db()
    assert other.erased_at is None and other.name


def test_erase_registration_records_the_staff_user_and_takes_the_admin_number(account):
    row = AppRegistration.objects.first()
    user = staff("dpo")
    call_command("erase_registration", str(row.pk), reason="DSR-7", actor="dpo")
    assert_erased(row)
    assert AuditEvent.objects.get(action="purge").actor == user


@pytest.mark.parametrize(
    "args, message",
    [
        (["{id}"], "--reason"),
        (["{id}", "--reason", "   "], "--reason must say why"),
        (["ffffffffffffffffffffffff", "--reason", "DSR-1"], "No registration with id"),
        (["not-an-id'; DROP TABLE x", "--reason", "DSR-1"], "is not a registration id"),
        (["{id}", "--reason", "DSR-1", "--actor", "ghost"], "No user named"),
    ],
)
def test_erase_registration_refuses_clearly_and_changes_nothing(account, args, message):
    row = AppRegistration.objects.first()
    with pytest.raises(CommandError, match=message):
        call_command("erase_registration", *[a.format(id=row.verifik_id) for a in args])
    row.refresh_from_db()
    assert row.erased_at is None and row.name and not AuditEvent.objects.filter(action="purge").exists()


def test_erase_registration_exits_1_on_an_unknown_id():
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "verifik_admin.test_settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "erase_registration", "ffffffffffffffffffffffff", "--reason", "DSR-1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "No registration with id ffffffffffffffffffffffff" in result.stderr


# --- after erasing: what a sync does ------------------------------------------------------------


def test_an_erased_registration_verifik_still_has_is_stored_whole_again(account, capsys):
    record = account.records[7]
    row = AppRegistration.objects.get(verifik_id=record["_id"])
    call_command("erase_registration", row.verifik_id, reason="DSR-9")
    assert "Verifik still lists this registration" in capsys.readouterr().out
    run_sync(details=True)  # the same version as before: the fingerprint must not skip it
    row.refresh_from_db()
    assert row.erased_at is None and row.removed_upstream_at is None
    assert (row.name, row.email, row.phone) == (record["name"], record["email"], record["phone"])
    assert row.raw and row.populated, "the detail endpoint filled the payload again"


def test_an_erased_removed_registration_stays_erased_and_is_live_again_if_it_returns(account, settings):
    settings.VERIFIK_PURGE_REMOVED_AFTER_DAYS = 30
    record = account.records[8]
    row = removed(account, record["_id"], 60)
    purge_removed()
    run_sync(details=True)
    assert_erased(row)
    account.records.append(record)  # Verifik lists it again
    account._reindex()
    run_sync(details=True)
    row.refresh_from_db()
    assert row.erased_at is None and row.removed_upstream_at is None and row.name == record["name"]


def test_the_admin_marks_erased_registrations(client, account):
    row = AppRegistration.objects.first()
    call_command("erase_registration", row.verifik_id, reason="DSR-3")
    client.force_login(staff("rita", "Registration reviewers"))
    html = client.get(reverse("admin:registrations_appregistration_change", args=[row.pk])).content.decode()
    assert "Erased" in html
    listing = client.get(reverse("admin:registrations_appregistration_changelist")).content.decode()
    assert "Personal data erased" in listing
