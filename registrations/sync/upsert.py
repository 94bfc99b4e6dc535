"""The only SQL writer of mirrored rows and of their status history.

Rows arrive by COPY into a session temp table and are upserted in one
statement whose WHERE clause keeps an older Verifik version from overwriting
a newer one, even when a refresh races the sync. The same statement records
a StatusChange for every row first seen or whose status or current step
moved. A page the database refuses is written again row by row (savepoints),
so only the guilty rows are rejected and the rest land.
"""

from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from django.conf import settings
from django.db import DatabaseError, DataError, connection, transaction
from django.utils import timezone

from .. import cleaning, mapping
from ..models import AppRegistration, StatusChange
from . import seen as seen_ids

# Columns a write never changes once the row exists.
_INSERT_ONLY = ("verifik_id", "first_synced_at")
# What each kind of write leaves as stored: a listing item knows nothing of the detail backlog's
# queue, a detail payload nothing of the listing's fingerprint.
_KEEP = {"listing": ("details_queued_at",), "listing_new": ("details_queued_at",), "detail": ("listing_hash",)}
_DETAIL_STATE = ["details_pending", "details_queued_at", "details_failures", "details_retry_at", "details_error"]
_COLUMNS = [*mapping.MAPPED_FIELDS, "raw", "populated", "listing_hash", "detail_hash", *_DETAIL_STATE]
_COLUMNS += ["first_synced_at", "last_synced_at", "removed_upstream_at", "erased_at"]
_JSON_COLUMNS = frozenset(c for c in _COLUMNS if AppRegistration._meta.get_field(c).get_internal_type() == "JSONField")
_STAGE = "registrations_upsert_stage"
# SQLSTATE classes that blame the data, not the database: data exception, integrity, program limit.
_ROW_FAULT_CLASSES = ("22", "23", "54")


class Rejected(ValueError):
    """A record the database would not store; the message says why (without its values)."""


@dataclass
class PageResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0  # repeats within the page or of ids the walk saw before
    fresh: int = 0  # ids the walk sees for the first time (set by the walk)
    unidentified: int = 0  # items without a usable _id: they cannot count as seen
    oversized: int = 0  # payload parts replaced by a marker
    cleaned: int = 0  # records stored after cleaning (NUL removed, deep JSON cut)
    failures: list = field(default_factory=list)  # rejected records: {"id", "reason"}


@dataclass
class PreparedPage:
    """A listing page compared with the mirror and mapped: the rows to write and what the counts need."""

    result: PageResult
    rows: list
    kind: str
    run_id: int | None
    now: datetime
    new: list  # verifik ids of the rows first stored
    changed: list  # verifik ids of the rows stored again
    cleaned: set
    values: list | None = None  # the rows' copy_values, made ahead
    number: int = 0  # the listing page it came from (set by the walk)


def _statement(kind):
    quote = connection.ops.quote_name
    table = quote(AppRegistration._meta.db_table)
    history = quote(StatusChange._meta.db_table)
    columns = ", ".join(quote(c) for c in _COLUMNS)
    skip = {*_INSERT_ONLY, *_KEEP[kind]}
    updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in _COLUMNS if c not in skip)
    if kind == "listing_new":
        # The page was COPY'd straight into the table (see _copy_new): only its first sights remain.
        return f"""
        INSERT INTO {history}
            (registration_id, from_status, to_status, from_step, to_step, upstream_updated_at, observed_at, sync_run_id)
        SELECT id, NULL, status, NULL, current_step, updated_at, %s, %s FROM {table} WHERE verifik_id = ANY(%s)
        """  # noqa: S608 - identifiers are quoted names; values are parameters
    return f"""
        WITH old AS (
            SELECT r.id, r.verifik_id, r.status, r.current_step
            FROM {table} r JOIN {_STAGE} s ON s.verifik_id = r.verifik_id
        ), written AS (
            INSERT INTO {table} ({columns}) SELECT {columns} FROM {_STAGE}
            ON CONFLICT (verifik_id) DO UPDATE SET {updates}
            WHERE {table}.updated_at IS NULL OR EXCLUDED.updated_at IS NULL
               OR {table}.updated_at <= EXCLUDED.updated_at
            RETURNING id, verifik_id, status, current_step, updated_at
        )
        INSERT INTO {history}
            (registration_id, from_status, to_status, from_step, to_step, upstream_updated_at, observed_at, sync_run_id)
        SELECT w.id, o.status, w.status, o.current_step, w.current_step, w.updated_at, %s, %s
        FROM written w LEFT JOIN old o ON o.verifik_id = w.verifik_id
        WHERE o.id IS NULL OR o.status IS DISTINCT FROM w.status OR o.current_step IS DISTINCT FROM w.current_step
    """  # noqa: S608 - identifiers are quoted names; values are COPY data and parameters


