"""The audit trail: one event per action, append-only down to the database, a read-only admin, the timeline."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from registrations import audit
from registrations.models import AppendOnly, AppRegistration, AuditAction, AuditEvent
from tests.support import staff

pytestmark = pytest.mark.django_db


def registration(verifik_id="a" * 24, **fields):
    return AppRegistration.objects.create(verifik_id=verifik_id, **fields)


def test_record_stores_actor_action_registration_ip_and_details():
    user = staff("ana")
    reg = registration()
    request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.7")
    request.user = user
    event = audit.record("view", registration=reg, request=request, details={"reason": "check"})
    stored = AuditEvent.objects.get()
    assert stored == event
    assert (stored.actor, stored.action, stored.registration, stored.ip) == (user, "view", reg, "198.51.100.7")
    assert stored.details == {"reason": "check"}


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError):
        audit.record("delete_everything")
    assert not AuditEvent.objects.exists()


def test_details_never_keep_secrets(settings):
    event = audit.record(
        AuditAction.EXPORT,
        details={
            "password": "hunter2",
            "nested": {"api_token": "x", "otp_token": "123456", "filter": "q=1"},
            "query": f"status=FAILED&t={settings.VERIFIK_API_TOKEN}",
            "big": "x" * 100_000,
        },
    )
    event.refresh_from_db()
    text = str(event.details)
    assert "hunter2" not in text and "123456" not in text and settings.VERIFIK_API_TOKEN not in text
    assert event.details["nested"]["filter"] == "q=1"
    assert len(event.details["big"]) <= audit.MAX_STRING + 1


@pytest.mark.parametrize("behind_proxy, expected", [(False, "10.0.0.1"), (True, "203.0.113.9")])
def test_ip_comes_from_x_forwarded_for_only_behind_the_proxy(settings, behind_proxy, expected):
    settings.DJANGO_BEHIND_PROXY = behind_proxy
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    assert audit.record("login_failed", request=request).ip == expected


def test_a_forged_address_is_not_stored(settings):
    settings.DJANGO_BEHIND_PROXY = True
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="<script>")
    assert audit.record("login_failed", request=request).ip == "10.0.0.1"


def test_the_model_refuses_updates_and_deletes():
    event = audit.record("sync")
    event.details = {"changed": True}
    with pytest.raises(AppendOnly):
        event.save()
    with pytest.raises(AppendOnly):
        event.delete()
    with pytest.raises(AppendOnly):
        AuditEvent.objects.all().update(action="view")
    with pytest.raises(AppendOnly):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().details == {}


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE registrations_auditevent SET action = 'view'",
        "DELETE FROM registrations_auditevent",
        "UPDATE registrations_auditevent SET details = '{}' WHERE false",
    ],
)
def test_the_database_refuses_update_and_delete(sql):
    audit.record("sync")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert AuditEvent.objects.get().action == "sync"


def test_the_database_refuses_truncate_without_the_maintenance_setting():
    audit.record("sync")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred foreign-key check left to block TRUNCATE
        cursor.execute("SET LOCAL verifik.allow_audit_truncate = off")
        cursor.execute("TRUNCATE registrations_auditevent CASCADE")
    assert AuditEvent.objects.count() == 1
