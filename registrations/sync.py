"""The sync service: the only code that writes registrations.

A sync walks the listing page by page and upserts each page in one
statement inside one transaction. Unchanged records (same listing hash) are
not written at all, and the upsert's WHERE clause keeps an older Verifik
version from overwriting a newer one even when a refresh races the sync.
"""

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from verifik_admin.logs import bind

from . import mapping
from .models import AppRegistration, SyncRun
from .verifik import AuthRejected, NotFound, VerifikClient, VerifikError, validate_registration_id

log = logging.getLogger(__name__)

SYNC_LOCK_KEY = 0x5EF1_1C5  # pg advisory lock id shared by every listing sync
MAX_FAILURE_SAMPLES = 50
SHORT_PAGE_RETRIES = 3
DETAIL_BATCH = 500
PROGRESS_EVERY = 1.0  # seconds between SyncRun progress saves


class SyncFailed(Exception):
    """A sync or refresh that ended failed; `run` holds the record, `retryable` whether later may help."""

    def __init__(self, run, retryable=False):
        super().__init__(run.error)
        self.run = run
        self.retryable = retryable


def build_client(**overrides):
    options = {
        "timeout": settings.VERIFIK_TIMEOUT,
        "max_retries": settings.VERIFIK_MAX_RETRIES,
        "backoff": settings.VERIFIK_BACKOFF,
        "retry_after_cap": settings.VERIFIK_RETRY_AFTER_CAP,
    }
    options.update(overrides)
    return VerifikClient(settings.VERIFIK_API_BASE_URL, settings.VERIFIK_API_TOKEN, **options)


# --- writing rows ------------------------------------------------------------------

_INSERT_ONLY = ("verifik_id", "first_synced_at")
_COLUMNS = [*mapping.MAPPED_FIELDS, "raw", "populated", "listing_hash", "details_pending"]
_COLUMNS += [
    "first_synced_at",
    "last_synced_at",
    "removed_upstream_at",
    "details_failures",
    "detail_hash",
    "details_error",
]


_JSON_COLUMNS = frozenset(c for c in _COLUMNS if AppRegistration._meta.get_field(c).get_internal_type() == "JSONField")
_STAGE = "registrations_upsert_stage"


