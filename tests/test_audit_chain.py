"""The audit trail's hash chain and the two database roles, attacked as the table's owner and as the app.

The suite connects as the owner (the role that ran the migrations). The owner can disable the
trigger and rewrite rows; `verify_audit_trail` must then name the first event that no longer
follows. The application's role (`settings.DATABASE_APP_ROLE`) must do its ordinary work and
nothing more to the trail.
"""

import threading
from contextlib import contextmanager

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.urls import reverse

from registrations import audit, audit_chain, review
from registrations.models import AppRegistration, AuditAction, AuditEvent
from registrations.sync import run_sync
from tests.support import staff

TABLE = "registrations_auditevent"
TRIGGERS = ("registrations_auditevent_no_change", "registrations_auditevent_no_truncate")


def verify():
    """(exit code, what the command said), as an operator running it sees them."""
    from io import StringIO

    out = StringIO()
    try:
        call_command("verify_audit_trail", stdout=out)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


def as_owner_with_the_trigger_off(*statements):
    """What an owner can do: disable the append-only trigger, change the table, enable it again.
    A statement is SQL, or (SQL, parameters)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's own inserts leave no deferred check
        for trigger in TRIGGERS:
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {trigger}")
        for statement in statements:
            sql, params = (statement, None) if isinstance(statement, str) else statement
            cursor.execute(sql, params)
        for trigger in TRIGGERS:
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {trigger}")


@pytest.fixture
def trail(db):
    """Six chained events: single ones, a bulk action's, with actors, registrations, addresses and details."""
    user = staff("rita", "Registration reviewers")
    regs = [AppRegistration.objects.create(verifik_id=f"{n:024x}") for n in range(3)]
    audit.record(AuditAction.LOGIN, actor=user)
    audit.record(AuditAction.VIEW, actor=user, registration=regs[0])
    audit.record_each(AuditAction.REFRESH, [r.pk for r in regs], actor=user, details={"bulk": True, "run": None})
    audit.record(AuditAction.DECIDE, actor=user, registration=regs[1], details={"reason": "Blurry", "score": 0.5})
    return list(AuditEvent.objects.order_by("id").values_list("id", flat=True))


def test_an_intact_trail_verifies_with_its_count(trail):
    code, said = verify()
    assert code == 0 and f"intact: {len(trail)} events" in said, said


def test_an_empty_trail_verifies(db):
    code, said = verify()
    assert code == 0 and "intact: 0 events" in said


def test_each_event_is_chained_to_the_one_before_it(trail):
    hashes = list(AuditEvent.objects.order_by("id").values_list("chain_hash", flat=True))
    assert len({bytes(h) for h in hashes}) == len(hashes) and all(len(h) == 32 for h in hashes)


@pytest.mark.parametrize(
    "change, bad",
    [
        ('UPDATE {t} SET details = \'{{"reason": "Looked fine", "score": 0.5}}\' WHERE id = {e[5]}', 5),
        ("UPDATE {t} SET at = at - interval '1 day' WHERE id = {e[1]}", 1),  # back-dated
        ("UPDATE {t} SET actor_id = NULL WHERE id = {e[0]}", 0),
        ("UPDATE {t} SET ip = '10.9.9.9' WHERE id = {e[3]}", 3),
        ("UPDATE {t} SET details = details || '{{\"x\": 1}}', chain_hash = chain_hash WHERE id = {e[2]}", 2),
        ("DELETE FROM {t} WHERE id = {e[2]}", 3),  # the next event no longer follows
        ("DELETE FROM {t} WHERE id = {e[0]}", 1),  # the first: the next one does not start from genesis
    ],
    ids=["rewritten", "back-dated", "actor removed", "address changed", "hash kept", "deleted", "first deleted"],
)
def test_a_change_by_the_owner_with_the_trigger_disabled_is_named(trail, change, bad):
    as_owner_with_the_trigger_off(change.format(t=TABLE, e=trail))
    code, said = verify()
    assert code == 1 and f"event {trail[bad]} does not follow" in said, said


def test_the_last_event_deleted_is_seen_by_the_head(trail):
    as_owner_with_the_trigger_off(f"DELETE FROM {TABLE} WHERE id = {trail[-1]}")
    code, said = verify()
    assert code == 1 and f"event {trail[-1]} is missing" in said and f"ends at event {trail[-2]}" in said, said


