"""Leases of listing runs and partitions: a heartbeat, and the last committed page a retry resumes from."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("registrations", "0018_reads_and_reveals"),
    ]

    operations = [
        migrations.AddField(
            model_name="syncrun",
            name="heartbeat_at",
            field=models.DateTimeField(
                blank=True, help_text="The holder's last sign of life; empty for a partition not started yet.", null=True
            ),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="committed_page",
            field=models.IntegerField(
                blank=True,
                help_text="The last page whose write committed: a partition walked again starts there.",
                null=True,
            ),
        ),
    ]
