"""Two indexes every sync write maintained and no query used.

- verifik_id's LIKE index (varchar_pattern_ops), which Django adds for unique=True: ids are
  only looked up whole. Uniqueness moves to a constraint (created first, so it never lapses);
  the sync's ON CONFLICT (verifik_id) uses it like the old one.
- StatusChange.registration's own index: statuschange_registration_idx starts with it.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("registrations", "0015_review_speed"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="appregistration",
            constraint=models.UniqueConstraint(fields=("verifik_id",), name="reg_verifik_id_unique"),
        ),
        migrations.AlterField(
            model_name="appregistration",
            name="verifik_id",
            field=models.CharField(max_length=24, verbose_name="Verifik id"),
        ),
        migrations.AlterField(
            model_name="statuschange",
            name="registration",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="status_changes",
                to="registrations.appregistration",
            ),
        ),
    ]
