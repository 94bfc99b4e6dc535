"""Trigram indexes behind the admin's search.

The admin's `icontains` compiles to `UPPER(col) LIKE UPPER('%term%')`, so each
index is on UPPER(col). pg_trgm must be installable by the migrating role (or
created beforehand by a superuser).
"""

from django.db import migrations

COLUMNS = ["name", "email", "phone", "notes"]
TABLE = "registrations_appregistration"


def create(apps, schema_editor):
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS reg_{column}_trgm_idx ON {TABLE} USING gin (UPPER({column}) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS reg_{column}_trgm_idx")


class Migration(migrations.Migration):
    dependencies = [("registrations", "0002_review_groups")]

    operations = [migrations.RunPython(create, drop)]
