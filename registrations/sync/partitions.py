"""A full sync split across workers: one walk per status (large statuses cut into page ranges).

The parent SyncRun is the full sync; each partition is a child SyncRun walked by
its own task, all of them recording what they see under the parent's walk key
(seen.py). The full lane's single flight holds for the whole family: the parent
plans and creates the partitions under the lane's exclusive lock, partitions
hold its shared side while they walk, and a full sync that finds the family
alive between partitions skips (active syncs run: their lane is another).
Each partition walks under its lease (leases.py); the reaper walks a dead one
again from its last committed page (reaper.py). The last partition to finish (counted on the parent's row,
under a row lock) closes the family: removals are marked only when every
partition succeeded and the family saw as many registrations as the listing
reports, with the same cap and 404 confirmation as a single walk.
"""

import logging
import math

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from verifik_admin.logs import bind

from ..models import RegistrationStatus, SyncRun
from . import details as backlog
from . import leases, runs, seen

log = logging.getLogger(__name__)

# Counters a partition adds to its parent when it ends.
_COUNTERS = ["pages", "created", "updated", "unchanged", "failed", "cleaned", "oversized"]


def plan(run, client, first, limit, deadline):
    """The partitions of a full sync whose first page is `first`, or None to walk it in one go.

    One single-item request per known status gives each status's total. The
    account is walked in one go (with a note) when it is small, when the
    listing ignores the status filter, or when the statuses' totals do not add
    up to the account's (registrations of a status this version does not know
    would be missed by status partitions).
    """
    span = settings.VERIFIK_SYNC_PARTITION_PAGES
    if not span or first.pages <= span or not first.items:
        return None
    totals = {}
    for status in RegistrationStatus.values:
        deadline.check()
        probe = client.list_page(1, 1, statuses=[status])
        served = {item.get("status") for item in probe.items if isinstance(item, dict)}
        if served - {status}:
            _walked_whole(run, f"the listing ignored the status filter (asked for {status})")
            return None
        totals[status] = probe.total
    if sum(totals.values()) != first.total:
        _walked_whole(
            run, f"the statuses' totals add up to {sum(totals.values())} where the listing reports {first.total}"
        )
        return None
    sized = []
    for status, total in totals.items():
        pages = max(1, math.ceil(total / limit))  # an empty status still gets a walk: it may fill meanwhile
        for start in range(1, pages + 1, span):
            end = start + span - 1
            sized.append(
                (min(end, pages) - start + 1, {"status": status, "first": start, "last": None if end >= pages else end})
            )
    # Longest first: workers that take them in order finish together, not waiting on one long walk at the end.
    sized.sort(key=lambda pair: -pair[0])
    return [spec for _, spec in sized]


def _walked_whole(run, why):
    run.note = f"Walked as one listing, not split by status: {why}."
    log.warning("Sync run %s: %s", run.pk, run.note)


def split(run, specs, total, new_only=False, details=True):
    """Create the partition runs (under the listing lock); the family is alive from here.

    The plan lives in these rows, not in the broker: the reaper re-dispatches a
    partition whose message or worker was lost (reaper.py).
    """
    children = SyncRun.objects.bulk_create(
        SyncRun(
            kind=SyncRun.Kind.PARTITION,
            trigger=run.trigger,
            user_id=run.user_id,
            statuses=[spec["status"]],
            partition={**spec, "attempt": 1},
            parent=run,
        )
        for spec in specs
    )
    run.partitions = len(children)
    run.partition = {"total": total, "new_only": new_only, "details": details}
    run.save(update_fields=["partitions", "partition", "note"])
    log.info("Sync run %s split into %d partitions", run.pk, len(children))
    return [child.pk for child in children]


def dispatch(run, partition_ids, client, details, on_partitions, on_details):
    """Hand the partitions to workers, or (without `on_partitions`) walk them here one after another."""
    try:
        if on_partitions is not None:
            on_partitions(run, partition_ids, details)
        else:
            for partition_id in partition_ids:
                run_partition(partition_id, client=client, details=details, on_details=on_details)
    except runs.SyncFailed:
        raise
    except Exception as exc:
        SyncRun.objects.filter(parent=run, outcome=SyncRun.Outcome.RUNNING).update(
            outcome=SyncRun.Outcome.FAILED, finished_at=timezone.now(), error="Its full sync failed to start it."
        )
        raise runs.fail(run, exc) from exc
    run.refresh_from_db()
    if run.outcome == SyncRun.Outcome.FAILED:
        raise runs.SyncFailed(run)
    return run


def run_partition(partition_id, *, client=None, details=True, on_details=None, task_id=""):
    """Walk one partition; the last of its family to finish closes the family. Returns the parent run.

    Idempotent: a partition already finished (a task delivered twice) only
    returns. Raises SyncFailed when it closed the family and the family failed.
    """
    child = SyncRun.objects.select_related("parent").get(pk=partition_id)
    parent = child.parent
    if child.outcome != SyncRun.Outcome.RUNNING:
        return parent
    with bind(run_id=parent.pk, partition_run_id=child.pk, task_id=task_id or None):
        with leases.held(child.pk) as mine:
            if not mine or not leases.start(child):
                return parent  # another worker walks it (a message delivered twice), or the reaper gave up on it
            if task_id:
                child.task_id = task_id
                child.save(update_fields=["task_id"])
            last = _walk_and_count_in(child, parent, client or runs.build_client())
        if last:
            return close_family(parent.pk, client or runs.build_client(), details, on_details)
    return parent


