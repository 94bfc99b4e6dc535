"""The mirror: Verifik app registrations as last received, and their status history.

Field names follow the API keys in snake_case; references to other Verifik
objects keep their 24-hex id in a field ending in `_id`. Those names are a
contract other tools read.
"""

from datetime import timedelta

from django.db import models
from django.utils import timezone

from .. import mapping
from ..mapping import FAILED_VALIDATION_KINDS


class RegistrationStatus(models.TextChoices):
    """Statuses Verifik documents. Unknown future values are stored as sent."""

    STARTED = "STARTED", "Started"
    ONGOING = "ONGOING", "Ongoing"
    NEEDS_MANUAL_VERIFICATION = "NEEDS_MANUAL_VERIFICATION", "Needs manual verification"
    COMPLETED = "COMPLETED", "Completed"
    COMPLETED_WITHOUT_KYC = "COMPLETED_WITHOUT_KYC", "Completed without KYC"
    FAILED = "FAILED", "Failed"
    EXPIRED = "EXPIRED", "Expired"


ACTIVE_STATUSES = tuple(RegistrationStatus(status) for status in mapping.ACTIVE_STATUSES)

# The list's red-flag and failed-validation filters select these subsets. Each has a partial
# index on (status, -created_at, -id), so any pair of the status, red-flag and failed filters is
# one index range in the list's order, and its capped count reads only matching index entries
# (migration 0014, docs/DESIGN.md "Counts and deep pages").
RED_FLAG_FLOORS = (1, 3)


def red_flags_q(floor):
    return models.Q(red_flags__gte=floor)


def failed_q(kind=None):
    """Registrations with a failed validation of this kind; of any kind without one."""
    return models.Q(**{f"failed_{kind}_count__gt": 0}) if kind else models.Q(failed_validations_count__gt=0)


class RangeDatesQuerySet(models.QuerySet):
    """`with_range_dates()` makes `datetimes()` list every period between the first and last row.

    The admin's date drill-down asks for the distinct years, months or days of
    the listed rows; `SELECT DISTINCT date_trunc(...)` reads every one of them.
    MIN and MAX come from the index instead, at the cost of showing a period
    that may have no registration in it.
    """

    range_dates = False

    def with_range_dates(self):
        clone = self._chain()
        clone.range_dates = True
        return clone

    def _clone(self):
        clone = super()._clone()
        clone.range_dates = self.range_dates
        return clone

    def aggregate(self, *args, **kwargs):
        """The drill-down reads MIN/MAX of its field twice (Django to pick a level, then `datetimes`):
        with range dates, the same aggregate of the same queryset is answered once."""
        if not self.range_dates or args:
            return super().aggregate(*args, **kwargs)
        key = tuple(sorted((name, repr(expression)) for name, expression in kwargs.items()))
        answered = self.__dict__.setdefault("_answered_aggregates", {})
        if key not in answered:
            answered[key] = super().aggregate(**kwargs)
        return dict(answered[key])

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        if not self.range_dates or kind not in ("year", "month", "day"):
            return super().datetimes(field_name, kind, order, tzinfo)
        bounds = self.aggregate(first=models.Min(field_name), last=models.Max(field_name))
        if bounds["first"] is None:
            return []
        first, last = (timezone.localtime(bounds[k], tzinfo) for k in ("first", "last"))
        periods, current = [], _truncate(first, kind)
        while current <= last:
            periods.append(current)
            current = _next_period(current, kind)
        return periods if order == "ASC" else periods[::-1]


def _truncate(moment, kind):
    moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind in ("year", "month"):
        moment = moment.replace(day=1)
    return moment.replace(month=1) if kind == "year" else moment


def _next_period(moment, kind):
    try:
        if kind == "day":
            return moment + timedelta(days=1)
        if kind == "month":
            return moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1)
        return moment.replace(year=moment.year + 1)
    except (OverflowError, ValueError):  # past year 9999: nothing further to list
        return moment.replace(year=9999, month=12, day=31, hour=23, minute=59, second=59)


def _ref(api_key):
    return models.CharField(max_length=24, null=True, blank=True, help_text=f"Verifik id of `{api_key}`.")


