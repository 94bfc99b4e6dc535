"""The audit trail's hash chain, its head, no way past the trigger, and the application role's grants.

- `chain_hash` on every event (registrations/audit_chain.py): the events already stored are
  chained here, in id order, by the owner running this migration (the UPDATE needs the
  trigger disabled for this transaction; it is enabled again before the commit). An event
  written later past the chain's writer has none, and `verify_audit_trail` names it.
- `AuditChainHead`, the one row writers lock to append, holding the count, the last event's id
  and hash, and an HMAC over them.
- The trigger function no longer lets a session that sets `verifik.allow_audit_truncate`
  TRUNCATE: UPDATE, DELETE and TRUNCATE are refused to every session. Only the owner can
  disable the trigger, and the chain shows what it then changed.
- `registrations_audit_reserve()`: the chain writer's first step (registrations/audit_chain.py).
- `registrations_analyze_sync_seen()`: the sync's ANALYZE of its scratch table, with the owner's rights.
- The application role (DATABASE_URL's, when DATABASE_OWNER_URL names another) gets SELECT and
  INSERT on the audit table, and what it needs elsewhere (registrations/db_roles.py; the same
  grants are made again after every migrate).
"""

from django.conf import settings
from django.db import migrations, models

from registrations import audit_chain, db_roles

TABLE = "registrations_auditevent"

REFUSE = """
CREATE OR REPLACE FUNCTION registrations_auditevent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'Audit events are append-only: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING HINT = 'The audit trail keeps every event; nothing may change or delete one.';
END
$$;
"""

# The chain's writer in one round trip, in this order: lock the head, then take the ids (so id order is chain
# order), and the details and addresses as Postgres prints them back (the text the chain hashes).
RESERVE = """
CREATE OR REPLACE FUNCTION registrations_audit_reserve(
    n integer, details text[], ips text[],
    OUT events bigint, OUT last_hash bytea, OUT ids bigint[], OUT texts text[], OUT hosts text[]
) LANGUAGE plpgsql AS $$
BEGIN
    SELECT h.events, h.last_hash INTO events, last_hash
        FROM registrations_auditchainhead h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- no head yet: the caller creates it at genesis and asks again
    END IF;
    ids := ARRAY(SELECT nextval(pg_get_serial_sequence('registrations_auditevent', 'id')) FROM generate_series(1, n));
    texts := ARRAY(SELECT d::jsonb::text FROM unnest(details) WITH ORDINALITY AS u(d, k) ORDER BY k);
    hosts := ARRAY(SELECT host(i::inet) FROM unnest(ips) WITH ORDINALITY AS u(i, k) ORDER BY k);
END
$$;
"""

# The sync ANALYZEs its scratch table of seen ids (sync/seen.py); Postgres lets only the owner do that, so
# the owner provides it to the application's role as a function that runs with the owner's rights.
ANALYZE_SEEN = """
CREATE OR REPLACE FUNCTION registrations_analyze_sync_seen() RETURNS void LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS 'ANALYZE public.registrations_sync_seen';
"""

BATCH = 10_000


def chain_existing(apps, schema_editor):
    """Add the column and chain the events already stored, oldest id first."""
    connection = schema_editor.connection
    secret = settings.AUDIT_CHAIN_KEY.encode()
    previous, count, last = audit_chain.GENESIS, 0, None
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN chain_hash bytea NULL")
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER registrations_auditevent_no_change")
        with connection.connection.cursor(name="chain_existing") as rows:
            rows.itersize = BATCH
            rows.execute(f"SELECT id, {audit_chain.MESSAGE_SQL} FROM {TABLE} ORDER BY id")  # noqa: S608
            batch = []
            for pk, text in rows:
                previous = audit_chain.link(secret, previous, text)
                batch.append((pk, previous))
                count, last = count + 1, pk
                if len(batch) == BATCH:
                    _store(cursor, batch)
                    batch = []
            _store(cursor, batch)
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER registrations_auditevent_no_change")
        cursor.execute(
            "INSERT INTO registrations_auditchainhead (id, events, last_event_id, last_hash, mac) "
            "VALUES (%s, %s, %s, %s, %s)",
            [audit_chain.HEAD_ID, count, last, previous, audit_chain.head_mac(secret, count, last, previous)],
        )


def _store(cursor, batch):
    if batch:
        cursor.execute(
            f"UPDATE {TABLE} SET chain_hash = v.h FROM unnest(%s::bigint[], %s::bytea[]) AS v(id, h) "  # noqa: S608
            f"WHERE {TABLE}.id = v.id",
            [[pk for pk, _ in batch], [h for _, h in batch]],
        )


def unchain(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DROP COLUMN chain_hash")
        cursor.execute("DELETE FROM registrations_auditchainhead")


def grant(apps, schema_editor):
    db_roles.grant_app_role(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("registrations", "0016_fewer_write_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("events", models.BigIntegerField(default=0)),
                ("last_event_id", models.BigIntegerField(null=True)),
                ("last_hash", models.BinaryField(max_length=32)),
                ("mac", models.BinaryField(max_length=32)),
            ],
            options={"verbose_name": "audit chain head", "default_permissions": ()},
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="auditevent",
                    name="chain_hash",
                    field=models.BinaryField(
                        editable=False,
                        help_text="HMAC of the previous event's chain hash and this event's fields "
                        "(registrations.audit_chain).",
                        max_length=32,
                        null=True,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(chain_existing, unchain)],
        ),
        migrations.RunSQL(REFUSE, migrations.RunSQL.noop),
        migrations.RunSQL(
            RESERVE, "DROP FUNCTION IF EXISTS registrations_audit_reserve(integer, text[], text[])"
        ),
        migrations.RunSQL(ANALYZE_SEEN, "DROP FUNCTION IF EXISTS registrations_analyze_sync_seen()"),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
