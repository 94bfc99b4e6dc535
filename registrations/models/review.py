"""The review desk's own data, beside the mirror: decisions, assignments, comments and their summary.

Written only by `registrations.review`; a sync never touches these tables, and
nothing here ever changes a mirrored registration. Decisions, assignments and
comments are append-only records; `ReviewState` is their per-registration
summary, kept so the queue can be filtered and sorted through indexes.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from .mirror import AppRegistration

COMMENT_MAX_LENGTH = 5_000


class ReviewOutcome(models.TextChoices):
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    ESCALATED = "escalated", "Escalated"
    INFO_REQUESTED = "info_requested", "Info requested"


# A reason says why; only an approval may go without one.
REASON_REQUIRED = (ReviewOutcome.REJECTED, ReviewOutcome.ESCALATED, ReviewOutcome.INFO_REQUESTED)
# Outcomes that hand the registration back to the queue instead of closing it.
REQUEUEING_OUTCOMES = (ReviewOutcome.ESCALATED, ReviewOutcome.INFO_REQUESTED)


class ReviewDecision(models.Model):
    """One reviewer's decision on one version of a registration. Append-only.

    The one update is the second reviewer's confirmation of an approval that
    needs four eyes: it fills `confirmed_by` and `confirmed_at`.
    """

    registration = models.ForeignKey(AppRegistration, on_delete=models.PROTECT, related_name="decisions")
    outcome = models.CharField(max_length=16, choices=ReviewOutcome.choices)
    reason = models.TextField(blank=True, default="")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(default=timezone.now)
    upstream_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="Verifik's updatedAt of the version the reviewer saw."
    )
    entered_queue_at = models.DateTimeField(
        null=True, blank=True, help_text="When the registration entered the queue this decision took it from."
    )
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-decided_at", "-id"]
        indexes = [
            models.Index(fields=["registration", "-decided_at", "-id"], name="decision_registration_idx"),
            models.Index(fields=["decided_at", "outcome"], name="decision_day_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome=ReviewOutcome.APPROVED) | ~Q(reason=""), name="decision_reason_required"
            ),
            models.CheckConstraint(
                condition=Q(confirmed_by__isnull=True, confirmed_at__isnull=True)
                | (Q(confirmed_by__isnull=False, confirmed_at__isnull=False) & ~Q(confirmed_by=F("reviewer"))),
                name="decision_confirmed_by_another",
            ),
        ]

    def __str__(self):
        return f"{self.get_outcome_display()} by {self.reviewer}"


class ReviewAssignment(models.Model):
    """Who took a registration, or gave it back (assignee null). Append-only; the current one is in ReviewState."""

    registration = models.ForeignKey(AppRegistration, on_delete=models.PROTECT, related_name="assignments")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    assigned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-assigned_at", "-id"]
        indexes = [models.Index(fields=["registration", "-assigned_at", "-id"], name="assignment_registration_idx")]

    def __str__(self):
        return f"assigned to {self.assignee}" if self.assignee_id else "unassigned"


class ReviewComment(models.Model):
    """A reviewer's note on a registration, kept apart from Verifik's own `notes`. Append-only."""

    registration = models.ForeignKey(AppRegistration, on_delete=models.PROTECT, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["registration", "-created_at", "-id"], name="comment_registration_idx")]
        constraints = [models.CheckConstraint(condition=~Q(text=""), name="comment_not_empty")]

    def __str__(self):
        return f"comment by {self.author}"


class ReviewState(models.Model):
    """A registration's latest decision and current assignee, one row per registration with any review activity.

    Facts only: whether the registration needs review, waits for a second
    reviewer or changed since its decision is worked out in the query from
    these columns, the mirror and the settings in force (registrations.queue).
    """

    registration = models.OneToOneField(
        AppRegistration, on_delete=models.PROTECT, primary_key=True, related_name="review_state"
    )
    decision = models.ForeignKey(
        ReviewDecision, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="The latest."
    )
    outcome = models.CharField(max_length=16, choices=ReviewOutcome.choices, null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_version = models.DateTimeField(
        null=True, blank=True, help_text="The latest decision's upstream_updated_at: the version it covers."
    )
    confirmed_at = models.DateTimeField(null=True, blank=True, help_text="The latest decision's confirmation.")
    changed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Verifik's updatedAt of a version newer than the decision's, as last compared by the review desk.",
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["outcome", "decided_at"], name="reviewstate_outcome_idx"),
            models.Index(
                fields=["decided_at", "registration"],
                name="reviewstate_requeued_idx",
                condition=Q(outcome__in=REQUEUEING_OUTCOMES) | Q(outcome=ReviewOutcome.APPROVED, confirmed_at=None),
            ),
            models.Index(
                fields=["changed_at", "registration"],
                name="reviewstate_changed_idx",
                condition=Q(changed_at__isnull=False),
            ),
            models.Index(fields=["assignee"], name="reviewstate_assignee_idx", condition=Q(assignee__isnull=False)),
        ]

    def __str__(self):
        return f"review of {self.registration_id}"


class ReviewCheckpoint(models.Model):
    """How far the review desk has compared the mirror's versions with decisions (`ReviewState.changed_at`).

    Registrations the sync wrote at or after `reached` are compared live in the query instead.
    """

    name = models.CharField(max_length=32, unique=True)
    reached = models.DateTimeField()

    def __str__(self):
        return f"{self.name} up to {self.reached:%Y-%m-%d %H:%M}"


class ReviewQueue(AppRegistration):
    """The "Needs review" entry of the admin's navigation; its page is the registrations list, filtered.

    It also declares the reviewers' permission, so Django recreates it like any other (after a flush too).
    """

    class Meta:
        proxy = True
        verbose_name = verbose_name_plural = "needs review"
        permissions = [("decide_appregistration", "Can record review decisions, assign and comment")]


class Dashboard(AppRegistration):
    """The team dashboard's entry in the admin's navigation, at /admin/registrations/dashboard/."""

    class Meta:
        proxy = True
        verbose_name = verbose_name_plural = "team dashboard"
