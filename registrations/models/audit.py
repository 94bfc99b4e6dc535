"""The audit trail: who did what to which registration, when and from where. Append-only.

Written only by `registrations.audit.record`, in the transaction of the action it
records. Nothing updates or deletes an event: the model refuses, its queryset
refuses, and a trigger in the database (migration 0011) refuses UPDATE, DELETE
and TRUNCATE from any client, so the trail stays the proof auditors ask for.
"""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from .mirror import AppRegistration, RangeDatesQuerySet

APPEND_ONLY = "Audit events are append-only: they cannot be changed or deleted."
# A session that sets this Postgres setting to "on" may TRUNCATE the table (Django's flush between
# transactional tests, benchmark scratch databases); the product never sets it. See migration 0011.
ALLOW_TRUNCATE_SETTING = "verifik.allow_audit_truncate"


class AuditAction(models.TextChoices):
    VIEW = "view", "Viewed"
    REVEAL = "reveal", "Revealed personal data"
    REVEAL_REFUSED = "reveal_refused", "Reveal refused"
    LIST = "list", "Listed personal data"
    DECIDE = "decide", "Decided"
    ASSIGN = "assign", "Assigned"
    COMMENT = "comment", "Commented"
    REFRESH = "refresh", "Requested a refresh"
    SYNC = "sync", "Requested a sync"
    EXPORT = "export", "Exported"
    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login_failed", "Failed login"
    PURGE = "purge", "Erased personal data"


class AppendOnly(Exception):
    """An attempt to change or delete an audit event."""


class AuditEventQuerySet(RangeDatesQuerySet):
    """Bulk changes are refused like single ones (the admin's delete action, a stray `.update()`).

    Range dates (see RangeDatesQuerySet) keep the admin's date drill-down on MIN/MAX of an index.
    """

    def update(self, **kwargs):
        raise AppendOnly(APPEND_ONLY)

    def delete(self):
        raise AppendOnly(APPEND_ONLY)

    delete.queryset_only = True


class AuditEvent(models.Model):
    # PROTECT, not SET_NULL: SET_NULL would be an UPDATE the trigger refuses, and an event
    # must keep naming its actor. Staff users are deactivated, never deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        db_index=False,  # audit_actor_idx leads with it
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who did it; empty for the system (retention, a failed login).",
    )
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    # Registrations are never deleted (removed upstream ones stay, erased ones keep their row);
    # the foreign key keeps every event pointing at a row that exists. audit_registration_idx leads with it.
    registration = models.ForeignKey(
        AppRegistration,
        null=True,
        blank=True,
        db_index=False,
        on_delete=models.PROTECT,
        related_name="audit_events",
    )
    at = models.DateTimeField("time", default=timezone.now)
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        verbose_name = "audit event"
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["-at", "-id"], name="audit_at_idx"),
            models.Index(fields=["registration", "-at", "-id"], name="audit_registration_idx"),
            models.Index(fields=["action", "-at", "-id"], name="audit_action_idx"),
            models.Index(fields=["actor", "-at", "-id"], name="audit_actor_idx"),
        ]

    def __str__(self):
        return f"{self.get_action_display()} by {self.actor or 'system'}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnly(APPEND_ONLY)
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly(APPEND_ONLY)
