"""CSV export of registrations: the audit event first, then the rows, streamed, masked for the user.

The admin hands over the changelist's own queryset (its filters and search), so the
file holds exactly the rows the list matches. Rows are read through a server-side
cursor (`iterator(chunk_size=...)` over `values_list`), turned into CSV lines and
yielded in batches: memory stays flat whatever the row count.

The audit event is written before the first byte, in its own transaction, with the
count from a COUNT of the same queryset: a streamed response's real row count is
known only at its end, when nothing can be written in the request any more, and an
export that was started but not finished (the browser closed) must still be on record.
A sync committing between the COUNT and the read can make the two differ by the rows it
added or removed; the event says what was asked for and how much it matched then.
"""

import csv
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from . import audit, privacy, reveals
from .models import AuditAction

CHUNK_SIZE = 2_000  # rows fetched from the server-side cursor at a time
BATCH = 500  # CSV lines yielded at a time
# (header, field): the registration's own columns, personal ones masked per the user.
COLUMNS = [
    ("verifik_id", "verifik_id"),
    ("status", "status"),
    ("current_step", "current_step"),
    ("name", "name"),
    ("email", "email"),
    ("country_code", "country_code"),
    ("phone", "phone"),
    ("language", "language"),
    ("red_flags", "red_flags"),
    ("failed_validations", "failed_validations_count"),
    ("project_id", "project_id"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    ("last_synced_at", "last_synced_at"),
    ("removed_upstream_at", "removed_upstream_at"),
    ("notes", "notes"),
]
HEADER = [header for header, _ in COLUMNS]
FIELDS = ["pk", *(field for _, field in COLUMNS)]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Export:
    rows: int
    event_id: int


def begin(queryset, user, *, query, source, request=None):
    """Count what the export will hold and record it (action "export", the filter decoded and masked, the count)."""
    with transaction.atomic():
        count = queryset.order_by().count()
        event = audit.record(
            AuditAction.EXPORT,
            actor=user,
            request=request,
            details={"filter": privacy.mask_query(query), "rows": count, "source": source},
        )
    return Export(rows=count, event_id=event.pk)


def cell(value):
    """One CSV cell: text as is but for a leading formula character (a spreadsheet would run it), which gets a '."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def rows(queryset, user, now=None):
    """The header, then each row of `queryset` as CSV cells, personal fields as `user` may see them."""
    now = now or timezone.now()
    view_pii = reveals.has_view_pii(user)
    revealed = {} if view_pii else reveals.open_reveals(user, now=now)
    yield HEADER
    for values in queryset.values_list(*FIELDS).iterator(chunk_size=CHUNK_SIZE):
        pk, record = values[0], dict(zip(FIELDS[1:], values[1:], strict=True))
        record = reveals.lens(view_pii, revealed.get(pk), now).record(record)
        yield [cell(record[field]) for _, field in COLUMNS]


class _Line:
    """csv.writer writes into this and gets the line back: nothing accumulates."""

    def write(self, text):
        return text


def lines(table):
    """CSV text of `table`'s rows, in batches of lines."""
    writer = csv.writer(_Line())
    batch = []
    for row in table:
        batch.append(writer.writerow(row))
        if len(batch) >= BATCH:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def filename(now=None):
    return f"registrations-{timezone.localtime(now or timezone.now()):%Y%m%d-%H%M}.csv"