def _upsert(rows, keep_listing_hash=False):
    """INSERT ... ON CONFLICT (verifik_id) DO UPDATE for many rows, in one statement.

    The WHERE clause is the guard against older data: a row whose stored
    updated_at is newer is left as it is. On Postgres the rows arrive by COPY
    into a session temp table (a huge VALUES list costs more to send and parse
    than the insert itself); elsewhere they are one multi-row VALUES.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(AppRegistration._meta.db_table)
    columns = ", ".join(quote(c) for c in _COLUMNS)
    skip = set(_INSERT_ONLY) | ({"listing_hash"} if keep_listing_hash else set())
    updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in _COLUMNS if c not in skip)
    updated_at = quote("updated_at")
    on_conflict = (
        f"ON CONFLICT ({quote('verifik_id')}) DO UPDATE SET {updates} WHERE {table}.{updated_at} IS NULL "
        f"OR EXCLUDED.{updated_at} IS NULL OR {table}.{updated_at} <= EXCLUDED.{updated_at}"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            stage = f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} AS SELECT {columns} FROM {table} WITH NO DATA"  # noqa: S608
            cursor.execute(stage)
            cursor.execute(f"TRUNCATE {_STAGE}")
            with cursor.cursor.copy(f"COPY {_STAGE} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([_json(row[c]) if c in _JSON_COLUMNS else row[c] for c in _COLUMNS])
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_STAGE} {on_conflict}")  # noqa: S608
        else:
            params = [_prepared(row, c) for row in rows for c in _COLUMNS]
            values = ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * len(rows))
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values} {on_conflict}", params)  # noqa: S608


def _json(value):
    return None if value is None else json.dumps(value)


def _prepared(row, column):
    value = row[column]
    if value is None:
        return None
    if column in _JSON_COLUMNS or isinstance(value, datetime):
        return AppRegistration._meta.get_field(column).get_db_prep_save(value, connection)
    return value


def _row(mapped, *, now, listing_hash="", details_pending=True):
    raw, populated, oversized = _stored_parts(mapped)
    return {
        "oversized_parts": oversized,
        **mapped.fields,
        "raw": raw,
        "populated": populated,
        "listing_hash": listing_hash,
        "details_pending": details_pending,
        "first_synced_at": now,
        "last_synced_at": now,
        "removed_upstream_at": None,
        "details_failures": 0,
        "detail_hash": "",
        "details_error": "",
    }


def _stored_parts(mapped):
    """raw and populated as they may be stored: redacted and size-capped per settings."""
    return mapping.sanitize(
        mapped.raw, mapped.populated, settings.VERIFIK_RAW_REDACT, settings.VERIFIK_RAW_MAX_PART_BYTES
    )


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


@dataclass
class PageResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    unidentified: int = 0  # items without a usable _id: they cannot count as seen
    oversized: int = 0  # payload parts replaced by a marker
    failures: list = field(default_factory=list)


def store_page(items, seen):
    """Store one listing page atomically; `seen` collects ids (as bytes) across the walk to drop repeats.

    An item whose fingerprint matches its stored row is skipped before it is
    even mapped: a no-change re-sync costs one narrow query per page.
    """
    result = PageResult()
    batch = []
    for item in items:
        item_id = item.get("_id") if isinstance(item, dict) else None
        if not mapping.is_object_id(item_id):
            result.unidentified += 1
            result.failures.append(
                {"id": str(item_id)[:40] if item_id is not None else None, "reason": "_id: not a 24-hex-character id"}
            )
            continue
        verifik_id = item_id.lower()
        key = bytes.fromhex(verifik_id)  # 12 bytes, not a 24-character str: the set grows with the account
        if key in seen:
            result.duplicates += 1
            continue
        seen.add(key)
        batch.append((verifik_id, item, mapping.payload_hash(item)))
    if not batch:
        return result
    now = timezone.now()
    with transaction.atomic():
        existing = {
            row["verifik_id"]: row
            for row in AppRegistration.objects.filter(verifik_id__in=[verifik_id for verifik_id, _, _ in batch]).values(
                "verifik_id", "listing_hash", "updated_at", "removed_upstream_at"
            )
        }
        new, changed = [], []
        for verifik_id, item, digest in batch:
            stored = existing.get(verifik_id)
            if stored is not None and stored["removed_upstream_at"] is None and stored["listing_hash"] == digest:
                result.unchanged += 1
                continue
            try:
                mapped = mapping.map_registration(item)
            except mapping.MappingError as exc:
                result.failures.append({"id": verifik_id, "reason": str(exc)})
                continue
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
        _upsert(rows)
    result.created, result.updated = len(new), len(changed)
    result.oversized = sum(row["oversized_parts"] for row in rows)
    return result


def store_detail(payload):
    """Store one registration as the detail endpoint returned it; returns "created" or "updated"."""
    mapped = mapping.map_registration(payload)
    now = timezone.now()
    with transaction.atomic():
        stored = (
            AppRegistration.objects.filter(verifik_id=mapped.verifik_id)
            .values("raw", "populated", "updated_at")
            .first()
        )
        if stored is not None and _is_older(mapped, stored["updated_at"]):
            return "unchanged"
        row = _row(_merged(mapped, stored), now=now, details_pending=False)
        _upsert([row], keep_listing_hash=True)
    return "created" if stored is None else "updated"


def mark_removed(verifik_ids, now=None):
    now = now or timezone.now()
    return AppRegistration.objects.filter(verifik_id__in=verifik_ids, removed_upstream_at__isnull=True).update(
        removed_upstream_at=now
    )


def fetch_and_store(client, verifik_id, populates=None):
    """Fetch one registration with its populates and store it; a 404 marks it removed upstream."""
    verifik_id = validate_registration_id(verifik_id)
    populates = settings.VERIFIK_POPULATES if populates is None else populates
    try:
        payload = client.get(verifik_id, populates=populates)
    except NotFound:
        return "removed" if mark_removed([verifik_id]) else "not_found"
    return store_detail(payload)


# --- runs ------------------------------------------------------------------------------


@contextmanager
def listing_lock():
    """Hold the single-flight lock for listing syncs; yields False when another holder has it.

    A Postgres session advisory lock frees itself when the holder's connection
    dies, so a killed worker never leaves the lock behind. SQLite (the
    single-process demo database) has no other holder to exclude.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [SYNC_LOCK_KEY])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [SYNC_LOCK_KEY])
            except DatabaseError:
                pass  # the lock died with its connection


