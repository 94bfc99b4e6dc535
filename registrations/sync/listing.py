"""Walking the listing: pages, completeness, the status filter, and removed-upstream marking.

A full sync is the only one that marks registrations removed upstream, and
only after a walk that saw registrations and is proven complete, within the
cap VERIFIK_REMOVAL_MAX_FRACTION, and for each candidate confirmed by a
detail GET answering 404. The ids a walk saw are kept in Postgres (seen.py),
so the walker holds one page at a time; a large account's full sync is split
into partitions that workers walk side by side (partitions.py).
"""

import contextvars
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.utils import timezone

from verifik_admin.logs import bind

from .. import budget, mapping
from ..models import AppRegistration, SyncRun
from ..verifik import AuthRejected, NotFound, VerifikError
from . import details as backlog
from . import leases, partitions, runs, seen
from .upsert import Rejected, finish_page, mark_removed, prepare_page, store_detail
from .writer import PageWriter

log = logging.getLogger(__name__)

SHORT_PAGE_RETRIES = 3
PROGRESS_EVERY = 1.0  # seconds between SyncRun progress saves
PAGE_MARGIN = 10  # pages a walk may read past ceil(total / limit): re-reads of the leading pages, growth meanwhile
CANDIDATES_CHUNK = 1000  # removal candidates read from the anti-join at a time
_PROGRESS_FIELDS = ["pages", "seen", "created", "updated", "unchanged", "failed", "failures", "oversized", "cleaned"]


class FilterIgnored(VerifikError):
    """A filtered listing served registrations of statuses it was not asked for."""


