"""Helpers shared by the tests: mirror assertions and bounded polling."""

import random
import string
import time

import psycopg
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from registrations.mapping import parse_timestamp
from registrations.models import AppRegistration

DJANGO_FORCE_LOGIN = Client.force_login  # before tests/conftest.py wraps it


def assert_mirrors(account, skip=()):
    """Every upstream record (but those in `skip`) is stored once, field for field."""
    stored = {r.verifik_id: r for r in AppRegistration.objects.exclude(verifik_id__in=skip)}
    assert set(stored) == set(account.by_id) - set(skip)
    for record in (r for r in account.records if r["_id"] not in skip):
        row = stored[record["_id"]]
        assert row.removed_upstream_at is None
        assert (row.name, row.email, row.phone, row.country_code) == (
            record["name"],
            record["email"],
            record["phone"],
            record["countryCode"],
        )
        assert (row.status, row.current_step, row.language, row.notes) == (
            record["status"],
            record["currentStep"],
            record["language"],
            record["notes"],
        )
        assert (row.red_flags, row.red_flags_details, row.deleted, row.version) == (
            record["redFlags"],
            record["redFlagsDetails"],
            record["deleted"],
            record["__v"],
        )
        assert row.failed_document_validations == record["failedDocumentValidations"]
        assert row.failed_email_validations == record["failedEmailValidations"]
        assert row.created_at == parse_timestamp(record["createdAt"])
        assert row.updated_at == parse_timestamp(record["updatedAt"])
        assert row.project_id == record["project"] and row.signature_id == record["signature"]


def wait_until(predicate, timeout=30.0, what="the condition", interval=0.05):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def database_url(name=None):
    """A URL for the suite's own server (system or embedded), naming `name` or the test database."""
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{name or s['NAME']}"


def sync_lock_is_free():
    """Nobody holds the single-flight lock of listing syncs in this database (other checkouts may, in theirs)."""
    from registrations.sync import SYNC_LOCK_KEY

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.objid = %s AND d.datname = current_database()",
            [SYNC_LOCK_KEY],
        )
        return cursor.fetchone()[0] == 0


def staff(username, group=None):
    """A staff user with password "pw", in `group` when named (the groups come from the migrations)."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def verify_session(client, user):
    """Mark the client's session as having passed the second factor, as django_otp.login() does after
    the login form's code: the id of the user's confirmed authenticator (made if it has none) in it."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from access import devices

    device = devices.confirmed_authenticator(user)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=devices.AUTHENTICATOR_NAME, confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


def password_only_login(client, user):
    """A session that did not pass the second factor: Django's own force_login (tests/conftest.py
    makes the test client's pass it)."""
    DJANGO_FORCE_LOGIN(client, user)


def totp_code(device, offset=0):
    """A TOTP device's code `offset` seconds from now (a second login in one test: offset=30, codes are single-use)."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset
    return f"{totp.token():0{device.digits}d}"


def random_text(size):
    """Text that does not compress: an index entry cannot shrink it below Postgres' limit."""
    return "".join(random.Random(7).choices(string.ascii_letters, k=size))


def side_connection():
    """A psycopg connection of the test's own, outside Django's: to lock or terminate what the code under test uses."""
    return psycopg.connect(**connection.get_connection_params())
