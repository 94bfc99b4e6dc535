"""Celery tasks: thin wrappers over the sync service.

Other tools call these by name, so the names and arguments are a contract.
Every task is idempotent (acks_late is on): a task lost with its worker can
simply run again. Every task has a soft and a hard time limit (settings).
"""

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from . import sync
from .models import SyncRun
from .sync import reaper
from .sync.refresh import QUEUED
from .verifik import VerifikError

RETRY_BACKOFF_CAP = 600  # seconds: the longest wait between two tries of a task
# Bulk work (a full sync's partitions, detail fetches) is queued at the lowest priority: on Redis a worker
# takes the next message from priority 0 (every other task) first, so an active sync or a refresh queued
# behind a thousand partitions takes the next free worker slot instead of waiting for them all to start.
BULK_PRIORITY = 9
# Hard limits leave the soft limit's handler time to record the failure.
SYNC_LIMITS = {
    "soft_time_limit": settings.VERIFIK_SYNC_TIME_LIMIT + 60,
    "time_limit": settings.VERIFIK_SYNC_TIME_LIMIT + 300,
}
SHORT_LIMITS = {
    "soft_time_limit": settings.VERIFIK_TASK_TIME_LIMIT,
    "time_limit": settings.VERIFIK_TASK_TIME_LIMIT + 30,
}


def _retry_or_raise(task, exc):
    """Transient failures try again later with Celery's exponential backoff and full jitter; anything else fails now.

    Eager tasks never retry: their caller is waiting, and the client has
    already retried with backoff.
    """
    if exc.retryable and not task.request.is_eager and task.request.retries < settings.VERIFIK_TASK_MAX_RETRIES:
        countdown = get_exponential_backoff_interval(
            factor=max(1, round(settings.VERIFIK_TASK_RETRY_BACKOFF)),  # Celery's jitter draws whole seconds
            retries=task.request.retries,
            maximum=RETRY_BACKOFF_CAP,
            full_jitter=True,
        )
        raise task.retry(countdown=countdown, exc=exc)
    raise exc


def _fan_out_details(run, verifik_ids):
    for verifik_id in verifik_ids:
        fetch_registration_details.apply_async((verifik_id, run.pk), priority=BULK_PRIORITY)


def _fan_out_partitions(run, partition_ids, details):
    for partition_id in partition_ids:
        sync_partition.apply_async((partition_id, details), priority=BULK_PRIORITY)


@shared_task(bind=True, **SYNC_LIMITS)
def sync_registrations(self, statuses=None, trigger=SyncRun.Trigger.SCHEDULE, user_id=None):
    """A full sync, or only the given statuses; a large full sync fans out partitions, details fan out as
    tasks; every request is paced by the API budget."""
    try:
        run = sync.run_sync(
            statuses=statuses,
            trigger=trigger,
            user_id=user_id,
            on_details=_fan_out_details,
            on_partitions=_fan_out_partitions,
            task_id=self.request.id,
        )
    except sync.SyncFailed as exc:
        _retry_or_raise(self, exc)
    return run.pk


@shared_task(bind=True, **SYNC_LIMITS)
def sync_partition(self, partition_run_id, details=True):
    """One partition of a split full sync; the last to finish closes the family. Not retried: the family fails."""
    return sync.run_partition(
        partition_run_id, details=details, on_details=_fan_out_details, task_id=self.request.id
    ).pk


@shared_task(bind=True, **SHORT_LIMITS)
def refresh_registration(self, verifik_id, trigger=SyncRun.Trigger.USER, user_id=None, kind=SyncRun.Kind.SINGLE):
    """One registration from the detail endpoint; requests that arrived meanwhile queue exactly one more."""

    def again():
        refresh_registration.apply_async((verifik_id,), {"trigger": trigger, "user_id": user_id, "kind": kind})

    try:
        run = sync.refresh(
            verifik_id,
            trigger=trigger,
            user_id=user_id,
            kind=kind,
            task_id=self.request.id,
            on_again=None if self.request.is_eager else again,
        )
    except sync.SyncFailed as exc:
        _retry_or_raise(self, exc)
    return run.pk


@shared_task(**SHORT_LIMITS)
def refresh_registrations(verifik_ids, trigger=SyncRun.Trigger.USER, user_id=None):
    """Fan out one refresh per id (each through the debounce)."""
    for verifik_id in verifik_ids:
        if sync.claim_refresh(verifik_id, trigger=trigger, user_id=user_id) == QUEUED:
            refresh_registration.delay(verifik_id, trigger=trigger, user_id=user_id)


@shared_task(bind=True, **SHORT_LIMITS)
def fetch_registration_details(self, verifik_id, sync_run_id):
    """One detail fetch of a sync's fan-out (paced by the account's API budget, below refreshes)."""
    last_attempt = self.request.retries >= settings.VERIFIK_TASK_MAX_RETRIES
    try:
        sync.fetch_details_for(sync_run_id, verifik_id, last_attempt=last_attempt)
    except VerifikError as exc:
        _retry_or_raise(self, exc)


@shared_task(**SHORT_LIMITS)
def reap_stalled_work():
    """Every VERIFIK_REAPER_SECONDS: fail dead runs and partitions, walk partitions again, re-queue lost work."""

    def refresh_again(pending):
        refresh_registration.delay(
            pending.verifik_id, trigger=pending.trigger, user_id=pending.user_id, kind=pending.kind
        )

    def details_again(verifik_ids):
        for verifik_id in verifik_ids:
            fetch_registration_details.apply_async((verifik_id, None), priority=BULK_PRIORITY)

    report = reaper.reap(on_partitions=_fan_out_partitions, on_refresh=refresh_again, on_details=details_again)
    return {
        "failed": report.failed,
        "redispatched": report.redispatched,
        "resent": report.resent,
        "families_failed": report.families_failed,
    }


@shared_task(**SHORT_LIMITS)
def prune_sync_history():
    """Daily: SyncRuns and WebhookDeliveries older than VERIFIK_KEEP_RUNS_DAYS go."""
    runs, deliveries = sync.prune_history()
    return {"sync_runs": runs, "webhook_deliveries": deliveries}


@shared_task(bind=True, **SHORT_LIMITS)
def purge_removed_registrations(self):
    """Daily: erase the personal data of registrations removed upstream over VERIFIK_PURGE_REMOVED_AFTER_DAYS ago.

    Each run stops short of its time limit; a backlog left over is queued again at once.
    """
    result = sync.purge_removed(time_budget=settings.VERIFIK_TASK_TIME_LIMIT / 2)
    if result.more and not self.request.is_eager:
        purge_removed_registrations.delay()
    return {"erased": result.erased, "more": result.more}