class Walk:
    """One pass over the listing, with the evidence needed to trust it for removals."""

    def __init__(
        self,
        client,
        run,
        statuses,
        limit,
        deadline,
        before_page=None,
        key=None,
        pages=(1, None),
        new_only=False,
        rewrite_repeats=False,
    ):
        """`key` names the walk in the seen table (default: the run's id); `pages` = (first, last or None: the end).

        `new_only`: the mirror was empty when the sync began, so pages are stored without looking up stored rows.
        `rewrite_repeats`: ids the key already saw are compared and written all the same (a partition walked
        again: its dead attempt marked pages seen whose writes may not have committed).
        """
        self.client, self.run, self.statuses, self.limit = client, run, statuses, limit
        self.new_only, self.rewrite_repeats = new_only, rewrite_repeats
        self.deadline, self.before_page = deadline, before_page
        self.key = run.pk if key is None else key
        self.first_page, self.last_page = pages
        self.distinct = 0  # ids this walk saw first (the rest were repeats)
        self.totals = []
        self.short_pages = 0
        self.unidentified = 0
        self.fetched = 0
        self.page_cap = None
        self.saved_at = 0.0
        self.writer = None  # the PageWriter, while a pass runs
        self.committed = None  # the last page of the first pass whose write committed (a retry resumes after it)

    def fetch(self, number):
        self.deadline.check()
        page = self._get(number)
        for _ in range(SHORT_PAGE_RETRIES):
            if page.page >= page.pages or len(page.items) >= self.limit:
                break
            log.warning("Page %d came back with %d of %d items; fetching it again", number, len(page.items), self.limit)
            page = self._get(number)
        else:
            if page.page < page.pages and len(page.items) < self.limit:
                self.short_pages += 1
        self.totals.append(page.total)
        return page

    def _get(self, number):
        if self.page_cap is not None and self.fetched >= self.page_cap:
            raise runs.DeadlineExceeded(
                f"Stopped after {self.fetched} listing requests: the listing reported {self.totals[0]} registrations "
                f"({self.page_cap - PAGE_MARGIN} pages of {self.limit}) but kept serving more pages."
            )
        self.fetched += 1
        page = self.client.list_page(number, self.limit, statuses=self.statuses)
        if self.page_cap is None:
            last = math.ceil(page.total / self.limit)
            if self.last_page is not None:
                last = min(last, self.last_page)
            self.page_cap = max(0, last - self.first_page + 1) + PAGE_MARGIN
        return page

    def store(self, page):
        if self.statuses:
            foreign = {i.get("status") for i in page.items if isinstance(i, dict)} - set(self.statuses)
            if foreign:
                shown = ", ".join(sorted(map(str, foreign)))[:200]
                raise FilterIgnored(f"asked for {', '.join(self.statuses)}, the listing also served {shown}")
        prepared = prepare_page(
            page.items,
            self.key,
            self.run.pk,
            new_only=self.new_only,
            item_bytes=page.item_bytes,
            rewrite_repeats=self.rewrite_repeats,
        )
        prepared.number = page.page
        result = prepared.result
        result.fresh = len(page.items) - result.duplicates - result.unidentified
        self.distinct += result.fresh
        self.run.pages += 1
        self.run.seen += result.fresh
        self.unidentified += result.unidentified
        self.writer.submit(prepared)
        self.writer.poll()
        leases.beat(self.run, self.committed)  # every page: the lease's heartbeat, and where a retry would resume
        if time.monotonic() - self.saved_at >= PROGRESS_EVERY:
            self.save_progress()
        return result

    def _written(self, prepared, refused):
        """A page's write is known (the writer calls this in order): its counts reach the run."""
        result = finish_page(prepared, refused)
        self.committed = max(self.committed or 0, prepared.number)
        run = self.run
        run.created += result.created
        run.updated += result.updated
        run.unchanged += result.unchanged
        run.oversized += result.oversized
        run.cleaned += result.cleaned
        runs.record_failures(run, result.failures)

    def save_progress(self):
        """Counts reach the SyncRun at most once a second, and at the end of each pass."""
        self.run.save(update_fields=_PROGRESS_FIELDS)
        self.saved_at = time.monotonic()

    def _numbered(self, number):
        if self.before_page:
            self.before_page(number)
        return number, self.fetch(number)

    def run_pass(self, first=None):
        """Walk the pages in order; `first` is the first page when the caller fetched it already."""
        # Requests stay one at a time, in order; the next page is fetched while this one is
        # prepared, and written (writer.py) while the next is prepared: the API, this process
        # and the database work side by side.
        with PageWriter(self._written) as self.writer:
            self._pages_in_order(first)
        self.save_progress()

    def _pages_in_order(self, first):
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifik-prefetch") as prefetch:

            def ahead_of(number):  # the helper thread logs with this run's context
                return prefetch.submit(contextvars.copy_context().run, self._numbered, number)

            number, page = (self.first_page, first) if first is not None else ahead_of(self.first_page).result()
            while True:
                end = page.pages if self.last_page is None else min(page.pages, self.last_page)
                last = number >= end or not page.items
                ahead = None if last else ahead_of(number + 1)
                self.store(page)
                if last:
                    break
                number, page = ahead.result()
        # Newest first: registrations created while we walked landed on the
        # leading pages. Re-read them until a page holds nothing new.
        number = self.first_page
        while self.first_page == 1:
            page = self.fetch(number)
            result = self.store(page)
            if result.fresh == 0 or number >= page.pages:
                break
            number += 1

    @property
    def complete(self):
        """True when every registration upstream was seen: the listing neither shrank nor skipped."""
        shrank = any(later < earlier for earlier, later in zip(self.totals, self.totals[1:], strict=False))
        return not shrank and not self.short_pages and self.distinct + self.unidentified >= self.totals[-1]


