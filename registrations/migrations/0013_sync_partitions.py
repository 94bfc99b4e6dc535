"""A full sync split across workers (issue #13): partition runs under their full sync, and the walks'
seen ids in an UNLOGGED scratch table instead of a Python set.

The scratch table is unlogged: it holds only the ids a walk in progress has seen (keyed by the
walk), is emptied when the walk ends, and after a crash Postgres truncates it, which is exactly
what a sync that must walk again needs.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("registrations", "0012_privacy")]

    operations = [
        migrations.AlterField(
            model_name="syncrun",
            name="kind",
            field=models.CharField(
                choices=[
                    ("full", "Full"),
                    ("active", "By status"),
                    ("single", "Single refresh"),
                    ("webhook", "Webhook refresh"),
                    ("partition", "Full sync partition"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="pendingrefresh",
            name="kind",
            field=models.CharField(
                choices=[
                    ("full", "Full"),
                    ("active", "By status"),
                    ("single", "Single refresh"),
                    ("webhook", "Webhook refresh"),
                    ("partition", "Full sync partition"),
                ],
                default="single",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                help_text="The full sync this partition belongs to.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="partition_runs",
                to="registrations.syncrun",
            ),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="partition",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="What a partition walks: status, first page, last page (null: to the end).",
            ),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="partitions",
            field=models.IntegerField(default=0, help_text="Partitions a full sync was split into (0: one walk)."),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="partitions_done",
            field=models.IntegerField(default=0, help_text="Partitions finished, whatever their outcome."),
        ),
        migrations.RunSQL(
            "CREATE UNLOGGED TABLE IF NOT EXISTS registrations_sync_seen ("
            " walk bigint NOT NULL, verifik_id varchar(24) NOT NULL, PRIMARY KEY (walk, verifik_id))",
            "DROP TABLE IF EXISTS registrations_sync_seen",
        ),
    ]
