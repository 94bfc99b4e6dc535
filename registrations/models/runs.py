"""The sync's own records: runs, webhook deliveries, and the refreshes waiting to run."""

from django.conf import settings
from django.db import models


class SyncRun(models.Model):
    class Kind(models.TextChoices):
        FULL = "full", "Full"
        ACTIVE = "active", "By status"
        SINGLE = "single", "Single refresh"
        WEBHOOK = "webhook", "Webhook refresh"
        PARTITION = "partition", "Full sync partition"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        COMMAND = "command", "Command"
        USER = "user", "User"
        WEBHOOK = "webhook", "Webhook"

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    task_id = models.CharField(
        "Celery task", max_length=64, blank=True, default="", help_text="The task that ran it; empty when run inline."
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    statuses = models.JSONField(default=list, blank=True, help_text="Status filter; empty for every status.")
    verifik_id = models.CharField(
        "Verifik id", max_length=24, null=True, blank=True, help_text="The registration a single refresh was for."
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    pages = models.IntegerField(default=0)
    seen = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    unchanged = models.IntegerField(default=0)
    failed = models.IntegerField(default=0, help_text="Records rejected (listed below); the rest of the page landed.")
    cleaned = models.IntegerField(
        default=0, help_text="Records stored after cleaning: NUL characters removed, JSON cut at its depth limit."
    )
    removed = models.IntegerField(default=0)
    details_fetched = models.IntegerField(default=0)
    oversized = models.IntegerField(
        default=0, help_text="Payload parts replaced by a marker (VERIFIK_RAW_MAX_PART_BYTES)."
    )
    details_queued = models.IntegerField(default=0, help_text="Detail fetches handed to workers.")
    details_failed = models.IntegerField(default=0)
    failures = models.JSONField(
        default=list, blank=True, help_text="Rejected records (id and reason), the first 1,000 of a run."
    )
    error = models.TextField(blank=True, default="", help_text="Why the run failed, in words an operator can act on.")
    note = models.TextField(blank=True, default="", help_text="Anything else the operator should know.")
    # A full sync split across workers: the parent is the full sync; each partition is a child run
    # walking one status (or a range of its pages). The parent's counters sum its partitions'.
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="partition_runs",
        help_text="The full sync this partition belongs to.",
    )
    partition = models.JSONField(
        default=dict, blank=True, help_text="What a partition walks: status, first page, last page (null: to the end)."
    )
    partitions = models.IntegerField(default=0, help_text="Partitions a full sync was split into (0: one walk).")
    partitions_done = models.IntegerField(default=0, help_text="Partitions finished, whatever their outcome.")
    # The lease (registrations/sync/leases.py): besides an advisory lock of its own, a running listing run or
    # partition beats this at least every page; the reaper fails one whose lock is free or beat is too old.
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="The holder's last sign of life; empty for a partition not started yet."
    )
    committed_page = models.IntegerField(
        null=True, blank=True, help_text="The last page whose write committed: a partition walked again starts there."
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["outcome", "-started_at"], name="syncrun_outcome_idx"),
            models.Index(fields=["verifik_id", "-started_at"], name="syncrun_registration_idx"),
            models.Index(fields=["-started_at"], name="syncrun_started_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} sync #{self.pk} ({self.outcome})"

    @property
    def duration(self):
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at


# The syncs that walk the listing (and share its single-flight lock), as opposed to single refreshes.
LISTING_KINDS = (SyncRun.Kind.FULL, SyncRun.Kind.ACTIVE)


class WebhookDelivery(models.Model):
    """One POST from Verifik. Deliveries are unauthenticated hints: they only ever trigger a refresh."""

    class Outcome(models.TextChoices):
        QUEUED = "queued", "Refresh queued"
        REFRESHED = "refreshed", "Refreshed"
        COLLAPSED = "collapsed", "Joined a pending refresh"
        IGNORED = "ignored", "Ignored (event type)"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Refresh failed"

    received_at = models.DateTimeField(auto_now_add=True)
    event_type = models.CharField(max_length=200, blank=True, default="")
    verifik_id = models.CharField("Verifik id", max_length=24, null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.TextField(blank=True, default="")
    sync_run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["verifik_id", "-received_at"], name="webhook_registration_idx")]

    def __str__(self):
        return f"{self.event_type or 'delivery'} #{self.pk}"


class PendingRefresh(models.Model):
    """The refresh of one registration that is queued or running: the trailing debounce.

    A request while one is queued joins it; a request while one runs asks for
    exactly one more after it. The row goes when nothing is left to do.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"

    verifik_id = models.CharField("Verifik id", max_length=24, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    again = models.BooleanField(default=False, help_text="A request arrived while running: run once more after.")
    kind = models.CharField(max_length=16, choices=SyncRun.Kind.choices, default=SyncRun.Kind.SINGLE)
    trigger = models.CharField(max_length=16, choices=SyncRun.Trigger.choices, default=SyncRun.Trigger.USER)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    requests = models.IntegerField(default=1, help_text="Requests served by this refresh.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"refresh of {self.verifik_id} ({self.state})"
