"""Leases: how a running listing run or partition shows it is alive, so a dead one is found at once.

A lease is two signs of life. A Postgres session advisory lock of the run's own
(LEASE_LOCK_CLASS, run id), held on the holder's connection for the run's life:
Postgres frees it the moment that connection dies (a SIGKILLed worker, a
restarted database), so the reaper sees a dead holder without waiting. And a
heartbeat column beaten at least once a page: a holder that is alive but stuck
(a hung request, a frozen machine) stops beating. Beating is conditional on the
run (and its family) still running: a holder the reaper gave up on learns so at
its next page and stops (LeaseLost).
"""

from contextlib import contextmanager, suppress

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from ..models import SyncRun

LEASE_LOCK_CLASS = 0x5EF2  # first key of the two-key advisory locks that are leases; the second is the run id


class LeaseLost(Exception):
    """The reaper failed this run (its heartbeat was late) or its family ended: the holder stops."""


def create(**fields):
    """A new running SyncRun whose lease is held from the moment other sessions can see it.

    The row and the lock come in one transaction: a session lock taken inside a
    transaction outlives its commit, so the reaper never sees the row unlocked.
    """
    with transaction.atomic():
        run = SyncRun.objects.create(heartbeat_at=timezone.now(), **fields)
        _lock("pg_advisory_lock", run.pk)
    return run


def _lock(function, run_id):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [LEASE_LOCK_CLASS, run_id])
        return cursor.fetchone()[0]


def release(run_id):
    with suppress(DatabaseError):  # else the lock died with its connection
        _lock("pg_advisory_unlock", run_id)


@contextmanager
def held(run_id):
    """Take the lease lock of an existing run (a partition, a family being closed); yields False when taken."""
    acquired = _lock("pg_try_advisory_lock", run_id)
    try:
        yield acquired
    finally:
        if acquired:
            release(run_id)


def start(run):
    """Begin a partition's attempt under its lease: True unless the reaper already gave up on it."""
    now = timezone.now()
    started = SyncRun.objects.filter(pk=run.pk, outcome=SyncRun.Outcome.RUNNING).update(heartbeat_at=now)
    run.heartbeat_at = now
    return bool(started)


def beat(run, committed_page=None):
    """The heartbeat, with the last committed page; raises LeaseLost when the run or its family is over."""
    table = connection.ops.quote_name(SyncRun._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} r SET heartbeat_at = now(), committed_page = COALESCE(%s, r.committed_page)
            WHERE r.id = %s AND r.outcome = 'running'
              AND (r.parent_id IS NULL OR EXISTS (
                   SELECT 1 FROM {table} p WHERE p.id = r.parent_id AND p.outcome = 'running'))
            """,  # noqa: S608 - quoted name; values are parameters
            [committed_page, run.pk],
        )
        alive = cursor.rowcount
    if not alive:
        raise LeaseLost(
            f"Stopped: the reaper failed this run (its heartbeat was older than VERIFIK_RUN_LEASE_SECONDS) "
            f"or its full sync ended (run #{run.parent_id or run.pk})."
        )


def holders(run_ids):
    """The ids among `run_ids` whose lease lock some session holds now (in this database)."""
    if not run_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.objid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid = %s AND l.granted "
            "AND d.datname = current_database() AND l.objid::bigint = ANY(%s::bigint[])",
            [LEASE_LOCK_CLASS, [int(pk) for pk in run_ids]],
        )
        return {row[0] for row in cursor.fetchall()}
