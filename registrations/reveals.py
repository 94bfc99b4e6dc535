"""Reveals: a user without `view_pii` sees one registration unmasked for a while, with a reason, audited.

No table of its own: a reveal is its audit event (action "reveal"), and the window is
derived from the user's latest one for that registration. The trail that proves who
looked is then also what grants the look; it cannot drift from it, and it cannot be
extended or shortened afterwards (audit events are append-only). Whether the window
is open is privacy.can_see_pii's call.
"""

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from . import audit, privacy
from .models import AuditAction, AuditEvent

VIEW_PII = "registrations.view_pii"
REASON_MAX_LENGTH = 500


class RevealError(Exception):
    """A reveal refused, in words the user can act on. Nothing was revealed or recorded."""


def has_view_pii(user):
    return user.is_active and user.has_perm(VIEW_PII)


def reveal(registration, user, reason, request=None):
    """Record the reveal (the audit event is the grant); returns when the window ends."""
    reason = (reason or "").strip()
    if not reason:
        raise RevealError("Say why you need to see this person's data: a reason is required to reveal it.")
    if len(reason) > REASON_MAX_LENGTH:
        raise RevealError(f"Keep the reason under {REASON_MAX_LENGTH} characters.")
    with transaction.atomic():
        event = audit.record(
            AuditAction.REVEAL, actor=user, registration=registration, request=request, details={"reason": reason}
        )
    return privacy.reveal_ends(event.at, settings.VERIFIK_REVEAL_MINUTES)


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
