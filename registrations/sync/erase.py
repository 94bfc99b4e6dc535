"""Erasing personal data from mirrored rows: the retention purge and a data-subject request.

Erasing writes mirrored rows, so it lives with the mirror's writers; it is not a sync,
and it is the one writer here that also writes the audit trail, in the same
transaction as each batch, so no registration is erased without its `purge` event.

What goes: the applicant's name, email, phone (and its country code), Verifik's notes,
the red-flag details and failed-validation lists (they quote the person's contacts and
device), and the whole payload (`raw`, `populated`: document numbers, faces, addresses).
What stays: the ids, the status and step, the dates, the counts the list filters on,
the status history, the review desk's decisions and comments, with the person's own name,
email and phone (and any email address or long number) cut out of their reasons and texts
(privacy.erase_text), and the audit trail. Erasing is the one writer of review rows outside
the review service: the erasure of a person's data must reach every copy we hold, in the same
transaction as the erasure of the row.

An erased row loses its fingerprints, so the next sync that still finds it at Verifik
stores it whole again (and clears `erased_at`): Verifik still has it, so it is live.
Nothing else writes it from what we held: the payload merged under a new version is
the (empty) stored one, and an older version never overwrites a newer one.
"""

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import audit, privacy
from ..models import AppRegistration, AuditAction, ReviewComment, ReviewDecision

BATCH_SIZE = 1_000  # rows a purge transaction erases: short locks, bounded WAL per commit
PERSONAL_FIELDS = [
    "name",
    "email",
    "phone",
    "country_code",
    "notes",
    "red_flags_details",
    "failed_email_validations",
    "failed_phone_validations",
    "failed_biometric_validations",
    "failed_document_validations",
]


@dataclass(frozen=True)
class Purged:
    erased: int
    more: bool  # stopped at its time budget with registrations still to erase


def _erased_values(now):
    return {
        **{name: None for name in PERSONAL_FIELDS},
        "raw": {},
        "populated": {},
        # Forget the fingerprints, so a listing or detail payload of the same version is stored again.
        "listing_hash": "",
        "detail_hash": "",
        # Nothing to fetch for it: a sync that still finds it at Verifik queues its details again.
        "details_pending": False,
        "details_queued_at": None,
        "details_retry_at": None,
        "details_failures": 0,
        "details_error": "",
        "erased_at": now,
    }


def _scrub_review_texts(ids):
    """Cut each registration's own personal values out of its decision reasons and comments (before its row is
    erased: the values are read from it). Rows whose text does not change are not written."""
    known = {
        pk: [(privacy.NAME, name), (privacy.EMAIL, email), (privacy.PHONE, phone)]
        for pk, name, email, phone in AppRegistration.objects.filter(pk__in=ids).values_list(
            "pk", "name", "email", "phone"
        )
    }
    for model, field in ((ReviewDecision, "reason"), (ReviewComment, "text")):
        changed = []
        for row in model.objects.filter(registration_id__in=ids).only("pk", "registration_id", field):
            text = getattr(row, field)
            scrubbed = privacy.erase_text(text, known.get(row.registration_id, ()))
            if scrubbed != text:
                setattr(row, field, scrubbed)
                changed.append(row)
        model.objects.bulk_update(changed, [field], batch_size=BATCH_SIZE)


def erase(registration, reason, *, actor=None, now=None):
    """Erase one registration's personal data now (a data-subject request), audited with `reason`."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("A reason is required to erase a registration's personal data.")
    now = now or timezone.now()
    with transaction.atomic():
        _scrub_review_texts([registration.pk])
        AppRegistration.objects.filter(pk=registration.pk).update(**_erased_values(now))
        audit.record(
            AuditAction.PURGE,
            actor=actor,
            registration=registration,
            details={"reason": reason, "kind": "request", "still_at_verifik": registration.removed_upstream_at is None},
        )
    registration.refresh_from_db()
    return registration


def purgeable(days, now=None):
    """Registrations removed upstream more than `days` days ago and not erased since."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return AppRegistration.objects.filter(removed_upstream_at__lt=cutoff, erased_at__isnull=True)


def purge_removed(days=None, *, now=None, batch_size=BATCH_SIZE, time_budget=None):
    """Erase every registration removed upstream longer ago than `days` (VERIFIK_PURGE_REMOVED_AFTER_DAYS;
    0 = never), in batches of `batch_size`, each committed with one `purge` event per registration.

    Stops after the batch that passes `time_budget` seconds and says whether more remain.
    """
    days = settings.VERIFIK_PURGE_REMOVED_AFTER_DAYS if days is None else days
    if not days:
        return Purged(0, more=False)
    now = now or timezone.now()
    started = time.monotonic()
    details = {"reason": f"Retention: removed upstream more than {days} days ago", "kind": "retention"}
    erased = 0
    while True:
        with transaction.atomic():
            ids = list(
                purgeable(days, now)
                .order_by("removed_upstream_at", "id")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return Purged(erased, more=False)
            _scrub_review_texts(ids)
            AppRegistration.objects.filter(pk__in=ids).update(**_erased_values(now))
            audit.record_each(AuditAction.PURGE, ids, details=details)
        erased += len(ids)
        if len(ids) < batch_size:
            return Purged(erased, more=False)
        if time_budget is not None and time.monotonic() - started > time_budget:
            return Purged(erased, more=True)
