"""The review queue's count without the table, and statistics on the key its oldest leg is walked by.

- `review_in_scope_idx`: registrations that may need a person (a reason from Verifik, with red flags
  from 1 so any threshold setting >= 1 can use it) and are reviewable (not expired, deleted or removed
  upstream), by id, carrying the columns the queue's conditions read. The capped queue count walks it
  index-only in id order beside ReviewState's primary key: at 1M, 6.5 ms where walking the table's
  primary key and filtering 50,000 rows took 22 ms. The predicate is the SQL Django writes for
  `queue.reasons_q()`/`reviewable_q()`, so Postgres can prove the index applies.
- `review_first_sight_stats`: `review_first_sight_idx` orders undecided registrations by
  COALESCE(first_synced_at, created_at), but Postgres reads an expression's statistics only from a
  full index or from extended statistics: without them every range on that key is estimated at a third
  of the table, and the recent end of the queue was planned as a bitmap of every entry and a hash of
  every review state (docs/DESIGN.md, "Review desk speed"). ANALYZE (autovacuum, the bench) fills them.
"""

from django.db import migrations

IN_SCOPE = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS review_in_scope_idx ON registrations_appregistration (id) "
    "INCLUDE (status, red_flags, failed_biometric_count, failed_document_count, updated_at) "
    'WHERE ("status" = \'NEEDS_MANUAL_VERIFICATION\' OR "red_flags" >= 1 OR "failed_biometric_count" > 0 '
    'OR "failed_document_count" > 0) '
    'AND NOT ("status" = \'EXPIRED\' AND "status" IS NOT NULL) '
    'AND NOT ("deleted" AND "deleted" IS NOT NULL) AND "removed_upstream_at" IS NULL'
)


class Migration(migrations.Migration):
    # Built without locking out the sync's writes on a large table.
    atomic = False

    dependencies = [("registrations", "0014_admin_speed")]

    operations = [
        migrations.RunSQL(IN_SCOPE, "DROP INDEX CONCURRENTLY IF EXISTS review_in_scope_idx"),
        migrations.RunSQL(
            "CREATE STATISTICS IF NOT EXISTS review_first_sight_stats "
            "ON (COALESCE(first_synced_at, created_at)) FROM registrations_appregistration",
            "DROP STATISTICS IF EXISTS review_first_sight_stats",
        ),
    ]
