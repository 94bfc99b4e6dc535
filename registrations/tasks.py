"""Celery tasks: thin wrappers over the sync service.

Other tools call these by name, so the names and arguments are a contract.
Every task is idempotent (acks_late is on): a task lost with its worker can
simply run again.
"""

from celery import shared_task
from django.conf import settings

from . import sync
from .models import SyncRun
from .verifik import VerifikError


def _retry_or_raise(task, exc):
    """Transient failures try again later with backoff; anything else fails now.

    Eager tasks (no broker) never retry: their caller is waiting, and the
    client has already retried with backoff.
    """
    if exc.retryable and not task.request.is_eager and task.request.retries < settings.VERIFIK_TASK_MAX_RETRIES:
        raise task.retry(countdown=sync.retry_countdown(task.request.retries), exc=exc)
    raise exc


def _fan_out_details(run, verifik_ids):
    for verifik_id in verifik_ids:
        fetch_registration_details.delay(verifik_id, run.pk)


@shared_task(bind=True)
def sync_registrations(self, statuses=None, trigger=SyncRun.Trigger.SCHEDULE, user_id=None):
    """A full sync, or only the given statuses; detail fetches fan out as rate-limited tasks."""
    try:
        run = sync.run_sync(statuses=statuses, trigger=trigger, user_id=user_id, on_details=_fan_out_details)
    except sync.SyncFailed as exc:
        _retry_or_raise(self, exc)
    return run.pk


@shared_task(bind=True)
def refresh_registration(self, verifik_id, trigger=SyncRun.Trigger.USER, user_id=None, kind=SyncRun.Kind.SINGLE):
    try:
        run = sync.refresh(verifik_id, trigger=trigger, user_id=user_id, kind=kind)
    except sync.SyncFailed as exc:
        _retry_or_raise(self, exc)
    return run.pk


@shared_task
def refresh_registrations(verifik_ids, trigger=SyncRun.Trigger.USER, user_id=None):
    """Fan out one refresh per id."""
    for verifik_id in verifik_ids:
        refresh_registration.delay(verifik_id, trigger=trigger, user_id=user_id)


@shared_task(bind=True)
def fetch_registration_details(self, verifik_id, sync_run_id):
    """One detail fetch of a sync's fan-out (rate-limited by VERIFIK_DETAIL_RATE per worker)."""
    last_attempt = self.request.retries >= settings.VERIFIK_TASK_MAX_RETRIES
    try:
        sync.fetch_details_for(sync_run_id, verifik_id, last_attempt=last_attempt)
    except VerifikError as exc:
        _retry_or_raise(self, exc)