def _finish(run, outcome, error="", counters=()):
    """Close a run. Saves only what this process owns: fanned-out detail tasks update their counters concurrently."""
    run.outcome = outcome
    run.error = error
    run.finished_at = timezone.now()
    fields = ["outcome", "error", "note", "finished_at", *counters]
    try:
        run.save(update_fields=fields)
    except DatabaseError:
        # The connection died under us (database restarted, backend killed): record it on a fresh one.
        connection.close()
        run.save(update_fields=fields)
    return run


def _fail(run, exc):
    message = str(exc) if isinstance(exc, VerifikError) else f"Internal error: {type(exc).__name__}: {exc}"
    log.error("Sync run %s failed: %s", run.pk, message)
    _finish(run, SyncRun.Outcome.FAILED, message)
    return SyncFailed(run, retryable=getattr(exc, "retryable", False))


class _Walk:
    """One pass over the listing, with the evidence needed to trust it for removals."""

    def __init__(self, client, run, statuses, limit, before_page=None):
        self.client, self.run, self.statuses, self.limit = client, run, statuses, limit
        self.before_page = before_page
        self.seen = set()
        self.totals = []
        self.short_pages = 0
        self.unidentified = 0
        self.saved_at = 0.0

    def fetch(self, number):
        page = self.client.list_page(number, self.limit, statuses=self.statuses)
        for _ in range(SHORT_PAGE_RETRIES):
            if page.page >= page.pages or len(page.items) >= self.limit:
                break
            log.warning("Page %d came back with %d of %d items; fetching it again", number, len(page.items), self.limit)
            page = self.client.list_page(number, self.limit, statuses=self.statuses)
        else:
            if page.page < page.pages and len(page.items) < self.limit:
                self.short_pages += 1
        self.totals.append(page.total)
        return page

    def store(self, page):
        result = store_page(page.items, self.seen)
        run = self.run
        run.pages += 1
        run.seen += len(page.items) - result.duplicates - len(result.failures)
        self.unidentified += result.unidentified
        run.created += result.created
        run.updated += result.updated
        run.unchanged += result.unchanged
        run.failed += len(result.failures)
        run.oversized += result.oversized
        room = MAX_FAILURE_SAMPLES - len(run.failures)
        run.failures.extend(result.failures[: max(room, 0)])
        if time.monotonic() - self.saved_at >= PROGRESS_EVERY:
            self.save_progress()
        return result

    def save_progress(self):
        """Counts reach the SyncRun at most once a second, and at the end of each pass."""
        self.run.save(
            update_fields=["pages", "seen", "created", "updated", "unchanged", "failed", "failures", "oversized"]
        )
        self.saved_at = time.monotonic()

    def _numbered(self, number):
        if self.before_page:
            self.before_page(number)
        return number, self.fetch(number)

    def run_pass(self):
        # Requests stay one at a time, in order; the next page is fetched while
        # this one is written, so the API and the database work side by side.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifik-prefetch") as prefetch:
            ahead = prefetch.submit(self._numbered, 1)
            while True:
                number, page = ahead.result()
                last = number >= page.pages or not page.items
                if not last:
                    ahead = prefetch.submit(self._numbered, number + 1)
                self.store(page)
                if last:
                    break
        # Newest first: registrations created while we walked landed on the
        # leading pages. Re-read them until a page holds nothing new.
        number = 1
        while True:
            page = self.fetch(number)
            result = self.store(page)
            if result.created + result.updated + result.unchanged == 0 or number >= page.pages:
                break
            number += 1
        self.save_progress()

    @property
    def complete(self):
        """True when every registration upstream was seen: the listing neither shrank nor skipped."""
        shrank = any(later < earlier for earlier, later in zip(self.totals, self.totals[1:], strict=False))
        return not shrank and not self.short_pages and len(self.seen) + self.unidentified >= self.totals[-1]


