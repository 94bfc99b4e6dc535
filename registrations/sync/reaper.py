"""The reaper: finds work whose holder died or whose message was lost, and ends it or hands it out again.

The database holds every plan: a listing run or partition is a SyncRun row with
a lease (leases.py), a refresh is a PendingRefresh claim, a detail fetch is a
registration's `details_queued_at`. The broker only delivers. So when a worker
is SIGKILLed, Postgres restarts or Redis comes back empty, what was lost is read
back from those rows every VERIFIK_REAPER_SECONDS:

- a listing run or a started partition whose lease lock is free, or whose heartbeat
  is older than VERIFIK_RUN_LEASE_SECONDS, is marked failed with the reason;
- a dead partition is dispatched again, as a new attempt, from its last committed page,
  up to VERIFIK_PARTITION_ATTEMPTS attempts in all; then the family fails at once and
  frees the full lane (its partitions still walking stop at their next heartbeat);
- a partition handed out over a lease ago that never started, while no partition of its
  family holds a lease or beat within it, lost its message (a broker restarted empty):
  its message is sent again; after VERIFIK_PARTITION_ATTEMPTS sends it counts as dead;
- a family whose partitions all ended but whose closing step died is failed;
- refresh claims queued over a lease ago with no refresh running are queued again,
  and detail fetches handed to workers past VERIFIK_DETAIL_REQUEUE_MINUTES ago.

Every change is conditional on the row still being as read, so a holder that
finishes while the reaper looks is never overwritten, and two reapers never act twice.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import PendingRefresh, SyncRun
from . import details, leases, partitions, runs, seen

log = logging.getLogger(__name__)

REAPER_LOCK_KEY = 0x5EF1_1C7  # pg advisory lock id: one reaper at a time
REQUEUE_BATCH = 500  # refresh claims and detail fetches queued again per pass, at most
_LEASED_KINDS = (SyncRun.Kind.FULL, SyncRun.Kind.ACTIVE, SyncRun.Kind.PARTITION)
_SINGLE_KINDS = (SyncRun.Kind.SINGLE, SyncRun.Kind.WEBHOOK)


@dataclass
class Report:
    """What one pass did, by run id; `skipped` when another reaper was at work."""

    skipped: bool = False
    failed: list = field(default_factory=list)  # listing runs and partitions marked failed
    redispatched: list = field(default_factory=list)  # new partition attempts handed to workers
    resent: list = field(default_factory=list)  # partitions not started whose message was sent again
    families_failed: list = field(default_factory=list)
    refreshes: list = field(default_factory=list)  # verifik ids whose refresh was queued again
    details: int = 0  # detail fetches queued again


def reap(*, on_partitions, on_refresh, on_details):
    """One pass. `on_partitions(parent, ids, details)`, `on_refresh(pending)` and `on_details(ids)` enqueue."""
    with runs.listing_lock(REAPER_LOCK_KEY) as mine:
        if not mine:
            return Report(skipped=True)
        report = Report()
        now = timezone.now()
        stale_before = now - timedelta(seconds=settings.VERIFIK_RUN_LEASE_SECONDS)
        _reap_runs(report, now, stale_before, on_partitions)
        _fail_orphans(report, now)
        _requeue_refreshes(report, stale_before, on_refresh)
        ids = details.claim_lost(REQUEUE_BATCH)
        if ids:
            on_details(ids)
            report.details = len(ids)
    if report.failed or report.resent or report.families_failed or report.refreshes or report.details:
        log.warning("Reaper: %s", report)
    return report


def _age(since, now):
    return f"{(now - since).total_seconds():.0f} s"


def stalled(run, holders, now, stale_before):
    """Why `run`'s holder is dead, in words for its error; empty while it may be alive (or never started)."""
    if run.pk in holders:
        if run.heartbeat_at is not None and run.heartbeat_at < stale_before:
            lease = f"VERIFIK_RUN_LEASE_SECONDS = {settings.VERIFIK_RUN_LEASE_SECONDS:g}"
            return (
                f"The worker running this sync stopped before it finished: it holds its lease but sent no "
                f"heartbeat for {_age(run.heartbeat_at, now)} ({lease}); found by the reaper."
            )
        return ""
    if run.kind == SyncRun.Kind.PARTITION and run.heartbeat_at is None:
        return ""  # not started: see _lost
    return (
        "The worker running this sync stopped before it finished: its lease lock was free (its connection "
        "to Postgres ended); found by the reaper."
    )


