"""Figures read by several parts of one admin page, computed once per request."""

from django.utils import timezone

from .. import privacy, reveals, selectors

FILTERED_COLUMNS = ("status", "language", "project_id")


def _once(request, name, compute):
    if not hasattr(request, name):
        setattr(request, name, compute())
    return getattr(request, name)


def sync_health(request):
    """Every row, the stale filter and the banner read the same figures."""
    return _once(request, "_verifik_sync_health", selectors.sync_health)


def present_values(request, field_name):
    """The values present in the filtered columns, one query for every filter."""
    return _once(request, "_verifik_present_values", lambda: selectors.distinct_values(*FILTERED_COLUMNS))[field_name]


def project_names(request):
    """Names of the projects the project filter lists."""
    return _once(
        request, "_verifik_project_names", lambda: selectors.project_names(present_values(request, "project_id"))
    )


def open_reveals(request):
    """{registration id: latest reveal} of this user's reveals still open now: one query per request."""
    now = _once(request, "_verifik_pii_now", timezone.now)
    return _once(request, "_verifik_open_reveals", lambda: reveals.open_reveals(request.user, now=now))


def pii_lens(request, registration_id):
    """How this request's user sees a registration's personal data (no query with view_pii)."""
    if _once(request, "_verifik_view_pii", lambda: reveals.has_view_pii(request.user)):
        return privacy.UNMASKED
    revealed_at = open_reveals(request).get(registration_id)
    return reveals.lens(False, revealed_at, _once(request, "_verifik_pii_now", timezone.now))


def pii(obj):
    """The lens the admin attached to this row for the current user; masked when none was (fail closed)."""
    return getattr(obj, "pii_lens", privacy.MASKED)
