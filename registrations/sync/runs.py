"""SyncRun bookkeeping: creating and closing runs, the single-flight lock, deadlines, pruning."""

import logging
import time
from contextlib import contextmanager
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max, Q
from django.utils import timezone

from .. import budget
from ..models import SyncRun, WebhookDelivery
from ..verifik import VerifikClient, VerifikError
from .leases import LeaseLost

log = logging.getLogger(__name__)

SYNC_LOCK_KEY = 0x5EF1_1C5  # pg advisory lock id of the full lane (full syncs exclusive, partitions shared)
ACTIVE_LOCK_KEY = 0x5EF1_1C6  # pg advisory lock id of the active lane (syncs of given statuses)
MAX_LISTED_FAILURES = 1000  # rejected records listed on one run (all are counted)
SINGLE_RUN_ABANDONED_AFTER = timedelta(hours=1)  # a refresh takes seconds; one running this long is dead
PARTITION_LOCK_WAIT = 60.0  # seconds a partition waits for another sync's brief hold of the lock (it then skips)
FAMILY_WITHOUT_LIMIT = timedelta(days=1)  # how long a split full sync counts as alive when VERIFIK_SYNC_TIME_LIMIT is 0


class SyncFailed(Exception):
    """A sync or refresh that ended failed; `run` holds the record, `retryable` whether later may help."""

    def __init__(self, run, retryable=False):
        super().__init__(run.error)
        self.run = run
        self.retryable = retryable


class DeadlineExceeded(Exception):
    """A run went past one of its bounds (time, pages); the message names the setting."""


class PartitionsFailed(Exception):
    """At least one partition of a full sync failed: the family ends failed, nothing marked removed."""


def account_budget():
    """The API budget of the configured account, shared through Redis when one is configured."""
    return budget.Budget(
        budget.account_key(settings.VERIFIK_API_BASE_URL, settings.VERIFIK_API_TOKEN),
        settings.VERIFIK_API_RATE,
        redis_url=settings.VERIFIK_BUDGET_REDIS_URL,
        retry_after_cap=settings.VERIFIK_RETRY_AFTER_CAP,
    )


def build_client(*, priority=budget.SYNC, deadline=None, **overrides):
    """A client whose every request draws on the account's API budget, at `priority`.

    Waiting for a token is bounded by `deadline`: by default the listing's
    (VERIFIK_SYNC_TIME_LIMIT); refreshes and detail fetches pass their task's.
    """
    options = {
        "timeout": settings.VERIFIK_TIMEOUT,
        "max_retries": settings.VERIFIK_MAX_RETRIES,
        "backoff": settings.VERIFIK_BACKOFF,
        "retry_after_cap": settings.VERIFIK_RETRY_AFTER_CAP,
    }
    options.update(overrides)
    deadline = deadline or Deadline(settings.VERIFIK_SYNC_TIME_LIMIT)
    options.setdefault("budget", account_budget().caller(priority, deadline))
    return VerifikClient(settings.VERIFIK_API_BASE_URL, settings.VERIFIK_API_TOKEN, **options)


def task_deadline():
    """How long a refresh or detail task may wait for API budget: half its time limit, the rest is the request's."""
    return Deadline(settings.VERIFIK_TASK_TIME_LIMIT / 2, "VERIFIK_TASK_TIME_LIMIT")


class Deadline:
    """The wall-clock bound of one run (VERIFIK_SYNC_TIME_LIMIT), checked between pages and while waiting for API
    budget; `setting` names what set it."""

    def __init__(self, seconds, setting="VERIFIK_SYNC_TIME_LIMIT"):
        self.seconds, self.setting = seconds, setting
        self.ends = time.monotonic() + seconds if seconds else None

    def remaining(self):
        """Seconds left, or None without a bound."""
        return None if self.ends is None else max(0.0, self.ends - time.monotonic())

    def check(self):
        if self.ends is not None and time.monotonic() > self.ends:
            raise DeadlineExceeded(f"Stopped after {self.setting} ({self.seconds:g} s).")


