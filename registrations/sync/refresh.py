"""Single registrations: fetch one from the detail endpoint, and the trailing debounce of requests for it.

A request (a user's "Refresh now", a webhook) for a registration whose refresh
is queued and not started joins it; one that arrives while a refresh of it
runs asks for exactly one more after it. So a burst of events costs at most
two GETs, and the last one reads Verifik after the last event.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from verifik_admin.logs import bind

from .. import budget
from ..models import PendingRefresh, SyncRun, WebhookDelivery
from ..verifik import NotFound, validate_registration_id
from . import runs
from .upsert import mark_removed, store_detail

QUEUED, JOINED, AGAIN = "queued", "joined", "again"


def fetch_and_store(client, verifik_id, populates=None, run_id=None):
    """Fetch one registration with its populates and store it; a 404 marks it removed upstream."""
    verifik_id = validate_registration_id(verifik_id)
    populates = settings.VERIFIK_POPULATES if populates is None else populates
    try:
        payload = client.get(verifik_id, populates=populates)
    except NotFound:
        return "removed" if mark_removed([verifik_id]) else "not_found"
    return store_detail(payload, run_id=run_id)


def _lock(verifik_id):
    """Serialise the debounce bookkeeping of one registration across processes (until the transaction ends)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"refresh:{verifik_id}"])


def _stale_before():
    """A pending row older than this belongs to a refresh whose worker died: it no longer holds anything back."""
    return timezone.now() - timedelta(seconds=2 * settings.VERIFIK_TASK_TIME_LIMIT + 60)


def claim(verifik_id, *, kind=SyncRun.Kind.SINGLE, trigger=SyncRun.Trigger.USER, user_id=None):
    """Ask for a refresh: QUEUED (the caller enqueues one), JOINED (one is queued) or AGAIN (one runs)."""
    verifik_id = validate_registration_id(verifik_id)
    with transaction.atomic():
        _lock(verifik_id)
        pending = PendingRefresh.objects.filter(verifik_id=verifik_id).first()
        if pending is not None and pending.updated_at < _stale_before():
            pending.delete()
            pending = None
        if pending is None:
            PendingRefresh.objects.create(verifik_id=verifik_id, kind=kind, trigger=trigger, user_id=user_id)
            return QUEUED
        pending.requests += 1
        if pending.state == PendingRefresh.State.RUNNING:
            pending.again = True
        pending.save(update_fields=["requests", "again", "updated_at"])
        return AGAIN if pending.again else JOINED


def release(verifik_id):
    """Forget a claim whose refresh could not be queued (no broker answered)."""
    PendingRefresh.objects.filter(verifik_id=verifik_id, state=PendingRefresh.State.QUEUED).delete()


def _start(verifik_id):
    with transaction.atomic():
        _lock(verifik_id)
        updated = PendingRefresh.objects.filter(verifik_id=verifik_id).update(
            state=PendingRefresh.State.RUNNING, again=False, updated_at=timezone.now()
        )
        if not updated:  # sent by name, without a claim
            PendingRefresh.objects.create(verifik_id=verifik_id, state=PendingRefresh.State.RUNNING)


def _release(verifik_id):
    """End this refresh's turn; True when a request arrived while it ran (one more is due)."""
    with transaction.atomic():
        _lock(verifik_id)
        pending = PendingRefresh.objects.filter(verifik_id=verifik_id).first()
        if pending is None:
            return False
        if pending.again:
            pending.state, pending.again, pending.requests = PendingRefresh.State.QUEUED, False, 0
            pending.save(update_fields=["state", "again", "requests", "updated_at"])
            return True
        pending.delete()
        return False


def _serve_deliveries(run):
    """Webhook deliveries received before this refresh started are answered by it: record its outcome."""
    succeeded = run.outcome == SyncRun.Outcome.SUCCEEDED
    outcome = WebhookDelivery.Outcome.REFRESHED if succeeded else WebhookDelivery.Outcome.FAILED
    waiting = WebhookDelivery.objects.filter(
        verifik_id=run.verifik_id,
        outcome__in=[WebhookDelivery.Outcome.QUEUED, WebhookDelivery.Outcome.COLLAPSED],
        sync_run__isnull=True,
        received_at__lte=run.started_at,
    )
    changes = {"sync_run": run, "outcome": outcome}
    if run.error:
        changes["detail"] = run.error[:1000]
    waiting.update(**changes)


@dataclass(frozen=True)
class _Counts:
    seen: int = 1
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0


# fetch_and_store's outcome -> the counters of a refresh run
_REFRESH_COUNTS = {
    "created": _Counts(created=1),
    "updated": _Counts(updated=1),
    "unchanged": _Counts(unchanged=1),
    "removed": _Counts(removed=1),
    "not_found": _Counts(seen=0, failed=1),
}


def refresh(
    verifik_id,
    *,
    trigger=SyncRun.Trigger.USER,
    user_id=None,
    kind=SyncRun.Kind.SINGLE,
    client=None,
    task_id="",
    on_again=None,
):
    """Refresh one registration from the detail endpoint, recorded in its own SyncRun that is returned.

    A malformed id is refused before anything is sent or recorded. When a
    request arrived while it ran, one more refresh is due: `on_again()`
    enqueues it (the Celery task), or it runs here without one.
    """
    verifik_id = validate_registration_id(verifik_id)
    while True:
        try:
            run = _refresh_once(verifik_id, trigger, user_id, kind, client, task_id)
        except Exception:
            # A failed refresh is retried by its task (or not at all): the next request starts afresh.
            PendingRefresh.objects.filter(verifik_id=verifik_id).delete()
            raise
        if not _release(verifik_id):
            return run
        if on_again is not None:
            on_again()
            return run


def _refresh_once(verifik_id, trigger, user_id, kind, client, task_id):
    _start(verifik_id)
    run = SyncRun.objects.create(verifik_id=verifik_id, kind=kind, trigger=trigger, user_id=user_id, task_id=task_id)
    with bind(run_id=run.pk, task_id=task_id or None):
        try:
            client = client or runs.build_client(priority=budget.REFRESH, deadline=runs.task_deadline())
            outcome = fetch_and_store(client, verifik_id, run_id=run.pk)
        except Exception as exc:
            failed = runs.fail(run, exc)
            _serve_deliveries(run)
            raise failed from exc
        counts = _REFRESH_COUNTS[outcome]
        fields = list(counts.__dataclass_fields__)
        for name in fields:
            setattr(run, name, getattr(counts, name))
        if outcome == "not_found":
            runs.finish(run, SyncRun.Outcome.FAILED, f"Verifik has no registration {verifik_id}.", fields)
            _serve_deliveries(run)
            raise runs.SyncFailed(run)
        runs.finish(run, SyncRun.Outcome.SUCCEEDED, counters=fields)
        _serve_deliveries(run)
    return run
