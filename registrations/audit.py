"""The audit trail's one writer: `record()` an action, in the caller's transaction.

Callers (the admin's detail view, the review desk, the admin's refresh and sync
requests, the eraser, the login signals, the reveal and the export) call it inside
the transaction of the action itself, so the action and its event commit or roll
back together; `record` commits nothing of its own inside a transaction (in autocommit,
its event commits alone). Every event is appended to the hash chain
(`registrations.audit_chain`), which holds the chain's head locked until the caller's
transaction ends: audit writers run one after the other.

Details never carry secrets: keys that name one (tokens, passwords, secrets, OTP
codes, session and CSRF values) are replaced by a marker at any depth, the
configured secrets are cut out of every string, and long strings are shortened,
so a hostile reason or filter costs a bounded row.
"""

import math
import re

from django.conf import settings

from verifik_admin.client_ip import client_ip

from . import audit_chain
from .models import AuditAction, AuditEvent

SECRET_KEY_PATTERN = re.compile(r"token|passw|secret|otp|api[_-]?key|authori[sz]ation|csrf|session|cookie", re.I)
REDACTED = "[redacted]"
MAX_STRING = 5_000  # a review reason or comment fits whole (COMMENT_MAX_LENGTH)
MAX_ITEMS = 1_000  # list items and dict keys kept per level
MAX_DEPTH = 6


def record(action, *, actor=None, registration=None, request=None, details=None):
    """Write one audit event and return it. `actor` defaults to the request's authenticated user."""
    return audit_chain.append([AuditEvent(**_fields(action, actor, registration, request, details))])[0]


def record_each(action, registration_ids, *, actor=None, request=None, details=None):
    """One event per registration (by primary key) in one INSERT, each chained: a bulk action on many."""
    fields = _fields(action, actor, None, request, details)
    del fields["registration"]
    return audit_chain.append([AuditEvent(**fields, registration_id=pk) for pk in registration_ids])


def _fields(action, actor, registration, request, details):
    action = AuditAction(action)  # an unknown action is a programming error: fail loudly
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else None
    return {
        "action": action,
        "actor": actor,
        "registration": registration,
        "ip": client_ip(request) if request is not None else None,
        "details": sanitise(details or {}),
    }


def sanitise(value, depth=0):
    """`value` made safe to store: JSON types only, secrets out, bounded in size."""
    if depth > MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, dict):
        clean = {}
        for key, item in list(value.items())[:MAX_ITEMS]:
            key = str(key)[:200]
            clean[key] = REDACTED if SECRET_KEY_PATTERN.search(key) else sanitise(item, depth + 1)
        return clean
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitise(item, depth + 1) for item in list(value)[:MAX_ITEMS]]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # jsonb has no NaN or Infinity
    return _clean_text(str(value))


def _clean_text(text):
    for secret in settings.LOG_SECRETS:
        if secret:
            text = text.replace(secret, REDACTED)
    text = text.replace("\x00", "")  # Postgres jsonb refuses NUL
    return text if len(text) <= MAX_STRING else text[:MAX_STRING] + "…"