def run_sync(
    *,
    statuses=None,
    trigger=SyncRun.Trigger.COMMAND,
    user_id=None,
    details=None,
    client=None,
    on_details=None,
    before_page=None,
):
    """A full sync (or one limited to `statuses`), recorded in a SyncRun that is returned.

    `on_details(run, ids)` receives the ids whose details must be fetched (the
    Celery task fans them out); without it they are fetched inline. Raises SyncFailed (carrying the run) on failure.
    """
    statuses = list(statuses or [])
    details = settings.VERIFIK_SYNC_DETAILS if details is None else details
    kind = SyncRun.Kind.ACTIVE if statuses else SyncRun.Kind.FULL
    run = SyncRun.objects.create(kind=kind, trigger=trigger, user_id=user_id, statuses=statuses)
    client = client or build_client()
    with bind(run_id=run.pk), listing_lock() as acquired:
        if not acquired:
            holder = (
                SyncRun.objects.filter(
                    outcome=SyncRun.Outcome.RUNNING, kind__in=[SyncRun.Kind.FULL, SyncRun.Kind.ACTIVE]
                )
                .exclude(pk=run.pk)
                .first()
            )
            return _finish(
                run,
                SyncRun.Outcome.SKIPPED,
                f"A sync is already running{f' (run #{holder.pk})' if holder else ''}; this one was skipped.",
            )
        _fail_abandoned_runs(run)
        try:
            _walk_and_reconcile(run, client, statuses, before_page)
            if details:
                _details(run, client, on_details)
        except Exception as exc:
            raise _fail(run, exc) from exc
    return _finish(run, SyncRun.Outcome.SUCCEEDED)


def _fail_abandoned_runs(run):
    """Mark runs whose worker died as failed.

    A listing run still 'running' while we hold the lock cannot be running
    anywhere. A single refresh takes seconds; one running for an hour is dead.
    """
    abandoned = Q(kind__in=[SyncRun.Kind.FULL, SyncRun.Kind.ACTIVE], pk__lt=run.pk) | Q(
        started_at__lt=timezone.now() - timedelta(hours=1)
    )
    SyncRun.objects.filter(abandoned, outcome=SyncRun.Outcome.RUNNING).update(
        outcome=SyncRun.Outcome.FAILED,
        finished_at=timezone.now(),
        error="The worker running this sync stopped before it finished (found by the next sync).",
    )


def _walk_and_reconcile(run, client, statuses, before_page):
    limit = settings.VERIFIK_PAGE_SIZE
    walk = _Walk(client, run, statuses, limit, before_page)
    walk.run_pass()
    if not walk.complete:
        log.warning("Listing changed during sync run %s; walking it once more", run.pk)
        walk = _Walk(client, run, statuses, limit)
        walk.run_pass()
    if statuses:
        return
    if not walk.complete:
        run.note = (
            f"The listing kept changing during the sync ({len(walk.seen)} seen, {walk.totals[-1]} reported); "
            "registrations missing from it were not marked removed upstream. The next full sync will."
        )
        return
    run.removed = _mark_unseen_removed(walk.seen, run.started_at)
    run.save(update_fields=["removed", "note"])


def _mark_unseen_removed(seen, started_at):
    now, removed, missing = timezone.now(), 0, []
    present = AppRegistration.objects.filter(removed_upstream_at__isnull=True, first_synced_at__lt=started_at)
    for verifik_id in present.values_list("verifik_id", flat=True).iterator(chunk_size=5000):
        if bytes.fromhex(verifik_id) not in seen:
            missing.append(verifik_id)
    for start in range(0, len(missing), 1000):
        removed += mark_removed(missing[start : start + 1000], now)
    return removed


def pending_detail_ids(batch=DETAIL_BATCH):
    """Ids whose details are not stored for their latest version, in batches, by primary key."""
    last = 0
    pending = AppRegistration.objects.filter(details_pending=True, removed_upstream_at__isnull=True).order_by("pk")
    while True:
        rows = list(pending.filter(pk__gt=last).values_list("pk", "verifik_id")[:batch])
        if not rows:
            return
        last = rows[-1][0]
        yield [verifik_id for _, verifik_id in rows]


def _details(run, client, on_details):
    for ids in pending_detail_ids():
        if on_details is not None:
            on_details(run, ids)
            SyncRun.objects.filter(pk=run.pk).update(details_queued=F("details_queued") + len(ids))
            continue
        for verifik_id in ids:
            try:
                fetch_details_for(run.pk, verifik_id, client=client, pace=False)
            except AuthRejected:
                raise
            except VerifikError as exc:
                log.warning("Details of %s not fetched: %s", verifik_id, exc)
    run.refresh_from_db(fields=["details_fetched", "details_failed", "details_queued"])


