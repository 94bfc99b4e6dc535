"""Reviewers may decide, assign and comment; indexes that let the review queue be walked in waiting order.

The permission (`registrations.decide_appregistration`, declared by the ReviewQueue proxy) goes to
the reviewers; operators keep refresh and do not get it. The two indexes on mirror tables serve only the review queue, so they
live here, beside it, rather than in the mirror's models:
- status moves (not first sights, not step-only changes) by when the sync saw them;
- registrations that may need a person, by first sight.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

DECIDE = ("decide_appregistration",)
REVIEWERS = "Registration reviewers"


def grant(apps, schema_editor):
    app_config = apps.get_app_config("registrations")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.get(content_type__app_label="registrations", codename=DECIDE[0])
    group, _ = apps.get_model("auth", "Group").objects.get_or_create(name=REVIEWERS)
    group.permissions.add(permission)


def revoke(apps, schema_editor):
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="registrations", codename=DECIDE[0]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("registrations", "0008_review_desk")]

    operations = [
        migrations.RunPython(grant, revoke),
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS review_status_moves_idx ON registrations_statuschange (observed_at, id) "
            # The predicate is the SQL Django writes for queue.MOVE_Q, so Postgres can prove the index applies.
            'WHERE ("from_status" IS NOT NULL AND NOT ("to_status" = ("from_status") '
            'AND "to_status" IS NOT NULL AND "from_status" IS NOT NULL))',
            "DROP INDEX IF EXISTS review_status_moves_idx",
        ),
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS review_first_sight_idx ON registrations_appregistration "
            "((COALESCE(first_synced_at, created_at)), id) WHERE status = 'NEEDS_MANUAL_VERIFICATION' "
            "OR red_flags >= 1 OR failed_biometric_count > 0 OR failed_document_count > 0",
            "DROP INDEX IF EXISTS review_first_sight_idx",
        ),
    ]
