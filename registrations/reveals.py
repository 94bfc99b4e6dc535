"""Reveals: a user without `view_pii` sees one registration unmasked for a while, with a reason, audited.

No table of its own: a reveal is its audit event (action "reveal"), and the window is
derived from the user's latest one for that registration. The trail that proves who
looked is then also what grants the look; it cannot drift from it, and it cannot be
extended or shortened afterwards (audit events are append-only). Whether the window
is open is privacy.can_see_pii's call.

Limits, each attacked in tests/test_privacy.py: only holders of `reveal_pii` may reveal
(the analysts' group), a reason of REASON_MIN_LENGTH characters or more, at most
VERIFIK_REVEAL_DAILY_LIMIT reveals per user in any 24 hours (the refusal is audited, as
"reveal_refused"), and a registration whose window is open is not revealed again: a
replayed POST neither extends the window nor counts.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from . import audit, privacy
from .models import AuditAction, AuditEvent

VIEW_PII = "registrations.view_pii"
REVEAL_PII = "registrations.reveal_pii"
REASON_MIN_LENGTH = 10
REASON_MAX_LENGTH = 500
LIMIT_PERIOD = timedelta(days=1)


class RevealError(Exception):
    """A reveal refused, in words the user can act on. Nothing was revealed."""


@dataclass(frozen=True)
class Revealed:
    until: datetime
    again: bool  # the window was open already: nothing recorded, the end unchanged


def has_view_pii(user):
    return user.is_active and user.has_perm(VIEW_PII)


def can_reveal(user):
    return user.is_active and user.has_perm(REVEAL_PII)


def _checked_reason(reason):
    reason = " ".join((reason or "").split())
    if not reason:
        raise RevealError("Say why you need to see this person's data: a reason is required to reveal it.")
    if len(reason) < REASON_MIN_LENGTH:
        raise RevealError(
            f"Say why you need to see this person's data in at least {REASON_MIN_LENGTH} characters "
            "(a ticket number, the request you are answering)."
        )
    if len(reason) > REASON_MAX_LENGTH:
        raise RevealError(f"Keep the reason under {REASON_MAX_LENGTH} characters.")
    return reason


def reveal(registration, user, reason, request=None, now=None):
    """Record the reveal (the audit event is the grant) and say until when it shows the registration.

    The user's row is locked for the check and the write, so concurrent reveals by one user
    cannot pass the daily limit together or open one registration twice.
    """
    if not can_reveal(user):
        raise RevealError("You may not reveal personal data.")
    reason = _checked_reason(reason)
    minutes, limit = settings.VERIFIK_REVEAL_MINUTES, settings.VERIFIK_REVEAL_DAILY_LIMIT
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        now = now or timezone.now()
        opened = open_reveals(user, [registration.pk], now).get(registration.pk)
        if opened is not None:
            return Revealed(until=privacy.reveal_ends(opened, minutes), again=True)
        used = AuditEvent.objects.filter(actor=user, action=AuditAction.REVEAL, at__gt=now - LIMIT_PERIOD).count()
        refused = used >= limit
        action = AuditAction.REVEAL_REFUSED if refused else AuditAction.REVEAL
        details = {"reason": reason, **({"refused": "daily limit", "limit": limit} if refused else {})}
        event = audit.record(action, actor=user, registration=registration, request=request, details=details)
    if refused:
        raise RevealError(
            f"Not revealed: you have revealed {limit} registrations in the past 24 hours, the most allowed. "
            "Ask a reviewer, or try again later. This refusal is in the audit trail."
        )
    return Revealed(until=privacy.reveal_ends(event.at, minutes), again=False)


def open_reveals(user, registration_ids=None, now=None):
    """{registration id: latest reveal} of `user`'s reveals still open at `now` (optionally among some ids)."""
    if user.pk is None:
        return {}
    now = now or timezone.now()
    events = AuditEvent.objects.filter(
        actor=user,
        action=AuditAction.REVEAL,
        at__gt=privacy.reveal_cutoff(now, settings.VERIFIK_REVEAL_MINUTES),
        registration__isnull=False,
    )
    if registration_ids is not None:
        events = events.filter(registration_id__in=list(registration_ids))
    rows = events.order_by().values("registration_id").annotate(latest=Max("at"))
    rows = rows.values_list("registration_id", "latest")
    return {pk: at for pk, at in rows if privacy.can_see_pii(False, at, now, settings.VERIFIK_REVEAL_MINUTES)}


def lens_for(user, registration_id, now=None, revealed=None):
    """How `user` sees one registration: unmasked with `view_pii` or an open reveal of it.

    `revealed` is open_reveals(user, ...) when the caller read it already (a list page, an export).
    """
    if has_view_pii(user):
        return privacy.UNMASKED
    now = now or timezone.now()
    if revealed is None:
        revealed = open_reveals(user, [registration_id], now)
    return lens(False, revealed.get(registration_id), now)


def lens(view_pii, revealed_at, now):
    """The lens for a user who has `view_pii` or not, and revealed the registration at `revealed_at` (or None)."""
    shown = privacy.can_see_pii(view_pii, revealed_at, now, settings.VERIFIK_REVEAL_MINUTES)
    return privacy.UNMASKED if shown else privacy.MASKED