def lane_key(kind):
    """The single-flight lock of a listing run's lane: active syncs never wait on the full lane, nor it on them."""
    return ACTIVE_LOCK_KEY if kind == SyncRun.Kind.ACTIVE else SYNC_LOCK_KEY


@contextmanager
def listing_lock(key=SYNC_LOCK_KEY):
    """Hold the single-flight lock of one lane; yields False when another holder has it.

    A Postgres session advisory lock frees itself when the holder's connection
    dies, so a killed worker never leaves the lock behind.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            _unlock("pg_advisory_unlock", key)


def _unlock(function, key=SYNC_LOCK_KEY):
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s)", [key])
    except DatabaseError:
        pass  # the lock died with its connection


@contextmanager
def partition_lock(wait=PARTITION_LOCK_WAIT):
    """The shared side of the single-flight lock: partitions of one full sync run side by side.

    Any other listing sync takes the lock exclusively, so it cannot start while
    a partition holds the shared side; one that finds a split full sync alive
    between its partitions skips at once, so a partition waits at most that long.
    """
    ends = time.monotonic() + wait
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock_shared(%s)", [SYNC_LOCK_KEY])
            acquired = cursor.fetchone()[0]
        if acquired or time.monotonic() > ends:
            break
        time.sleep(0.1)
    try:
        yield acquired
    finally:
        if acquired:
            _unlock("pg_advisory_unlock_shared")


def family_horizon():
    """Split full syncs started before this are past their deadline: VERIFIK_SYNC_TIME_LIMIT from their start."""
    limit = settings.VERIFIK_SYNC_TIME_LIMIT
    return timezone.now() - (timedelta(seconds=limit + 300) if limit else FAMILY_WITHOUT_LIMIT)


def live_family(run):
    """A full sync split into partitions that is still running within its deadline: it holds the full lane."""
    return (
        SyncRun.objects.filter(
            kind=SyncRun.Kind.FULL, outcome=SyncRun.Outcome.RUNNING, partitions__gt=0, started_at__gte=family_horizon()
        )
        .exclude(pk=run.pk)
        .first()
    )


@contextmanager
def statement_timeout(seconds):
    """Bound every statement of the sync's connection; a hung query fails the run instead of holding the lock."""
    with sync_session(seconds, synchronous_commit=True):
        yield


@contextmanager
def sync_session(seconds, synchronous_commit=False):
    """The sync's connection settings for its duration: a statement timeout, and commits that do not wait for disk.

    synchronous_commit = off: a commit returns before its WAL is flushed, so a
    crash of Postgres can lose the last few hundred milliseconds of pages. The
    mirror stays consistent (whole transactions are lost, never parts) and the
    next sync fetches those pages again; nothing else writes on this connection
    meanwhile. Both settings are reset when the sync ends (workers reuse it).
    """
    names = configure_session(seconds, synchronous_commit)
    if not names:
        yield
        return
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("; ".join(f"RESET {name}" for name in names))
        except DatabaseError:
            pass  # the connection is gone, and its settings with it


def configure_session(seconds, synchronous_commit=False, name=""):
    """Apply sync_session's settings to this thread's connection, until reset or closed; returns their names.

    `name` becomes the connection's application_name: what an operator reads in pg_stat_activity.
    """
    settings_sql, names = [], []
    if name:
        settings_sql.append(f"set_config('application_name', '{name}', false)")
        names.append("application_name")
    if seconds:
        settings_sql.append(f"set_config('statement_timeout', '{int(seconds * 1000)}ms', false)")
        names.append("statement_timeout")
    if not synchronous_commit:
        settings_sql.append("set_config('synchronous_commit', 'off', false)")
        names.append("synchronous_commit")
    if settings_sql:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(settings_sql)}")
    return names


def finish(run, outcome, error="", counters=()):
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