def refresh(verifik_id, *, trigger=SyncRun.Trigger.USER, user_id=None, kind=SyncRun.Kind.SINGLE, client=None):
    """Refresh one registration from the detail endpoint, recorded in its own SyncRun.

    A malformed id is refused before anything is sent or recorded. A refresh of
    an id refreshed moments ago collapses into that one (recorded as skipped).
    """
    verifik_id = validate_registration_id(verifik_id)
    run, earlier = _claim_refresh(verifik_id, kind=kind, trigger=trigger, user_id=user_id)
    if earlier is not None:
        return _finish(run, SyncRun.Outcome.SKIPPED, f"Collapsed into refresh run #{earlier.pk}, started moments ago.")
    client = client or build_client()
    try:
        with bind(run_id=run.pk):
            outcome = fetch_and_store(client, verifik_id)
    except Exception as exc:
        raise _fail(run, exc) from exc
    counters = ["seen", "created", "updated", "unchanged", "removed", "failed"]
    for name, value in zip(counters, _REFRESH_COUNTS[outcome], strict=True):
        setattr(run, name, value)
    if outcome == "not_found":
        message = f"Verifik has no registration {verifik_id}."
        raise SyncFailed(_finish(run, SyncRun.Outcome.FAILED, message, counters))
    return _finish(run, SyncRun.Outcome.SUCCEEDED, counters=counters)


# fetch_and_store's outcome -> (seen, created, updated, unchanged, removed, failed) of a refresh run
_REFRESH_COUNTS = {
    "created": (1, 1, 0, 0, 0, 0),
    "updated": (1, 0, 1, 0, 0, 0),
    "unchanged": (1, 0, 0, 1, 0, 0),
    "removed": (1, 0, 0, 0, 1, 0),
    "not_found": (0, 0, 0, 0, 0, 1),
}


def _claim_refresh(verifik_id, **run_fields):
    """Create the refresh's SyncRun unless one for the same id started within the collapse window.

    On Postgres a transaction-scoped advisory lock on the id makes the
    check-then-create atomic across workers.
    """
    window = timezone.now() - timedelta(seconds=settings.VERIFIK_REFRESH_COLLAPSE_SECONDS)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"refresh:{verifik_id}"])
        earlier = (
            SyncRun.objects.filter(
                verifik_id=verifik_id,
                kind__in=[SyncRun.Kind.SINGLE, SyncRun.Kind.WEBHOOK],
                started_at__gte=window,
                outcome__in=[SyncRun.Outcome.RUNNING, SyncRun.Outcome.SUCCEEDED],
            )
            .order_by("-started_at")
            .first()
        )
        run = SyncRun.objects.create(verifik_id=verifik_id, **run_fields)
    return run, earlier


class Pacer:
    """At most `rate` calls per second in this process, spaced evenly (blocking the caller).

    Celery's own task rate limit interacts badly with acks_late and a prefetch
    of one (measured at ~1/s for a 10/s limit), so detail fetches pace themselves.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self, rate):
        if not rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 1.0 / rate
        if start > now:
            time.sleep(start - now)


def parse_rate(text):
    """'10/s', '600/m', '36000/h' -> calls per second; '' or '0' -> None (unlimited)."""
    text = (text or "").strip()
    if text in ("", "0"):
        return None
    count, _, unit = text.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600}.get(unit or "s")
    if seconds is None:
        raise ValueError(f"not a rate: {text!r} (use e.g. 10/s, 600/m)")
    return float(count) / seconds or None


_detail_pacer = Pacer()


def fetch_details_for(run_id, verifik_id, *, last_attempt=True, client=None, pace=True):
    """One detail fetch of a sync, inline or fanned out; counts land on that sync's run.

    A transient failure that will be retried is not counted; the registration
    stays pending, so the next sync tries again even when every retry fails.
    Fanned-out fetches keep to VERIFIK_DETAIL_RATE (`pace`); the inline walk is
    one request at a time already.
    """
    counters = SyncRun.objects.filter(pk=run_id)
    if pace:
        _detail_pacer.wait(parse_rate(settings.VERIFIK_DETAIL_RATE))
    try:
        fetch_and_store(client or build_client(), verifik_id)
    except mapping.MappingError as exc:
        log.warning("Details of %s not stored: %s", verifik_id, exc)
        counters.update(details_failed=F("details_failed") + 1)
        return
    except VerifikError as exc:
        if last_attempt or not exc.retryable:
            counters.update(details_failed=F("details_failed") + 1)
        raise
    counters.update(details_fetched=F("details_fetched") + 1)


def retry_countdown(retries, base=None, cap=600):
    """Seconds before a failed task tries again: exponential with full jitter, bounded."""
    base = settings.VERIFIK_TASK_RETRY_BACKOFF if base is None else base
    return random.uniform(0, min(cap, base * 2**retries))
