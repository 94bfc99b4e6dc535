"""The dashboard's "Where registrations stop": STARTED and ONGOING registrations counted by current
step, read from an index instead of a sequential scan of the registrations table (~300 ms at 1M).

Partial, so it holds only the registrations that are still in progress; like 0009's indexes on
mirror tables it lives beside the review desk's queries it serves.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("registrations", "0009_review_permission_and_indexes")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS review_stopped_step_idx ON registrations_appregistration "
            "(current_step) WHERE status IN ('STARTED', 'ONGOING')",
            "DROP INDEX IF EXISTS review_stopped_step_idx",
        ),
    ]