def dispatched_at(run):
    """When a partition not started yet was last handed to the broker."""
    resent_at = run.partition.get("resent_at")
    return datetime.fromisoformat(resent_at) if resent_at else run.started_at


def _reap_runs(report, now, stale_before, on_partitions):
    running = list(SyncRun.objects.filter(outcome=SyncRun.Outcome.RUNNING, kind__in=_LEASED_KINDS))
    holders = leases.holders([run.pk for run in running])
    busy = _busy_families(running, holders, stale_before)
    for run in running:
        if run.partitions:  # a split family: alive through its partitions
            continue
        if run.kind == SyncRun.Kind.PARTITION and run.heartbeat_at is None and run.pk not in holders:
            if dispatched_at(run) < stale_before and run.parent_id not in busy:
                _lost(report, run, now, on_partitions)
            continue
        why = stalled(run, holders, now, stale_before)
        if not why:
            continue
        if run.kind == SyncRun.Kind.PARTITION:
            _reap_partition(report, run, why, now, on_partitions)
        elif _fail(run, why, now):
            report.failed.append(run.pk)
    for family in (run for run in running if run.partitions and run.pk not in holders):
        _close_abandoned(report, family, stale_before)


def _busy_families(running, holders, stale_before):
    """Families one of whose partitions holds its lease or beat within it (each beats every page, up to its
    last): workers are taking its partitions, and the ones still queued wait their turn."""
    families = [run.pk for run in running if run.partitions]
    if not families:
        return set()
    busy = {run.parent_id for run in running if run.kind == SyncRun.Kind.PARTITION and run.pk in holders}
    recent = SyncRun.objects.filter(parent_id__in=families, heartbeat_at__gte=stale_before)
    return busy | set(recent.values_list("parent_id", flat=True).distinct())


def _lost(report, run, now, on_partitions):
    """A partition handed out over a lease ago, not started while its family made no progress: its message
    was lost (or waits behind other work). It is sent again, the same run, so a false alarm costs nothing
    but a duplicate message that finds the run taken; after VERIFIK_PARTITION_ATTEMPTS sends it counts
    as a dead attempt."""
    spec = run.partition
    sent = spec.get("resent", 0) + 1
    if sent >= settings.VERIFIK_PARTITION_ATTEMPTS:
        why = (
            f"Sent to the workers {sent} times (VERIFIK_PARTITION_ATTEMPTS = {settings.VERIFIK_PARTITION_ATTEMPTS}) "
            f"and never started, the last {_age(dispatched_at(run), now)} ago, while its full sync made no "
            "progress: its messages were lost; found by the reaper."
        )
        _reap_partition(report, run, why, now, on_partitions)
        return
    again = {**spec, "resent": sent, "resent_at": now.isoformat()}
    if SyncRun.objects.filter(pk=run.pk, outcome=SyncRun.Outcome.RUNNING, heartbeat_at=None).update(partition=again):
        parent = SyncRun.objects.get(pk=run.parent_id)
        on_partitions(parent, [run.pk], parent.partition.get("details", True))
        report.resent.append(run.pk)
        log.warning("Partition run %s was sent again: dispatched over a lease ago and never started", run.pk)


def _fail(run, why, now):
    """Mark one running run failed; False when it ended meanwhile."""
    ended = SyncRun.objects.filter(pk=run.pk, outcome=SyncRun.Outcome.RUNNING).update(
        outcome=SyncRun.Outcome.FAILED, finished_at=now, error=why
    )
    if ended:
        log.error("Sync run %s failed: %s", run.pk, why)
    return bool(ended)