def run_sync(
    *,
    statuses=None,
    trigger=SyncRun.Trigger.COMMAND,
    user_id=None,
    details=None,
    client=None,
    on_details=None,
    before_page=None,
    task_id="",
    on_partitions=None,
    split=None,
):
    """A full sync (or one limited to `statuses`), recorded in a SyncRun that is returned.

    `on_details(run, ids)` receives the ids whose details must be fetched (the
    Celery task fans them out); without it they are fetched inline. A full sync
    of more than VERIFIK_SYNC_PARTITION_PAGES pages is split into partitions:
    `on_partitions(run, partition_ids, details)` hands them to workers (the run
    is returned still running; the last partition to finish closes it). `split`
    (default: only when `on_partitions` is given) says whether a large full sync
    may be split at all: walked in one process, partitions only add requests;
    `split=True` without `on_partitions` runs them here one after another.
    Raises SyncFailed (carrying the run) on failure.
    """
    split = on_partitions is not None if split is None else split
    statuses = list(statuses or [])
    details = settings.VERIFIK_SYNC_DETAILS if details is None else details
    kind = SyncRun.Kind.ACTIVE if statuses else SyncRun.Kind.FULL
    run = leases.create(kind=kind, trigger=trigger, user_id=user_id, statuses=statuses, task_id=task_id or "")
    try:
        return _run_in_lane(run, statuses, details, client, on_details, before_page, on_partitions, split)
    finally:
        leases.release(run.pk)


def lane_priority(statuses):
    """The active lane (reviewers' statuses) draws on the API budget before the full lane."""
    return budget.ACTIVE if statuses else budget.SYNC


def _run_in_lane(run, statuses, details, client, on_details, before_page, on_partitions, split):
    """Run under the single flight of the run's lane: active syncs skip only for an active sync, the full
    lane only for a full sync (one walk, or a split family still alive)."""
    client = client or runs.build_client(priority=lane_priority(statuses))
    plan = None
    full = run.kind == SyncRun.Kind.FULL
    with bind(run_id=run.pk, task_id=run.task_id or None), runs.listing_lock(runs.lane_key(run.kind)) as acquired:
        family = runs.live_family(run) if acquired and full else None
        if not acquired or family:
            holder = family or runs.running_holder(run)
            reason = f"A sync is already running{f' (run #{holder.pk})' if holder else ''}; this one was skipped."
            return runs.finish(run, SyncRun.Outcome.SKIPPED, reason)
        runs.fail_abandoned_runs(run)
        try:
            if full:
                seen.forget_dead()  # no full walk runs now: its lane's rows left belong to walks that died
            with runs.sync_session(settings.VERIFIK_SYNC_STATEMENT_TIMEOUT):
                deadline = runs.Deadline(settings.VERIFIK_SYNC_TIME_LIMIT)
                plan = _walk_and_reconcile(run, client, statuses, before_page, deadline, split, details)
                if plan is None and details:
                    backlog.process_backlog(run, client, on_details)
        except Exception as exc:
            raise runs.fail(run, exc) from exc
        if plan is None:
            return runs.finish(run, SyncRun.Outcome.SUCCEEDED)
    with bind(run_id=run.pk, task_id=run.task_id or None):
        return partitions.dispatch(run, plan, client, details, on_partitions, on_details)


def _walk(run, client, statuses, before_page, deadline, walk=None, first=None):
    """Walk once, and once more when the listing changed under the first walk.

    `walk` and `first` continue a walk whose first page was already fetched.
    """
    limit = settings.VERIFIK_PAGE_SIZE
    walk = walk or Walk(client, run, statuses, limit, deadline, before_page, new_only=_mirror_is_empty())
    walk.run_pass(first)
    if not walk.complete:
        log.warning("Listing changed during sync run %s; walking it once more", run.pk)
        walk = Walk(client, run, statuses, limit, deadline, key=-run.pk)
        walk.run_pass()
    return walk


def _mirror_is_empty():
    return not AppRegistration.objects.exists()


