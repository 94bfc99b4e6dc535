"""Walking the listing: pages, completeness, the status filter, and removed-upstream marking.

A full sync is the only one that marks registrations removed upstream, and
only after a walk that saw registrations and is proven complete, within the
cap VERIFIK_REMOVAL_MAX_FRACTION, and for each candidate confirmed by a
detail GET answering 404.
"""

import contextvars
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.utils import timezone

from verifik_admin.logs import bind

from .. import mapping
from ..models import AppRegistration, SyncRun
from ..verifik import AuthRejected, NotFound, VerifikError
from . import details as backlog
from . import runs
from .upsert import Rejected, mark_removed, store_detail, store_page

log = logging.getLogger(__name__)

SHORT_PAGE_RETRIES = 3
PROGRESS_EVERY = 1.0  # seconds between SyncRun progress saves
PAGE_MARGIN = 10  # pages a walk may read past ceil(total / limit): re-reads of the leading pages, growth meanwhile
_PROGRESS_FIELDS = ["pages", "seen", "created", "updated", "unchanged", "failed", "failures", "oversized", "cleaned"]


class FilterIgnored(VerifikError):
    """A filtered listing served registrations of statuses it was not asked for."""


class Walk:
    """One pass over the listing, with the evidence needed to trust it for removals."""

    def __init__(self, client, run, statuses, limit, deadline, before_page=None):
        self.client, self.run, self.statuses, self.limit = client, run, statuses, limit
        self.deadline, self.before_page = deadline, before_page
        self.seen = set()
        self.totals = []
        self.short_pages = 0
        self.unidentified = 0
        self.fetched = 0
        self.page_cap = None
        self.saved_at = 0.0

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
            self.page_cap = math.ceil(page.total / self.limit) + PAGE_MARGIN
        return page

    def store(self, page):
        if self.statuses:
            foreign = {i.get("status") for i in page.items if isinstance(i, dict)} - set(self.statuses)
            if foreign:
                shown = ", ".join(sorted(map(str, foreign)))[:200]
                raise FilterIgnored(f"asked for {', '.join(self.statuses)}, the listing also served {shown}")
        result = store_page(page.items, self.seen, self.run.pk)
        run = self.run
        run.pages += 1
        run.seen += len(page.items) - result.duplicates - result.unidentified
        self.unidentified += result.unidentified
        run.created += result.created
        run.updated += result.updated
        run.unchanged += result.unchanged
        run.oversized += result.oversized
        run.cleaned += result.cleaned
        runs.record_failures(run, result.failures)
        if time.monotonic() - self.saved_at >= PROGRESS_EVERY:
            self.save_progress()
        return result

    def save_progress(self):
        """Counts reach the SyncRun at most once a second, and at the end of each pass."""
        self.run.save(update_fields=_PROGRESS_FIELDS)
        self.saved_at = time.monotonic()

    def _numbered(self, number):
        if self.before_page:
            self.before_page(number)
        return number, self.fetch(number)

    def run_pass(self):
        # Requests stay one at a time, in order; the next page is fetched while
        # this one is written, so the API and the database work side by side.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifik-prefetch") as prefetch:

            def ahead_of(number):  # the helper thread logs with this run's context
                return prefetch.submit(contextvars.copy_context().run, self._numbered, number)

            ahead = ahead_of(1)
            while True:
                number, page = ahead.result()
                last = number >= page.pages or not page.items
                if not last:
                    ahead = ahead_of(number + 1)
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
    task_id="",
):
    """A full sync (or one limited to `statuses`), recorded in a SyncRun that is returned.

    `on_details(run, ids)` receives the ids whose details must be fetched (the
    Celery task fans them out); without it they are fetched inline. Raises
    SyncFailed (carrying the run) on failure.
    """
    statuses = list(statuses or [])
    details = settings.VERIFIK_SYNC_DETAILS if details is None else details
    kind = SyncRun.Kind.ACTIVE if statuses else SyncRun.Kind.FULL
    run = SyncRun.objects.create(kind=kind, trigger=trigger, user_id=user_id, statuses=statuses, task_id=task_id or "")
    client = client or runs.build_client()
    with bind(run_id=run.pk, task_id=task_id or None), runs.listing_lock() as acquired:
        if not acquired:
            holder = runs.running_holder(run)
            reason = f"A sync is already running{f' (run #{holder.pk})' if holder else ''}; this one was skipped."
            return runs.finish(run, SyncRun.Outcome.SKIPPED, reason)
        runs.fail_abandoned_runs(run)
        try:
            with runs.statement_timeout(settings.VERIFIK_SYNC_STATEMENT_TIMEOUT):
                deadline = runs.Deadline(settings.VERIFIK_SYNC_TIME_LIMIT)
                _walk_and_reconcile(run, client, statuses, before_page, deadline)
                if details:
                    backlog.process_backlog(run, client, on_details)
        except Exception as exc:
            raise runs.fail(run, exc) from exc
        return runs.finish(run, SyncRun.Outcome.SUCCEEDED)


def _walk(run, client, statuses, before_page, deadline):
    """Walk once, and once more when the listing changed under the first walk."""
    limit = settings.VERIFIK_PAGE_SIZE
    walk = Walk(client, run, statuses, limit, deadline, before_page)
    walk.run_pass()
    if not walk.complete:
        log.warning("Listing changed during sync run %s; walking it once more", run.pk)
        walk = Walk(client, run, statuses, limit, deadline)
        walk.run_pass()
    return walk


def _walk_and_reconcile(run, client, statuses, before_page, deadline):
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
        return
    walk = _walk(run, client, statuses, before_page, deadline)
    if not walk.complete:
        run.note = (
            f"The listing kept changing during the sync ({len(walk.seen)} seen, {walk.totals[-1]} reported); "
            "registrations missing from it were not marked removed upstream. The next full sync will."
        )
        return
    _reconcile_removals(run, client, walk)
    run.save(update_fields=["removed", "note", *_PROGRESS_FIELDS])


def _reconcile_removals(run, client, walk):
    if not walk.seen:
        run.note = "The listing served no registrations; nothing was marked removed upstream."
        return
    live = AppRegistration.objects.filter(removed_upstream_at__isnull=True)
    stored = live.count()
    fraction = settings.VERIFIK_REMOVAL_MAX_FRACTION
    allowed = math.floor(stored * fraction)
    candidates = []
    for verifik_id in (
        live.filter(first_synced_at__lt=run.started_at).values_list("verifik_id", flat=True).iterator(chunk_size=5000)
    ):
        if bytes.fromhex(verifik_id) not in walk.seen:
            candidates.append(verifik_id)
            if len(candidates) > allowed:
                run.note = (
                    f"More than {allowed} of the {stored} stored registrations (VERIFIK_REMOVAL_MAX_FRACTION = "
                    f"{fraction:g}) are missing from the listing; none was marked removed upstream. "
                    "See the README, 'When the removal cap trips'."
                )
                log.warning("Sync run %s: %s", run.pk, run.note)
                return
    _confirm_and_mark(run, client, candidates)


def _confirm_and_mark(run, client, candidates):
    """Mark removed only the candidates whose own detail GET answers 404; store those Verifik still has."""
    still_there, unconfirmed = 0, 0
    for verifik_id in candidates:
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