def _reap_partition(report, child, why, now, on_partitions):
    """Fail the attempt; walk it again from its last committed page, or fail the family when attempts are spent."""
    with transaction.atomic():
        parent = SyncRun.objects.select_for_update().get(pk=child.parent_id)
        if not _fail(child, why, now):
            return
        report.failed.append(child.pk)
        child.refresh_from_db()
        if parent.outcome != SyncRun.Outcome.RUNNING:
            return
        spec = child.partition
        attempt = spec.get("attempt", 1)
        if attempt >= settings.VERIFIK_PARTITION_ATTEMPTS:
            partitions.count_in(parent, child)
            reason = (
                f"The partition of {spec.get('status')} from page {spec.get('first')} (run #{child.pk}) failed "
                f"{attempt} attempts (VERIFIK_PARTITION_ATTEMPTS = {settings.VERIFIK_PARTITION_ATTEMPTS}); nothing "
                f"was marked removed upstream. The last: {why}"
            )
            fail_family(parent, reason, now)
            report.families_failed.append(parent.pk)
            return
        partitions.count_in(parent, child, done=False)  # its pages count; the next attempt finishes the partition
        keep = {key: value for key, value in spec.items() if key not in ("seen", "unidentified", "resent", "resent_at")}
        again = SyncRun.objects.create(
            kind=SyncRun.Kind.PARTITION,
            trigger=child.trigger,
            user_id=child.user_id,
            statuses=child.statuses,
            parent=parent,
            partition={
                **keep,
                "first": child.committed_page or spec["first"],
                "attempt": attempt + 1,
                "replaces": child.pk,
            },
        )
        report.redispatched.append(again.pk)
        details_flag = parent.partition.get("details", True)
        transaction.on_commit(lambda: on_partitions(parent, [again.pk], details_flag))
    log.warning("Partition run %s walks again as run %s from page %s", child.pk, again.pk, again.partition["first"])


def fail_family(parent, reason, now=None):
    """Fail a split full sync at once, and its partitions not ended yet: the full lane is free."""
    now = now or timezone.now()
    if not _fail(parent, reason, now):
        return False
    SyncRun.objects.filter(parent=parent, outcome=SyncRun.Outcome.RUNNING).update(
        outcome=SyncRun.Outcome.FAILED, finished_at=now, error=f"Its full sync (run #{parent.pk}) failed: {reason}"
    )
    seen.forget(parent.pk)
    return True


def _close_abandoned(report, family, stale_before):
    """A family whose every partition ended over a lease ago but which is still running: its closer died."""
    attempts = partitions.latest_attempts(family)
    if not attempts or any(child.outcome == SyncRun.Outcome.RUNNING for child in attempts):
        return
    last = max((child.finished_at for child in attempts if child.finished_at), default=None)
    if last is not None and last >= stale_before:
        return
    reason = (
        "Every partition ended but the worker closing the full sync stopped before it finished; nothing was "
        "marked removed upstream (found by the reaper). The next full sync will."
    )
    if fail_family(family, reason):
        report.families_failed.append(family.pk)


def _fail_orphans(report, now):
    """Partitions still 'running' in a family that ended: nothing will ever finish them."""
    orphans = SyncRun.objects.filter(kind=SyncRun.Kind.PARTITION, outcome=SyncRun.Outcome.RUNNING).exclude(
        parent__outcome=SyncRun.Outcome.RUNNING
    )
    for orphan in orphans:
        if _fail(orphan, f"Its full sync (run #{orphan.parent_id}) had already ended (found by the reaper).", now):
            report.failed.append(orphan.pk)


def _requeue_refreshes(report, stale_before, on_refresh):
    """Refresh claims queued over a lease ago with no refresh of theirs running: their message was lost."""
    stale = PendingRefresh.objects.filter(state=PendingRefresh.State.QUEUED, updated_at__lt=stale_before)
    for pending in stale.order_by("updated_at")[:REQUEUE_BATCH]:
        if SyncRun.objects.filter(
            verifik_id=pending.verifik_id, kind__in=_SINGLE_KINDS, outcome=SyncRun.Outcome.RUNNING
        ).exists():
            continue
        touched = PendingRefresh.objects.filter(
            pk=pending.pk, state=PendingRefresh.State.QUEUED, updated_at=pending.updated_at
        ).update(updated_at=timezone.now())
        if touched:
            on_refresh(pending)
            report.refreshes.append(pending.verifik_id)
