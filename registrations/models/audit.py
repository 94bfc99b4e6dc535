"""The audit trail: who did what to which registration, when and from where. Append-only, hash-chained.

Written only by `registrations.audit.record`, in the transaction of the action it
records, through the chain's writer (`registrations.audit_chain`). Nothing updates or
deletes an event: the model refuses, its queryset refuses, a trigger in the database
(migrations 0011, 0017) refuses UPDATE, DELETE and TRUNCATE from any client, the
application's role holds only SELECT and INSERT on the table, and each event's
`chain_hash` lets `verify_audit_trail` prove that nobody, the table's owner included,
changed the trail since.
"""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from .mirror import AppRegistration, RangeDatesQuerySet

APPEND_ONLY = "Audit events are append-only: they cannot be changed or deleted."
CHAIN_HASH_BYTES = 32  # HMAC-SHA256


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
    # Empty only on an event written past the chain's writer (the ORM's own create, a SQL INSERT): the
    # database takes it, and verify_audit_trail names it.
    chain_hash = models.BinaryField(
        max_length=CHAIN_HASH_BYTES,
        null=True,
        editable=False,
        help_text="HMAC of the previous event's chain hash and this event's fields (registrations.audit_chain).",
    )

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


class AuditChainHead(models.Model):
    """The chain's one head row: how many events it holds, the last one's id and hash, with an HMAC over them.

    Writers lock it (SELECT ... FOR UPDATE) to append, which serialises them: the chain never forks.
    """

    events = models.BigIntegerField(default=0)
    last_event_id = models.BigIntegerField(null=True)
    last_hash = models.BinaryField(max_length=CHAIN_HASH_BYTES)
    mac = models.BinaryField(max_length=CHAIN_HASH_BYTES)

    class Meta:
        verbose_name = "audit chain head"
        default_permissions = ()

    def __str__(self):
        return f"{self.events} events, ending in {bytes(self.last_hash).hex()[:16]}"
