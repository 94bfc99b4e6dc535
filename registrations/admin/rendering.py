"""HTML fragments for the admin. Everything from Verifik goes through format_html, so it is escaped."""

import json

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from ..mapping import FAILED_VALIDATION_KINDS
from ..models import RegistrationStatus

# The failed-validation kinds and their labels, in the order every page shows them.
FAILED_KINDS = [(kind, kind.title()) for kind in FAILED_VALIDATION_KINDS]


def muted(text):
    """Quiet text: placeholders and zeros that should not draw the eye."""
    return format_html('<span class="vf-muted">{}</span>', text)


EMPTY = muted("—")

STATUS_TONES = {
    RegistrationStatus.STARTED: "neutral",
    RegistrationStatus.ONGOING: "info",
    RegistrationStatus.NEEDS_MANUAL_VERIFICATION: "warning",
    RegistrationStatus.COMPLETED: "success",
    RegistrationStatus.COMPLETED_WITHOUT_KYC: "success-alt",
    RegistrationStatus.FAILED: "danger",
    RegistrationStatus.EXPIRED: "muted",
}


def status_label(status):
    try:
        return RegistrationStatus(status).label
    except ValueError:
        return status


def badge(text, tone, title=""):
    return format_html('<span class="vf-badge vf-{}" title="{}">{}</span>', tone, title, text)


def status_badge(status):
    if not status:
        return EMPTY
    return badge(status_label(status), STATUS_TONES.get(status, "unknown"), status)


def tag(text, tone):
    return format_html('<span class="vf-tag vf-{}">{}</span>', tone, text)


def excerpt(text, length=60):
    if not text:
        return EMPTY
    return format_html('<span title="{}">{}</span>', Truncator(text).chars(400), Truncator(text).chars(length))


def multiline(text):
    if not text:
        return EMPTY
    return format_html('<div class="vf-notes">{}</div>', text)


def _scalar(value):
    if value is None:
        return muted("null")
    if isinstance(value, bool):
        return format_html("<code>{}</code>", "true" if value else "false")
    return format_html("{}", value)


def value_table(value, depth=0):
    """Any JSON value as nested tables: objects as key/value rows, lists as numbered rows."""
    if depth > 8:
        return format_html("<code>{}</code>", json.dumps(value, ensure_ascii=False)[:2000])
    if isinstance(value, dict | list):
        if not value:
            return muted("(empty)" if isinstance(value, dict) else "(none)")
        pairs = value.items() if isinstance(value, dict) else ((i + 1, v) for i, v in enumerate(value))
        rows = format_html_join(
            "", '<tr><th scope="row">{}</th><td>{}</td></tr>', ((k, value_table(v, depth + 1)) for k, v in pairs)
        )
        return format_html('<table class="vf-kv{}">{}</table>', "" if isinstance(value, dict) else " vf-list", rows)
    return _scalar(value)


def failed_items_table(items):
    """One failed-validation list: ids, and whatever reason and date the items carry."""
    if items is None:
        return muted("not sent")
    if not items:
        return muted("none")
    rows = []
    for item in items:
        if isinstance(item, dict):
            details = {k: v for k, v in item.items() if k not in ("_id", "reason", "createdAt")}
            rows.append(
                (
                    item.get("_id", "—"),
                    item.get("reason") or item.get("failedReason") or "—",
                    item.get("createdAt", "—"),
                    value_table(details) if details else "",
                )
            )
        else:
            rows.append((item, "—", "—", ""))
    body = format_html_join("", "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
    return format_html(
        '<table class="vf-table"><thead><tr><th>Id</th><th>Reason</th><th>Date</th><th>Other</th></tr></thead>'
        "<tbody>{}</tbody></table>",
        body,
    )


def pretty_json(value):
    return format_html('<pre class="vf-json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def chip(text, tone="neutral", title=""):
    """A short reason or state, as reviewers scan them in the list ("4 red flags")."""
    return format_html('<span class="vf-chip vf-chip-{}" title="{}">{}</span>', tone, title, text)


def chips(items):
    return format_html_join("", "{}", ((item,) for item in items)) if items else EMPTY


def duration(delta):
    """A waiting time in the largest unit that keeps it short: 45 min, 7 h, 3 d."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def when(moment):
    """A date and time as the admin shows them, in the current time zone, named."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


def project_label(project_id, name):
    """A project by its name (from the populated project), the id as a tooltip; the id alone without a name."""
    if not project_id:
        return EMPTY
    if not name:
        return format_html('<code title="{}">{}…</code>', project_id, project_id[:8])
    return format_html('<span title="Project {}">{}</span>', project_id, name)


def run_link(run):
    url = reverse("admin:registrations_syncrun_change", args=[run.pk])
    return format_html('<a href="{}">run #{}</a>', url, run.pk)