def test_a_head_moved_back_over_a_cut_tail_is_seen(trail):
    """The owner deletes the last event and points the head at the one before, without the key for its MAC."""
    [(previous,)] = AuditEvent.objects.filter(pk=trail[-2]).values_list("chain_hash")
    as_owner_with_the_trigger_off(
        f"DELETE FROM {TABLE} WHERE id = {trail[-1]}",
        (
            "UPDATE registrations_auditchainhead SET events = events - 1, last_event_id = %s, last_hash = %s",
            [trail[-2], previous],
        ),
    )
    code, said = verify()
    assert code == 1 and "head was changed" in said, said


def test_an_event_inserted_in_the_middle_is_named(trail):
    """Into a gap of the ids (a rolled-back write leaves one), with another event's hash: the owner has no key."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{TABLE}', 'id'))")
        [gap] = cursor.fetchone()
    after = audit.record(AuditAction.SYNC).pk
    as_owner_with_the_trigger_off(
        (
            f"INSERT INTO {TABLE} (id, action, at, details, chain_hash) "
            f"SELECT %s, 'purge', at, '{{}}', chain_hash FROM {TABLE} WHERE id = {trail[-1]}",
            [gap],
        )
    )
    code, said = verify()
    assert code == 1 and f"event {gap} does not follow" in said and after > gap, said


def test_an_event_written_past_the_chain_is_named(trail):
    """The ORM's own create and bulk_create, or a plain INSERT, write no link: verify names the first such event,
    and the chain's own events after it still verify."""
    forged = AuditEvent.objects.create(action=AuditAction.SYNC)
    AuditEvent.objects.bulk_create([AuditEvent(action=AuditAction.VIEW)])
    audit.record(AuditAction.LOGIN)
    code, said = verify()
    assert code == 1 and f"event {forged.pk} does not follow" in said and "2 event(s)" in said, said


def test_a_reorder_is_named(trail):
    """Two events swap places (ids), each keeping its own hash."""
    a, b = trail[1], trail[4]
    as_owner_with_the_trigger_off(
        f"UPDATE {TABLE} SET id = -1 WHERE id = {a}",
        f"UPDATE {TABLE} SET id = {a} WHERE id = {b}",
        f"UPDATE {TABLE} SET id = {b} WHERE id = -1",
    )
    code, said = verify()
    assert code == 1 and f"event {a} does not follow" in said, said


def test_a_truncate_and_refill_is_named(trail):
    """The owner empties the table and writes a trail of their own from genesis, with a key they guessed."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {audit_chain.MESSAGE_SQL} FROM {TABLE} ORDER BY id")
        rows = cursor.fetchall()
    previous, forged = audit_chain.GENESIS, []
    for pk, text in rows:
        text = text.replace("Blurry", "Looked fine")
        previous = audit_chain.link(b"a key the owner guessed", previous, text)
        forged.append((pk, previous))
    statements = [f"CREATE TEMP TABLE copy AS SELECT * FROM {TABLE}", f"TRUNCATE {TABLE}"]
    statements += [
        f"INSERT INTO {TABLE} SELECT * FROM copy",
        "UPDATE registrations_auditevent t SET details = replace(t.details::text, 'Blurry', 'Looked fine')::jsonb, "
        "chain_hash = v.h FROM unnest(%s::bigint[], %s::bytea[]) AS v(id, h) WHERE t.id = v.id",
        "UPDATE registrations_auditchainhead SET last_hash = %s",
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for trigger in TRIGGERS:
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {trigger}")
        for sql in statements[:3]:
            cursor.execute(sql)
        cursor.execute(statements[3], [[pk for pk, _ in forged], [h for _, h in forged]])
        cursor.execute(statements[4], [previous])
        for trigger in TRIGGERS:
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {trigger}")
    assert AuditEvent.objects.filter(details__reason="Looked fine").exists()
    code, said = verify()
    assert code == 1 and f"event {trail[0]} does not follow" in said and "6 event(s)" in said, said


def test_a_trail_written_with_another_key_does_not_verify(trail, settings):
    settings.AUDIT_CHAIN_KEY = "not-the-key-it-was-written-with"
    code, said = verify()
    assert code == 1 and f"event {trail[0]} does not follow" in said


# --- concurrent writers -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_do_not_fork_the_chain():
    """Writers on their own connections, started together, single and bulk: one chain, in id order."""
    user = staff("rita")
    reg = AppRegistration.objects.create(verifik_id="b" * 24)
    start, errors = threading.Barrier(4), []

    def write(n):
        try:
            start.wait(timeout=30)
            for i in range(15):
                if i % 5 == 4:
                    audit.record_each(AuditAction.REFRESH, [reg.pk, reg.pk], actor=user)
                else:
                    with transaction.atomic():  # inside an action's transaction, as the review desk calls it
                        audit.record(AuditAction.VIEW, actor=user, registration=reg, details={"writer": n})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    assert AuditEvent.objects.count() == 4 * (12 + 3 * 2)
    code, said = verify()
    assert code == 0 and f"intact: {4 * 18} events" in said, said


# --- the application's role --------------------------------------------------------------------


def app_role_url():
    s = connection.settings_dict
    role, password = settings.DATABASE_APP_ROLE, settings.TEST_APP_ROLE_PASSWORD
    return f"postgres://{role}:{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@contextmanager
def django_as_the_app_role():
    """The default connection reconnected as the application's role, as the web, workers and beat connect."""
    conn = connections["default"]
    saved = conn.settings_dict["USER"], conn.settings_dict["PASSWORD"]
    conn.close()
    conn.settings_dict["USER"], conn.settings_dict["PASSWORD"] = (
        settings.DATABASE_APP_ROLE,
        settings.TEST_APP_ROLE_PASSWORD,
    )
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict["USER"], conn.settings_dict["PASSWORD"] = saved