_STATEMENTS = {}


def _write_batch(rows, values, kind, run_id, now):
    values = [copy_values(row) for row in rows] if values is None else values
    statement = _STATEMENTS.get(kind) or _STATEMENTS.setdefault(kind, _statement(kind))
    quote = connection.ops.quote_name
    table = quote(AppRegistration._meta.db_table)
    columns = ", ".join(quote(c) for c in _COLUMNS)
    if kind == "listing_new":
        return _copy_new(rows, values, statement, table, columns, run_id, now)
    with connection.cursor() as cursor:
        # One round trip (no parameters: psycopg sends both statements as one simple query).
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} AS SELECT {columns} FROM {table} WITH NO DATA; TRUNCATE {_STAGE}"  # noqa: S608
        )
        with cursor.cursor.copy(f"COPY {_STAGE} ({columns}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        cursor.execute(statement, [now, run_id])


def _copy_new(rows, values, statement, table, columns, run_id, now):
    """A page of registrations new to the mirror: COPY straight into the table, then their first sights.

    No stage table and no conflict handling: a registration stored meanwhile (a
    refresh) makes the COPY fail, and write() stores the page again the guarded way.
    """
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        cursor.execute(statement, [now, run_id, [row["verifik_id"] for row in rows]])


def copy_values(row):
    """A row (a dict of _COLUMNS) as COPY takes it, in column order, its JSON columns encoded."""
    return [None if row[c] is None else mapping.jsonb_text(row[c]) if c in _JSON_COLUMNS else row[c] for c in _COLUMNS]


def encoded(rows):
    """The rows' copy_values made ahead (by the walk, not the writer); None when one will not encode.

    write() then encodes each batch inside its savepoint, where such a row is refused alone.
    """
    try:
        return [copy_values(row) for row in rows]
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None


def _is_row_fault(exc):
    """True when the data is to blame (a value Postgres refuses), False when the database is (connection, timeout)."""
    if isinstance(exc, UnicodeError | ValueError | OverflowError):
        return True
    if not isinstance(exc, DatabaseError | psycopg.Error):  # COPY raises psycopg's own errors, unwrapped
        return False
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None) or ""
    return sqlstate[:2] in _ROW_FAULT_CLASSES or (not sqlstate and isinstance(exc, DataError))


def _reason(exc):
    """The first line only: later lines of a Postgres error can quote the failing row's values."""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return f"refused by the database: {first}"


def _batch_stored(rows, values, kind, run_id, now):
    """Write the batch in one savepoint; None when stored, else the row fault that refused it (others raise)."""
    try:
        with transaction.atomic():
            _write_batch(rows, values, kind, run_id, now)
    except Exception as exc:
        if not _is_row_fault(exc):
            raise
        return exc
    return None


def write(rows, kind, run_id=None, now=None, values=None):
    """Upsert `rows` (dicts of _COLUMNS); returns {verifik_id: reason} of the rows the database refused.

    `values`: the rows' copy_values, when the caller made them ahead (see encoded).
    """
    if not rows:
        return {}
    now = now or timezone.now()
    if kind == "listing_new":
        if _batch_stored(rows, values, kind, run_id, now) is None:
            return {}
        kind = "listing"  # a row stored meanwhile, or one the database refuses: the guarded way sorts it out
    fault = _batch_stored(rows, values, kind, run_id, now)
    if fault is None:
        return {}
    if len(rows) == 1:
        return {rows[0]["verifik_id"]: _reason(fault)}
    refused = {}
    for index, row in enumerate(rows):  # the batch refused: one savepoint a row finds which
        fault = _batch_stored([row], values and [values[index]], kind, run_id, now)
        if fault is not None:
            refused[row["verifik_id"]] = _reason(fault)
    return refused


def _row(mapped, *, now, listing_hash="", detail_hash="", details_pending=True):
    raw, populated, oversized = mapping.sanitize(
        mapped.raw, mapped.populated, settings.VERIFIK_RAW_REDACT, settings.VERIFIK_RAW_MAX_PART_BYTES
    )
    return {
        "oversized_parts": oversized,
        **mapped.fields,
        "raw": raw,
        "populated": populated,
        "listing_hash": listing_hash,
        "detail_hash": detail_hash,
        "details_pending": details_pending,
        "details_queued_at": None,
        "details_failures": 0,
        "details_retry_at": None,
        "details_error": "",
        "first_synced_at": now,
        "last_synced_at": now,
        "removed_upstream_at": None,
        "erased_at": None,  # stored whole again: Verifik still has it (sync/erase.py)
    }


