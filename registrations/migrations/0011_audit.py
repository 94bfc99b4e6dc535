"""The audit trail (AuditEvent) and retention's mark on erased registrations (`erased_at`).

The audit table refuses UPDATE, DELETE and TRUNCATE at the database, from any client, with a
statement-level trigger. Only the table's owner can disable it; migration 0017 takes ownership
away from the application's role and chains the events, so what an owner changes shows.

Also a partial index for the daily retention purge: registrations removed upstream and not yet erased.
"""

import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

REFUSE = """
CREATE OR REPLACE FUNCTION registrations_auditevent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'Audit events are append-only: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING HINT = 'The audit trail keeps every event; nothing may change or delete one.';
END
$$;
CREATE TRIGGER registrations_auditevent_no_change
    BEFORE UPDATE OR DELETE ON registrations_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION registrations_auditevent_append_only();
CREATE TRIGGER registrations_auditevent_no_truncate
    BEFORE TRUNCATE ON registrations_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION registrations_auditevent_append_only();
"""

ALLOW = """
DROP TRIGGER IF EXISTS registrations_auditevent_no_truncate ON registrations_auditevent;
DROP TRIGGER IF EXISTS registrations_auditevent_no_change ON registrations_auditevent;
DROP FUNCTION IF EXISTS registrations_auditevent_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("registrations", "0010_review_stopped_steps_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="appregistration",
            name="erased_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When its personal data was erased (retention or a data-subject request); "
                "cleared when Verifik sends it again.",
                null=True,
            ),
        ),
        migrations.AddIndex(
            model_name="appregistration",
            index=models.Index(
                condition=models.Q(removed_upstream_at__isnull=False, erased_at__isnull=True),
                fields=["removed_upstream_at", "id"],
                name="reg_purgeable_idx",
            ),
        ),
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("view", "Viewed"),
                            ("reveal", "Revealed personal data"),
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
                ("at", models.DateTimeField(default=django.utils.timezone.now, verbose_name="time")),
                ("ip", models.GenericIPAddressField(blank=True, null=True, verbose_name="IP address")),
                (
                    "details",
                    models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder),
                ),
                (
                    "actor",
                    models.ForeignKey(
                        blank=True,
                        db_index=False,
                        help_text="Who did it; empty for the system (retention, a failed login).",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "registration",
                    models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="audit_events",
                        to="registrations.appregistration",
                    ),
                ),
            ],
            options={
                "verbose_name": "audit event",
                "ordering": ["-at", "-id"],
                "indexes": [
                    models.Index(fields=["-at", "-id"], name="audit_at_idx"),
                    models.Index(fields=["registration", "-at", "-id"], name="audit_registration_idx"),
                    models.Index(fields=["action", "-at", "-id"], name="audit_action_idx"),
                    models.Index(fields=["actor", "-at", "-id"], name="audit_actor_idx"),
                ],
            },
        ),
        migrations.RunSQL(REFUSE, ALLOW),
    ]
