"""Statistics on a registration's first sight, the key the review queue's oldest leg is walked by.

`review_first_sight_idx` orders undecided registrations by COALESCE(first_synced_at, created_at),
but it is a partial index, and Postgres reads an expression's statistics only from a full index
or from extended statistics: without them every range on that key is estimated at a third of
the table, so the overdue count and the recent end of the queue were planned as bitmaps of every
entry and hashes of every review state (docs/DESIGN.md, "Review desk speed"). ANALYZE (autovacuum
or the bench) fills them; the statement itself only declares them and costs nothing.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("registrations", "0014_admin_speed")]

    operations = [
        migrations.RunSQL(
            "CREATE STATISTICS IF NOT EXISTS review_first_sight_stats "
            "ON (COALESCE(first_synced_at, created_at)) FROM registrations_appregistration",
            "DROP STATISTICS IF EXISTS review_first_sight_stats",
        ),
    ]
