"""The detail backlog: registrations whose detail-endpoint view of the latest version is not stored yet.

A sync queues each pending registration once (`details_queued_at`), not again
for VERIFIK_DETAIL_REQUEUE_MINUTES; every fetch draws on the account's API
budget (registrations/budget.py) below refreshes; a fetch for a registration no longer
pending ends without a request; one that failed VERIFIK_DETAIL_MAX_FAILURES
times in a row backs off exponentially, up to a day.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .. import mapping
from ..models import AppRegistration, SyncRun
from ..verifik import AuthRejected, VerifikError
from . import leases
from .refresh import fetch_and_store
from .runs import build_client, task_deadline
from .upsert import Rejected

log = logging.getLogger(__name__)

DETAIL_BATCH = 500
BACKOFF_FIRST = timedelta(hours=1)  # the wait after the VERIFIK_DETAIL_MAX_FAILURES-th failure, doubled after each
BACKOFF_CAP = timedelta(days=1)


def due(now):
    """Pending, live registrations not queued recently and not backing off."""
    requeue_before = now - timedelta(minutes=settings.VERIFIK_DETAIL_REQUEUE_MINUTES)
    return AppRegistration.objects.filter(
        Q(details_queued_at__isnull=True) | Q(details_queued_at__lt=requeue_before),
        Q(details_retry_at__isnull=True) | Q(details_retry_at__lte=now),
        details_pending=True,
        removed_upstream_at__isnull=True,
    )


def claim_backlog(batch=DETAIL_BATCH):
    """Yield batches of due ids, each marked queued as it is handed out (by primary key, so it ends)."""
    last = 0
    while True:
        now = timezone.now()
        rows = list(due(now).filter(pk__gt=last).order_by("pk").values_list("pk", "verifik_id")[:batch])
        if not rows:
            return
        last = rows[-1][0]
        AppRegistration.objects.filter(pk__in=[pk for pk, _ in rows]).update(details_queued_at=now)
        yield [verifik_id for _, verifik_id in rows]


def claim_lost(batch=DETAIL_BATCH):
    """Up to `batch` ids handed to workers longer than VERIFIK_DETAIL_REQUEUE_MINUTES ago and still pending:
    their fetch was lost (a worker killed, a broker emptied). Marked queued again, for the reaper to hand out."""
    now = timezone.now()
    rows = list(due(now).filter(details_queued_at__isnull=False).order_by("pk").values_list("pk", "verifik_id")[:batch])
    AppRegistration.objects.filter(pk__in=[pk for pk, _ in rows]).update(details_queued_at=now)
    return [verifik_id for _, verifik_id in rows]


def process_backlog(run, client, on_details):
    """Hand the due backlog to `on_details(run, ids)` (the Celery fan-out), or fetch it here without one."""
    for ids in claim_backlog():
        leases.beat(run)  # handing out a large backlog takes a while: the run's lease stays fresh
        if on_details is not None:
            on_details(run, ids)
            SyncRun.objects.filter(pk=run.pk).update(details_queued=F("details_queued") + len(ids))
            continue
        for verifik_id in ids:
            try:
                fetch_details_for(run.pk, verifik_id, client=client)
            except AuthRejected:
                raise
            except VerifikError as exc:
                log.warning("Details of %s not fetched: %s", verifik_id, exc)
    run.refresh_from_db(fields=["details_fetched", "details_failed", "details_queued"])


def fetch_details_for(run_id, verifik_id, *, last_attempt=True, client=None):
    """One detail fetch of a sync, inline or fanned out; counts land on that sync's run.

    A transient failure that will be retried is not counted. A final failure
    is counted on the run and on the registration, which backs off after
    VERIFIK_DETAIL_MAX_FAILURES in a row. Returns False when nothing was due.
    """
    pending = AppRegistration.objects.filter(verifik_id=verifik_id, details_pending=True, removed_upstream_at=None)
    if not pending.exists():
        return False  # fetched meanwhile (a refresh, an earlier copy of this task) or removed
    counters = SyncRun.objects.filter(pk=run_id)
    try:
        # The backlog draws on the account's API budget below refreshes (budget.SYNC).
        fetch_and_store(client or build_client(deadline=task_deadline()), verifik_id, run_id=run_id)
    except (mapping.MappingError, Rejected) as exc:
        log.warning("Details of %s not stored: %s", verifik_id, exc)
        record_failure(verifik_id, str(exc))
        counters.update(details_failed=F("details_failed") + 1)
        return True
    except AuthRejected:
        pending.update(details_queued_at=None)  # not this registration's fault: queue it again next sync
        counters.update(details_failed=F("details_failed") + 1)
        raise
    except VerifikError as exc:
        if last_attempt or not exc.retryable:
            record_failure(verifik_id, str(exc))
            counters.update(details_failed=F("details_failed") + 1)
        raise
    counters.update(details_fetched=F("details_fetched") + 1)
    return True


def record_failure(verifik_id, error):
    """One more failure in a row; from VERIFIK_DETAIL_MAX_FAILURES on, no fetch before a doubling wait."""
    with transaction.atomic():
        row = AppRegistration.objects.select_for_update().filter(verifik_id=verifik_id).values("details_failures")
        current = row.first()
        if current is None:
            return
        failures = current["details_failures"] + 1
        over = failures - settings.VERIFIK_DETAIL_MAX_FAILURES
        retry_at = timezone.now() + min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(over, 16)) if over >= 0 else None
        AppRegistration.objects.filter(verifik_id=verifik_id).update(
            details_failures=failures, details_retry_at=retry_at, details_error=error[:500], details_queued_at=None
        )