def describe_failure(exc):
    """The words an operator reads on a failed run."""
    if isinstance(exc, VerifikError | DeadlineExceeded | PartitionsFailed | LeaseLost):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return "Stopped at the Celery task's soft time limit (VERIFIK_SYNC_TIME_LIMIT or VERIFIK_TASK_TIME_LIMIT)."
    if isinstance(exc, DatabaseError) and "statement timeout" in str(exc):
        limit = settings.VERIFIK_SYNC_STATEMENT_TIMEOUT
        return f"A database statement ran past VERIFIK_SYNC_STATEMENT_TIMEOUT ({limit:g} s)."
    return f"Internal error: {type(exc).__name__}: {exc}"


def fail(run, exc):
    message = describe_failure(exc)
    log.error("Sync run %s failed: %s", run.pk, message)
    if isinstance(exc, DatabaseError):
        connection.close()  # a timed-out or broken statement leaves the transaction unusable
    finish(run, SyncRun.Outcome.FAILED, message)
    return SyncFailed(run, retryable=getattr(exc, "retryable", False))


def record_failures(run, failures):
    """Count rejected records on the run and list them, up to MAX_LISTED_FAILURES."""
    run.failed += len(failures)
    room = MAX_LISTED_FAILURES - len(run.failures)
    run.failures.extend(failures[: max(room, 0)])


def fail_abandoned_runs(run):
    """Mark runs of the caller's lane whose worker died as failed (the reaper finds them sooner).

    A run of this lane (or, in the full lane, a partition) still 'running' while
    we hold the lane's lock, with no split full sync alive, cannot be running
    anywhere. A single refresh takes seconds; one running for an hour is dead.
    """
    singles = (SyncRun.Kind.SINGLE, SyncRun.Kind.WEBHOOK)
    lane = Q(kind=run.kind, pk__lt=run.pk)
    if run.kind == SyncRun.Kind.FULL:
        lane |= Q(kind=SyncRun.Kind.PARTITION)  # the caller found no split full sync alive: its partitions are dead
    abandoned = lane | Q(kind__in=singles, started_at__lt=timezone.now() - SINGLE_RUN_ABANDONED_AFTER)
    SyncRun.objects.filter(abandoned, outcome=SyncRun.Outcome.RUNNING).update(
        outcome=SyncRun.Outcome.FAILED,
        finished_at=timezone.now(),
        error="The worker running this sync stopped before it finished (found by the next sync).",
    )


def running_holder(run):
    """The running run of the caller's lane, for the skipped run's message."""
    return SyncRun.objects.filter(outcome=SyncRun.Outcome.RUNNING, kind=run.kind).exclude(pk=run.pk).first()


def finish_if_running(run, outcome, error="", counters=()):
    """finish(), unless the reaper ended the run meanwhile; True when this call closed it."""
    run.outcome, run.error, run.finished_at = outcome, error, timezone.now()
    fields = {name: getattr(run, name) for name in ["outcome", "error", "note", "finished_at", *counters]}
    try:
        closed = SyncRun.objects.filter(pk=run.pk, outcome=SyncRun.Outcome.RUNNING).update(**fields)
    except DatabaseError:
        connection.close()
        closed = SyncRun.objects.filter(pk=run.pk, outcome=SyncRun.Outcome.RUNNING).update(**fields)
    return bool(closed)


def prune_history(keep_days=None, now=None):
    """Delete SyncRuns and WebhookDeliveries older than `keep_days`; returns (runs, deliveries) deleted.

    The latest full sync of each outcome is kept whatever its age: it is what
    the sync-health banner and the health check read.
    """
    keep_days = settings.VERIFIK_KEEP_RUNS_DAYS if keep_days is None else keep_days
    cutoff = (now or timezone.now()) - timedelta(days=keep_days)
    latest_full = (
        SyncRun.objects.filter(kind=SyncRun.Kind.FULL).values("outcome").annotate(last=Max("pk")).values("last")
    )
    runs, _ = SyncRun.objects.filter(started_at__lt=cutoff).exclude(pk__in=latest_full).delete()
    deliveries, _ = WebhookDelivery.objects.filter(received_at__lt=cutoff).delete()
    return runs, deliveries