class AppRegistration(models.Model):
    # Unique by a constraint, not unique=True, which on Postgres adds a second (LIKE) index that
    # every write maintains and no query uses: ids are only ever looked up whole (migration 0016).
    verifik_id = models.CharField("Verifik id", max_length=24)
    # 64-bit: Verifik publishes no range; a value past a bigint is rejected by the mapping.
    version = models.BigIntegerField(null=True, blank=True, help_text="Verifik's `__v`.")

    client_id = _ref("client")
    project_id = _ref("project")
    project_flow_id = _ref("projectFlow")
    smart_link_id = _ref("smartLink")
    information_validation_id = _ref("informationValidation")
    email_validation_id = _ref("emailValidation")
    phone_validation_id = _ref("phoneValidation")
    biometric_validation_id = _ref("biometricValidation")
    person_id = _ref("person")
    assigned_collection_id = _ref("assignedCollection")
    document_validation_id = _ref("documentValidation")
    face_id = _ref("face")
    document_face_id = _ref("documentFace")
    compare_face_verification_id = _ref("compareFaceVerification")
    crypto_validation_id = _ref("cryptoValidation")
    form_submission_id = _ref("formSubmission")
    signature_id = _ref("signature")
    access_control_log_id = _ref("accessControlLog")

    # Text is TextField throughout: Verifik publishes no length limits and the
    # mirror must hold whatever it sends, whole.
    status = models.TextField(null=True, blank=True, choices=RegistrationStatus.choices)
    email = models.TextField(null=True, blank=True)
    country_code = models.TextField(null=True, blank=True)
    phone = models.TextField(null=True, blank=True)
    name = models.TextField(null=True, blank=True)
    current_step = models.TextField(null=True, blank=True)
    language = models.TextField(null=True, blank=True)
    notes = models.TextField(null=True, blank=True)

    red_flags = models.BigIntegerField(null=True, blank=True)
    red_flags_details = models.JSONField(null=True, blank=True)
    failed_email_validations = models.JSONField(null=True, blank=True)
    failed_phone_validations = models.JSONField(null=True, blank=True)
    failed_biometric_validations = models.JSONField(null=True, blank=True)
    failed_document_validations = models.JSONField(null=True, blank=True)
    # Counts of the failed lists, kept by the sync so the admin filters and sorts without reading JSON.
    failed_validations_count = models.IntegerField(default=0, help_text="Total of the four failed-validation lists.")
    failed_email_count = models.IntegerField(default=0)
    failed_phone_count = models.IntegerField(default=0)
    failed_biometric_count = models.IntegerField(default=0)
    failed_document_count = models.IntegerField(default=0)
    deleted = models.BooleanField(null=True, blank=True, help_text="Verifik's own `deleted` flag.")

    created_at = models.DateTimeField(null=True, blank=True, help_text="Verifik's createdAt.")
    updated_at = models.DateTimeField(null=True, blank=True, help_text="Verifik's updatedAt.")

    populated = models.JSONField(default=dict, blank=True, help_text="Populated objects by populate name.")
    raw = models.JSONField(default=dict, blank=True, help_text="The merged payload as received from Verifik.")

    # Local bookkeeping.
    listing_hash = models.CharField(max_length=32, blank=True, default="", editable=False)
    details_pending = models.BooleanField(
        default=True, help_text="True until the detail endpoint's view of the latest version has been stored."
    )
    # Defaults in the database too: bulk loaders that COPY rows in need not know these columns.
    detail_hash = models.CharField(
        max_length=32,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text="Fingerprint of the last detail payload.",
    )
    details_queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When a sync last queued this registration's detail fetch."
    )
    details_failures = models.IntegerField(default=0, db_default=0, help_text="Detail fetches failed in a row.")
    details_retry_at = models.DateTimeField(
        null=True, blank=True, help_text="Backing off after repeated failures: no detail fetch before this."
    )
    details_error = models.TextField(
        blank=True, default="", db_default="", help_text="Why the last detail fetch failed."
    )
    first_synced_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(
        null=True, blank=True, help_text="When a sync or refresh last wrote this row."
    )
    removed_upstream_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its personal data was erased (retention or a data-subject request); "
        "cleared when Verifik sends it again.",
    )

    objects = RangeDatesQuerySet.as_manager()

    class Meta:
        verbose_name = "registration"
        ordering = ["-created_at", "-id"]
        # view_pii and export are granted to groups by migration 0012 (issue #12).
        permissions = [
            ("refresh_appregistration", "Can refresh from Verifik"),
            ("view_pii", "Can see personal data unmasked"),
            ("export_appregistration", "Can export registrations to CSV"),
            ("reveal_pii", "Can reveal one registration's personal data, with a reason"),
        ]
        constraints = [models.UniqueConstraint(fields=["verifik_id"], name="reg_verifik_id_unique")]
        indexes = [
            # Sorted columns end in the default ordering (-created_at, -id), as the admin's ORDER BY does.
            models.Index(fields=["-created_at", "-id"], name="reg_created_idx"),
            models.Index(fields=["-updated_at", "-id"], name="reg_updated_idx"),
            # Status with "no red flags" (most rows) is filtered and counted from the index (0014).
            models.Index(fields=["status", "-created_at", "-id"], name="reg_status_rf_idx", include=["red_flags"]),
            models.Index(fields=["-red_flags", "-created_at", "-id"], name="reg_red_flags_idx"),
            models.Index(fields=["-failed_validations_count", "-created_at", "-id"], name="reg_failed_idx"),
            models.Index(fields=["-last_synced_at", "-created_at", "-id"], name="reg_synced_idx"),
            models.Index(fields=["id"], name="reg_details_pending_idx", condition=models.Q(details_pending=True)),
            models.Index(fields=["language"], name="reg_language_idx"),
            models.Index(fields=["project_id"], name="reg_project_idx"),
            models.Index(
                fields=["-created_at", "-id"],
                name="reg_removed_idx",
                condition=models.Q(removed_upstream_at__isnull=False),
            ),
            # Retention's daily purge: removed upstream, not yet erased, oldest removal first.
            models.Index(
                fields=["removed_upstream_at", "id"],
                name="reg_purgeable_idx",
                condition=models.Q(removed_upstream_at__isnull=False, erased_at__isnull=True),
            ),
            *[
                models.Index(
                    fields=["-created_at", "-id"],
                    name=f"reg_failed_{kind}_idx",
                    condition=failed_q(kind),
                )
                for kind in FAILED_VALIDATION_KINDS
            ],
            *[
                models.Index(
                    fields=["status", "-created_at", "-id"],
                    name=f"reg_st_failed_{kind or 'any'}_idx",
                    condition=failed_q(kind),
                    include=["red_flags"],  # red flags with failed validations: counted from the index alone
                )
                for kind in (None, *FAILED_VALIDATION_KINDS)
            ],
            *[
                models.Index(
                    fields=["status", "-created_at", "-id"],
                    name=f"reg_st_red_flags_{floor}_idx",
                    condition=red_flags_q(floor),
                    # Approvals awaiting a second reviewer are counted from here (queue.awaiting_second_q).
                    include=["deleted", "removed_upstream_at"],
                )
                for floor in RED_FLAG_FLOORS
            ],
        ]

    def __str__(self):
        """The Verifik id, never personal data: the admin shows this in titles, breadcrumbs, logs and popups."""
        return self.verifik_id


class StatusChange(models.Model):
    """A registration's status or current step as first seen, and every change of either since.

    Written by the sync in the transaction that writes the row; never by people.
    """

    # No index of its own: statuschange_registration_idx starts with it (one index fewer per history row).
    registration = models.ForeignKey(
        AppRegistration, on_delete=models.CASCADE, related_name="status_changes", db_index=False
    )
    from_status = models.TextField(null=True, blank=True)
    to_status = models.TextField(null=True, blank=True)
    from_step = models.TextField(null=True, blank=True)
    to_step = models.TextField(null=True, blank=True)
    upstream_updated_at = models.DateTimeField(null=True, blank=True, help_text="Verifik's updatedAt of the change.")
    observed_at = models.DateTimeField(help_text="When the sync saw it.")
    sync_run = models.ForeignKey("SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-observed_at", "-id"]
        indexes = [
            models.Index(fields=["registration", "-observed_at", "-id"], name="statuschange_registration_idx"),
            models.Index(fields=["to_status", "-observed_at"], name="statuschange_status_idx"),
        ]

    def __str__(self):
        return f"{self.from_status or '(new)'} -> {self.to_status}"