def _walk_and_count_in(child, parent, client):
    """Walk the partition under its lease; True when it was the family's last to count in."""
    with runs.partition_lock() as acquired:
        try:
            if not acquired:
                raise runs.DeadlineExceeded(
                    f"Another sync held the listing lock for {runs.PARTITION_LOCK_WAIT:g} s; partition not walked."
                )
            _walk_partition(child, parent, client)
            closed = runs.finish_if_running(child, SyncRun.Outcome.SUCCEEDED)
        except Exception as exc:  # the family fails below; the exception is recorded, not raised
            if isinstance(exc, DatabaseError) and not connection.is_usable():
                # The database went away (restarted, this backend killed): the lease lock went with the
                # connection, and the reaper walks the partition again from its last committed page.
                log.warning("Partition run %s lost its database connection (%s); the reaper retries it", child.pk, exc)
                connection.close()
                return False
            log.error("Partition run %s failed: %s", child.pk, runs.describe_failure(exc))
            closed = runs.finish_if_running(child, SyncRun.Outcome.FAILED, runs.describe_failure(exc))
        # A run the reaper ended meanwhile is not counted here: the reaper walks it again or counts it in.
        return count_in(parent, child) if closed else False


def _walk_partition(child, parent, client):
    from .listing import Walk  # listing imports this module

    parent.refresh_from_db(fields=["outcome", "started_at", "partition"])
    if parent.outcome != SyncRun.Outcome.RUNNING:
        raise runs.DeadlineExceeded(f"Its full sync (run #{parent.pk}) had already ended.")
    limit = settings.VERIFIK_SYNC_TIME_LIMIT
    remaining = limit - (timezone.now() - parent.started_at).total_seconds() if limit else 0
    if limit and remaining <= 0:
        raise runs.DeadlineExceeded(f"Stopped after VERIFIK_SYNC_TIME_LIMIT ({limit:g} s).")
    spec = child.partition
    retry = spec.get("attempt", 1) > 1
    with runs.sync_session(settings.VERIFIK_SYNC_STATEMENT_TIMEOUT):
        walk = Walk(
            client,
            child,
            [spec["status"]],
            settings.VERIFIK_PAGE_SIZE,
            runs.Deadline(remaining),
            key=parent.pk,
            pages=(spec["first"], spec["last"]),
            new_only=parent.partition.get("new_only", False) and not retry,
            rewrite_repeats=retry,
        )
        walk.run_pass()
    child.partition = {**spec, "seen": walk.distinct, "unidentified": walk.unidentified}
    child.save(update_fields=["partition"])


def count_in(parent, child, done=True):
    """Add a finished partition's counters to its parent; True for the last partition of the family.

    `done=False`: an attempt the reaper gave up on, walked again: its counters count, the partition does not.
    """
    with transaction.atomic():
        row = SyncRun.objects.select_for_update().get(pk=parent.pk)
        for name in _COUNTERS:
            setattr(row, name, getattr(row, name) + getattr(child, name))
        room = runs.MAX_LISTED_FAILURES - len(row.failures)
        row.failures = row.failures + child.failures[: max(room, 0)]
        row.seen += child.seen  # repeats across partitions included; the family's distinct count replaces it
        row.partitions_done += int(done)
        row.save(update_fields=[*_COUNTERS, "failures", "seen", "partitions_done"])
        return row.partitions_done >= row.partitions


def close_family(parent_id, client, details, on_details):
    """The last partition's step: removals only when every partition completed; then the detail backlog."""
    with leases.held(parent_id) as mine:
        run = SyncRun.objects.get(pk=parent_id)
        if not mine or run.outcome != SyncRun.Outcome.RUNNING:
            return run  # another process closes it, or the reaper failed it already
        return _close(run, client, details, on_details)


def latest_attempts(run):
    """The family's partitions, each by its latest attempt (a partition walked again replaces the one before)."""
    children = list(run.partition_runs.order_by("pk"))
    replaced = {child.partition.get("replaces") for child in children}
    return [child for child in children if child.pk not in replaced]


def _close(run, client, details, on_details):
    from .listing import reconcile_removals  # listing imports this module

    children = latest_attempts(run)
    try:
        with runs.sync_session(settings.VERIFIK_SYNC_STATEMENT_TIMEOUT):
            failed = [child for child in children if child.outcome != SyncRun.Outcome.SUCCEEDED]
            if failed:
                what = failed[0].partition
                raise runs.PartitionsFailed(
                    f"{len(failed)} of {len(children)} partitions failed; nothing was marked removed upstream. "
                    f"First: {what.get('status')} from page {what.get('first')} (run #{failed[0].pk}): "
                    f"{failed[0].error}"
                )
            run.seen = seen.count(run.pk)
            unidentified = sum(child.partition.get("unidentified", 0) for child in children)
            reported = max(run.partition.get("total", 0), client.list_page(1, 1).total)
            if run.seen + unidentified < reported:
                run.note = " ".join(
                    filter(
                        None,
                        [
                            run.note,
                            f"The listing kept changing during the sync ({run.seen} seen, {reported} reported); "
                            "registrations missing from it were not marked removed upstream. The next full sync will.",
                        ],
                    )
                )
            else:
                reconcile_removals(run, client, run.pk, run.seen)
            run.save(update_fields=["seen", "removed", "note"])
            if details:
                backlog.process_backlog(run, client, on_details)
    except Exception as exc:
        raise runs.fail(run, exc) from exc
    finally:
        seen.forget(run.pk)
    return runs.finish(run, SyncRun.Outcome.SUCCEEDED)