def _merged(mapped, stored):
    """Re-map a payload laid over the stored one, so keys the payload lacks keep their values."""
    if stored is None:
        return mapped
    raw, populated = mapping.merge(stored["raw"], stored["populated"], {**mapped.raw, **mapped.populated})
    remapped = mapping.map_registration({**raw, **populated})
    return mapping.MappedRegistration(mapped.verifik_id, remapped.fields, raw, populated)


def _is_older(mapped, stored_updated_at):
    incoming = mapped.fields.get("updated_at")
    return incoming is not None and stored_updated_at is not None and incoming < stored_updated_at


def _prepare(payload, json_text):
    """Clean (only when the cheap pre-check on its JSON text says it may be needed) and map; (mapped, cleaned?)."""
    changes = 0
    if cleaning.needs_cleaning(json_text):
        payload, changes = cleaning.clean(payload)
    return mapping.map_registration(payload), bool(changes)


def store_page(items, seen=None, run_id=None, new_only=False, item_bytes=None):
    """Store one listing page; `seen` drops repeats across a walk: a walk key (ids kept in Postgres) or a set.

    prepare_page, then write_pages, then finish_page: a walk writes on a second
    connection while it prepares the next pages (writer.py).
    """
    page = prepare_page(items, seen, run_id, new_only, item_bytes)
    return finish_page(page, write_pages([page]))


def write_pages(pages):
    """Prepared pages (of one kind) in one transaction; returns {verifik_id: reason} of the rows refused.

    A few pages a statement rather than one: Postgres sets up a COPY into a table of thirty
    indexes, and commits, once for all of them (measured: 100,000 rows COPY'd 100 a statement
    took 22.5 s, 500 a statement 19 s).
    """
    first = pages[0]
    rows = [row for page in pages for row in page.rows]
    values = None if any(page.values is None for page in pages) else [v for page in pages for v in page.values]
    return write(rows, first.kind, first.run_id, first.now, values)


def finish_page(page, refused):
    """The page's counts once its write is known (`refused` may name other pages' rows too); its PageResult."""
    result = page.result
    mine = [row["verifik_id"] for row in page.rows if row["verifik_id"] in refused]
    result.failures += [{"id": verifik_id, "reason": refused[verifik_id]} for verifik_id in mine]
    mine = set(mine)
    result.created = sum(verifik_id not in mine for verifik_id in page.new)
    result.updated = sum(verifik_id not in mine for verifik_id in page.changed)
    result.cleaned = len(page.cleaned - mine)
    result.oversized = sum(row["oversized_parts"] for row in page.rows if row["verifik_id"] not in mine)
    return result


