"""How the back office and the webhook ask for work: always through the Celery tasks.

With a broker the task is queued and the answer is "queued". Without one
(the embedded default) the task runs inline, and the answer carries the
SyncRun that came back. Refreshes go through the debounce first: a request
that joins a pending refresh queues nothing.
"""

from dataclasses import dataclass

from . import sync, tasks
from .models import SyncRun
from .sync.refresh import QUEUED
from .verifik import validate_registration_id


@dataclass(frozen=True)
class Dispatched:
    queued: bool
    run: SyncRun | None = None
    joined: bool = False  # the request joined a refresh already queued or running

    @property
    def failed(self):
        return self.run is not None and self.run.outcome == SyncRun.Outcome.FAILED

    @property
    def error(self):
        """Why the run failed or was skipped, in the words recorded on it."""
        return self.run.error if self.run is not None else ""


def _eager():
    return tasks.sync_registrations.app.conf.task_always_eager


def _send(task, *args, countdown=None, **kwargs):
    if not _eager():
        task.apply_async(args, kwargs, countdown=countdown)
        return Dispatched(queued=True)
    try:
        run_pk = task.apply_async(args, kwargs).get()
    except sync.SyncFailed as exc:
        return Dispatched(queued=False, run=exc.run)
    return Dispatched(queued=False, run=SyncRun.objects.get(pk=run_pk))


def request_refresh(
    verifik_id, *, user_id=None, trigger=SyncRun.Trigger.USER, kind=SyncRun.Kind.SINGLE, countdown=None
):
    """Refresh one registration (after `countdown` seconds with a broker). Raises InvalidRegistrationId first."""
    verifik_id = validate_registration_id(verifik_id)
    if sync.claim_refresh(verifik_id, kind=kind, trigger=trigger, user_id=user_id) != QUEUED:
        return Dispatched(queued=True, joined=True)
    return _send(
        tasks.refresh_registration, verifik_id, trigger=trigger, user_id=user_id, kind=kind, countdown=countdown
    )


def request_refreshes(verifik_ids, *, user_id=None):
    """Refresh many: one fan-out task with a broker, each inline without one."""
    verifik_ids = [validate_registration_id(i) for i in verifik_ids]
    if not _eager():
        tasks.refresh_registrations.delay(verifik_ids, trigger=SyncRun.Trigger.USER, user_id=user_id)
        return [Dispatched(queued=True)]
    return [request_refresh(i, user_id=user_id) for i in verifik_ids]


def request_sync(*, user_id=None, statuses=None):
    return _send(tasks.sync_registrations, statuses=statuses, trigger=SyncRun.Trigger.USER, user_id=user_id)