def _walk_and_reconcile(run, client, statuses, before_page, deadline, split, details=True):
    """Walk (and for a full sync, reconcile removals); returns the partitions when a full sync is to be split."""
    if statuses:
        try:
            _walk(run, client, statuses, before_page, deadline)
        except FilterIgnored as exc:
            if len(statuses) == 1:
                raise
            run.note = f"The listing ignored the status filter ({exc}); each status was walked on its own."
            log.warning("Sync run %s: %s", run.pk, run.note)
            for status in statuses:
                _walk(run, client, [status], None, deadline)
        finally:
            seen.forget(run.pk, -run.pk)
        return None
    # The first page says how big the account is: a large one is split, a small one walked from here.
    limit = settings.VERIFIK_PAGE_SIZE
    new_only = _mirror_is_empty()
    walk = Walk(client, run, statuses, limit, deadline, before_page, new_only=new_only)
    number, first = walk._numbered(1)
    specs = partitions.plan(run, client, first, limit, deadline) if split else None
    if specs is not None:
        return partitions.split(run, specs, first.total, new_only, details)
    try:
        walk = _walk(run, client, statuses, before_page, deadline, walk, first)
        if not walk.complete:
            run.note = (
                f"The listing kept changing during the sync ({walk.distinct} seen, {walk.totals[-1]} reported); "
                "registrations missing from it were not marked removed upstream. The next full sync will."
            )
            return None
        reconcile_removals(run, client, walk.key, walk.distinct)
        run.save(update_fields=["removed", "note", *_PROGRESS_FIELDS])
    finally:
        seen.forget(run.pk, -run.pk)
    return None


def reconcile_removals(run, client, key, seen_count):
    """Mark removed upstream the live registrations walk `key` did not see: capped, each confirmed by a 404."""
    if not seen_count:
        run.note = " ".join(
            filter(None, [run.note, "The listing served no registrations; nothing was marked removed upstream."])
        )
        return
    stored = AppRegistration.objects.filter(removed_upstream_at__isnull=True).count()
    fraction = settings.VERIFIK_REMOVAL_MAX_FRACTION
    allowed = math.floor(stored * fraction)
    if seen.count_missing(key, run.started_at, allowed + 1) > allowed:
        run.note = " ".join(
            filter(
                None,
                [
                    run.note,
                    f"More than {allowed} of the {stored} stored registrations (VERIFIK_REMOVAL_MAX_FRACTION = "
                    f"{fraction:g}) are missing from the listing; none was marked removed upstream. "
                    "See the README, 'When the removal cap trips'.",
                ],
            )
        )
        log.warning("Sync run %s: %s", run.pk, run.note)
        return
    _confirm_and_mark(run, client, _candidates(key, run.started_at))


def _candidates(key, before):
    """The anti-join's rows a chunk at a time, in id order: memory stays flat however many there are."""
    after = ""
    while chunk := seen.missing(key, before, CANDIDATES_CHUNK, after):
        yield from chunk
        after = chunk[-1]


def _confirm_and_mark(run, client, candidates):
    """Mark removed only the candidates whose own detail GET answers 404; store those Verifik still has."""
    still_there, unconfirmed = 0, 0
    for verifik_id in candidates:
        leases.beat(run)
        try:
            payload = client.get(verifik_id, populates=settings.VERIFIK_POPULATES)
        except NotFound:
            run.removed += mark_removed([verifik_id], timezone.now())
            continue
        except AuthRejected:
            raise
        except VerifikError as exc:
            unconfirmed += 1
            log.warning("Removal of %s not confirmed: %s", verifik_id, exc)
            continue
        try:
            store_detail(payload, run.pk)
            still_there += 1
        except (mapping.MappingError, Rejected) as exc:
            runs.record_failures(run, [{"id": verifik_id, "reason": str(exc)}])
    notes = []
    if still_there:
        notes.append(f"{still_there} registrations missing from the listing still answered their detail GET: kept.")
    if unconfirmed:
        notes.append(f"{unconfirmed} could not be confirmed removed (no 404): left as they were.")
    run.note = " ".join(filter(None, [run.note, *notes]))
