"""The application's database role: what the owner (who runs `migrate`) grants it.

The web, workers and beat connect as DATABASE_URL's role, which owns no table: it reads and
writes the tables it works on, and may only SELECT and INSERT audit events, so it can neither
change the trail nor disable its trigger or alter its columns (only an owner can). The owner
(DATABASE_OWNER_URL) grants this after every `migrate` (the post_migrate receiver below, and
migration 0017), and sets default privileges, so tables a later migration creates are granted
too. With one role for both (DATABASE_OWNER_URL unset) there is nothing to grant.
"""

from django.conf import settings
from django.db import connections

AUDIT_TABLE = "registrations_auditevent"
HEAD_TABLE = "registrations_auditchainhead"
# Tables the product empties with TRUNCATE (the sync's scratch table of seen ids).
TRUNCATED_TABLES = ["registrations_sync_seen"]


def grant_app_role(connection, role=None):
    """Grant `role` (the settings' application role) what it needs on `connection`'s schema; idempotent."""
    role = role or settings.DATABASE_APP_ROLE
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_schema()")
        owner, schema = cursor.fetchone()
        if not role or role == owner:
            return False
        # A migrate to an earlier migration may not have created every table yet.
        cursor.execute(
            "SELECT array_agg(relname) FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
            "AND relname = ANY(%s)",
            [[AUDIT_TABLE, HEAD_TABLE, *TRUNCATED_TABLES]],
        )
        present = set(cursor.fetchone()[0] or ())
        q = connection.ops.quote_name
        role, schema = q(role), q(schema)
        statements = [
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
            *[f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {AUDIT_TABLE} FROM {role}"][
                : AUDIT_TABLE in present
            ],
            *[f"REVOKE DELETE, TRUNCATE, REFERENCES, TRIGGER ON {HEAD_TABLE} FROM {role}"][: HEAD_TABLE in present],
            *(f"GRANT TRUNCATE ON {table} TO {role}" for table in TRUNCATED_TABLES if table in present),
            # Tables and sequences this owner creates later (a new migration) are granted as they appear.
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
        ]
        cursor.execute("; ".join(statements))
    return True


def grant_after_migrate(sender, using, **kwargs):
    """post_migrate, once per migrate (sent for each app: registrations' is enough), on the migrating alias."""
    if sender.name == "registrations":
        grant_app_role(connections[using])
