"""Who sees personal data: `view_pii` and `export_appregistration`, the reviewers' grants, the analysts' group.

Reviewers get both (they decide, so they see what they decide on). The new
"Registration analysts" read registrations, sync runs and the dashboard (which
needs view_appregistration) masked, and may export: an export is masked for them
as the list is, so it shows nothing the list does not. Operators keep what they had.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEWERS = "Registration reviewers"
ANALYSTS = "Registration analysts"
REVIEWER_GRANTS = ["view_pii", "export_appregistration"]
ANALYST_GRANTS = ["view_appregistration", "view_syncrun", "export_appregistration"]


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations; the groups need them now.
    app_config = apps.get_app_config("registrations")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def permissions(codenames):
        found = Permission.objects.filter(content_type__app_label="registrations", codename__in=codenames)
        assert found.count() == len(codenames), f"missing permissions among {codenames}"
        return found

    reviewers, _ = Group.objects.get_or_create(name=REVIEWERS)
    reviewers.permissions.add(*permissions(REVIEWER_GRANTS))
    analysts, _ = Group.objects.get_or_create(name=ANALYSTS)
    analysts.permissions.add(*permissions(ANALYST_GRANTS))


def revoke(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=ANALYSTS).delete()
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="registrations", codename__in=REVIEWER_GRANTS
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("registrations", "0011_audit")]

    operations = [
        migrations.AlterModelOptions(
            name="appregistration",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [
                    ("refresh_appregistration", "Can refresh from Verifik"),
                    ("view_pii", "Can see personal data unmasked"),
                    ("export_appregistration", "Can export registrations to CSV"),
                ],
                "verbose_name": "registration",
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
