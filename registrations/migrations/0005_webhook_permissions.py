"""Both back-office groups may read webhook deliveries."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = ["Registration reviewers", "Registration operators"]


def grant(apps, schema_editor):
    app_config = apps.get_app_config("registrations")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.get(content_type__app_label="registrations", codename="view_webhookdelivery")
    for group in apps.get_model("auth", "Group").objects.filter(name__in=GROUPS):
        group.permissions.add(view)


class Migration(migrations.Migration):
    dependencies = [("registrations", "0004_webhooks_and_payload_caps")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