def test_the_app_role_is_not_the_owner_and_owns_no_table(db):
    with psycopg.connect(app_role_url()) as app:
        assert app.execute("SELECT current_user").fetchone()[0] == settings.DATABASE_APP_ROLE
        owned = app.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = current_user AND c.relnamespace = 'public'::regnamespace"
        ).fetchone()[0]
        privileges = app.execute(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE table_name = %s AND grantee = current_user ORDER BY 1",
            [TABLE],
        ).fetchall()
    assert owned == 0
    assert [p for (p,) in privileges] == ["INSERT", "SELECT"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "attack",
    [
        f"UPDATE {TABLE} SET details = '{{}}'",
        f"UPDATE {TABLE} SET details = '{{}}' WHERE false",
        f"DELETE FROM {TABLE}",
        f"TRUNCATE {TABLE}",
        f"TRUNCATE {TABLE} CASCADE",
        f"ALTER TABLE {TABLE} DISABLE TRIGGER ALL",
        f"ALTER TABLE {TABLE} DISABLE TRIGGER registrations_auditevent_no_change",
        f"ALTER TABLE {TABLE} ALTER COLUMN details TYPE jsonb USING '{{}}'::jsonb",
        f"ALTER TABLE {TABLE} DROP CONSTRAINT audit_chain_hash_length",
        f"DROP TRIGGER registrations_auditevent_no_change ON {TABLE}",
        "CREATE OR REPLACE FUNCTION registrations_auditevent_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "DELETE FROM registrations_auditchainhead",
    ],
)
def test_the_app_role_cannot_change_the_trail(attack):
    audit.record(AuditAction.SYNC, details={"run": 1})
    for options in ("", "-c verifik.allow_audit_truncate=on"):  # the setting that once opened TRUNCATE
        with psycopg.connect(app_role_url(), autocommit=True, options=options or None) as app:
            app.execute("SET verifik.allow_audit_truncate = on")  # any session may set a custom setting ...
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # ... and it opens nothing
                app.execute(attack)
    assert list(AuditEvent.objects.values_list("details", flat=True)) == [{"run": 1}]
    assert verify()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_the_apps_ordinary_work_runs_as_the_app_role(verifik, client):
    """A sync, a page view, a decision, an assignment, a comment, a bulk refresh, a login: each writes what it
    writes, as the role the processes use, and the chain holds."""
    verifik(count=12)
    user = User.objects.create_superuser("root", password="pw")  # a transactional test: no groups
    with django_as_the_app_role():
        assert connection.cursor().connection.info.user == settings.DATABASE_APP_ROLE
        run = run_sync(details=True)
        assert run.outcome == "succeeded", run.error
        obj = AppRegistration.objects.order_by("pk").first()
        client.force_login(user)
        page = reverse("admin:registrations_appregistration_change", args=[obj.pk])
        assert client.get(page).status_code == 200
        review.decide(obj, user, "rejected", "Blurry document")
        review.assign(obj, user, user)
        review.comment(obj, user, "Asked for a new photo")
        audit.record_each(AuditAction.REFRESH, list(AppRegistration.objects.values_list("pk", flat=True)[:3]))
        assert verify()[0] == 0
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"login", "view", "decide", "assign", "comment", "refresh"} <= actions
    assert AppRegistration.objects.count() == 12


# --- one role for both: check --deploy says so -------------------------------------------------------


def test_check_deploy_warns_when_one_role_owns_the_schema_and_runs_the_app(settings):
    settings.DATABASE_OWNER_URL = ""
    warnings = [m.id for m in run_checks(include_deployment_checks=True)]
    assert "registrations.W020" in warnings
