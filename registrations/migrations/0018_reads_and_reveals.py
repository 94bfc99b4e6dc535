"""Reads and reveals: the `reveal_pii` permission, given to Registration analysts only, and two audit actions.

Reviewers see personal data (`view_pii`) and need no reveal; operators run syncs and get
neither. The new actions: `list` (a list page that showed personal data unmasked) and
`reveal_refused` (a reveal past the daily limit).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations, models

ANALYSTS = "Registration analysts"
REVEAL = "reveal_pii"


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations; the group needs this one now.
    app_config = apps.get_app_config("registrations")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.get(content_type__app_label="registrations", codename=REVEAL)
    analysts, _ = Group.objects.get_or_create(name=ANALYSTS)
    analysts.permissions.add(permission)


def revoke(apps, schema_editor):
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="registrations", codename=REVEAL
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("registrations", "0017_audit_chain")]

    operations = [
        migrations.AlterModelOptions(
            name="appregistration",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [
                    ("refresh_appregistration", "Can refresh from Verifik"),
                    ("view_pii", "Can see personal data unmasked"),
                    ("export_appregistration", "Can export registrations to CSV"),
                    ("reveal_pii", "Can reveal one registration's personal data, with a reason"),
                ],
                "verbose_name": "registration",
            },
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("view", "Viewed"),
                    ("reveal", "Revealed personal data"),
                    ("reveal_refused", "Reveal refused"),
                    ("list", "Listed personal data"),
                    ("decide", "Decided"),
                    ("assign", "Assigned"),
                    ("comment", "Commented"),
                    ("refresh", "Requested a refresh"),
                    ("sync", "Requested a sync"),
                    ("export", "Exported"),
                    ("login", "Logged in"),
                    ("login_failed", "Failed login"),
                    ("purge", "Erased personal data"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(grant, revoke),
    ]