def prepare_page(items, seen=None, run_id=None, new_only=False, item_bytes=None, rewrite_repeats=False):
    """Everything store_page does before writing: drop repeats, compare fingerprints, map; a PreparedPage.

    An item whose fingerprint matches its stored row is skipped before it is
    even mapped: a no-change re-sync costs one narrow statement per page, which
    also records the page's ids as seen by the walk. The fingerprint is of the
    item's bytes as received when the client could split them out (`item_bytes`,
    aligned with `items`), else of its canonical JSON. A repeat (an id the walk
    already saw, e.g. on a re-read leading page or in two status partitions)
    is skipped: the walk stored it, or rejected it, once already. A rejected item
    keeps its stored version (and fingerprint), so the next sync tries it again.

    `new_only` (with a walk key): the mirror held none of the walk's registrations
    when it began (a first sync), so the page's stored state is not looked up.
    `rewrite_repeats`: repeats are compared and written like first sights (a partition
    walked again after its worker died: the ids it marked seen may never have been written).
    """
    result = PageResult()
    batch, received = {}, {}
    for index, item in enumerate(items):
        item_id = item.get("_id") if isinstance(item, dict) else None
        if not mapping.is_object_id(item_id):
            result.unidentified += 1
            shown = str(item_id)[:40].replace("\x00", "") if item_id is not None else None
            result.failures.append({"id": shown, "reason": "_id: not a 24-hex-character id"})
            continue
        verifik_id = item_id.lower()
        if verifik_id in batch:
            result.duplicates += 1
            continue
        batch[verifik_id] = item
        if item_bytes is not None:
            received[verifik_id] = item_bytes[index]
    if not batch:
        return PreparedPage(result, [], "listing", run_id, timezone.now(), [], [], set())
    walk = isinstance(seen, int)  # a walk key: the ids go to Postgres; else a set (or None) kept here
    canonical = {}  # canonical JSON, made once per item that needs it

    def digest_of(verifik_id):
        if verifik_id in received:
            return mapping.fingerprint(received[verifik_id])
        text = canonical[verifik_id] = mapping.canonical(batch[verifik_id])
        return mapping.fingerprint(text)

    if new_only and walk:
        fresh = seen_ids.mark(seen, batch)
        looked_up = {verifik_id: (verifik_id in fresh, None) for verifik_id in batch}
        digests = {}
    else:
        new_only = False
        digests = {verifik_id: digest_of(verifik_id) for verifik_id in batch}
        looked_up = seen_ids.mark_and_look_up(seen, digests) if walk else _look_up(digests, seen)
    now = timezone.now()
    new, changed, cleaned = [], [], set()
    for verifik_id, item in batch.items():
        first_sight, stored = looked_up[verifik_id]
        if not first_sight:  # stored (or rejected) earlier in this walk
            result.duplicates += 1
            if not rewrite_repeats:
                continue
        if stored is seen_ids.UNCHANGED:
            result.unchanged += 1
            continue
        digest = digests[verifik_id] if verifik_id in digests else digest_of(verifik_id)
        json_text = received.get(verifik_id) or canonical.get(verifik_id) or mapping.canonical(item)
        try:
            mapped, was_cleaned = _prepare(item, json_text)
        except mapping.MappingError as exc:
            result.failures.append({"id": verifik_id, "reason": str(exc)})
            continue
        if was_cleaned:
            cleaned.add(verifik_id)
        if stored is None:
            new.append((mapped, digest))
        elif stored["removed_upstream_at"] is None and _is_older(mapped, stored["updated_at"]):
            result.unchanged += 1
        else:
            changed.append((mapped, digest))
    stored_payloads = {}
    if changed:
        stored_payloads = {
            row["verifik_id"]: row
            for row in AppRegistration.objects.filter(verifik_id__in=[m.verifik_id for m, _ in changed]).values(
                "verifik_id", "raw", "populated"
            )
        }
    rows = [_row(m, now=now, listing_hash=d) for m, d in new]
    rows += [_row(_merged(m, stored_payloads.get(m.verifik_id)), now=now, listing_hash=d) for m, d in changed]
    kind = "listing_new" if new_only else "listing"
    new_ids, changed_ids = [m.verifik_id for m, _ in new], [m.verifik_id for m, _ in changed]
    return PreparedPage(result, rows, kind, run_id, now, new_ids, changed_ids, cleaned, encoded(rows))


def _look_up(digests, seen):
    """The in-memory variant of seen.mark_and_look_up, for callers that store a page outside a walk."""
    stored = {
        row.pop("verifik_id"): row
        for row in AppRegistration.objects.filter(verifik_id__in=list(digests)).values(
            "verifik_id", "listing_hash", "updated_at", "removed_upstream_at"
        )
    }
    result = {}
    for verifik_id, digest in digests.items():
        first_sight = seen is None or verifik_id not in seen
        if seen is not None:
            seen.add(verifik_id)
        row = stored.get(verifik_id)
        if row is not None and row["removed_upstream_at"] is None and row["listing_hash"] == digest:
            row = seen_ids.UNCHANGED
        result[verifik_id] = (first_sight, row)
    return result


def store_detail(payload, run_id=None):
    """Store one registration as the detail endpoint returned it: "created", "updated" or "unchanged".

    A payload identical to the last one stored (same fingerprint) writes
    nothing but the end of its detail backlog. Raises MappingError or
    Rejected when the record cannot be stored.
    """
    canonical_json = mapping.canonical(payload)
    digest = mapping.fingerprint(canonical_json)
    mapped, _ = _prepare(payload, canonical_json)
    now = timezone.now()
    with transaction.atomic():
        stored = (
            AppRegistration.objects.filter(verifik_id=mapped.verifik_id)
            .values("pk", "raw", "populated", "updated_at", "detail_hash", "removed_upstream_at", "details_pending")
            .first()
        )
        if stored is not None and stored["removed_upstream_at"] is None:
            if stored["detail_hash"] == digest:
                if stored["details_pending"]:
                    AppRegistration.objects.filter(pk=stored["pk"]).update(**_details_done())
                return "unchanged"
            if _is_older(mapped, stored["updated_at"]):
                return "unchanged"  # the listing holds a newer version: its details stay pending
        row = _row(_merged(mapped, stored), now=now, detail_hash=digest, details_pending=False)
        refused = write([row], "detail", run_id, now)
    if refused:
        raise Rejected(refused[mapped.verifik_id])
    return "created" if stored is None else "updated"


def _details_done():
    return {
        "details_pending": False,
        "details_queued_at": None,
        "details_failures": 0,
        "details_retry_at": None,
        "details_error": "",
    }


def mark_removed(verifik_ids, now=None):
    now = now or timezone.now()
    return AppRegistration.objects.filter(verifik_id__in=verifik_ids, removed_upstream_at__isnull=True).update(
        removed_upstream_at=now
    )
