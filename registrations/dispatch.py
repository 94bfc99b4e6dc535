"""How the back office and the webhook ask for work: always through the Celery tasks.

With a broker the task is queued and the answer is "queued". In eager mode
(CELERY_TASK_ALWAYS_EAGER=true: tests and debugging, never a fallback) the task
runs inline, and the answer carries the SyncRun that came back. With neither,
enqueueing raises NoBrokerConfigured, whose message says what to set.
"""

from dataclasses import dataclass

from . import tasks
from .models import SyncRun
from .sync import SyncFailed
from .verifik import validate_registration_id


@dataclass(frozen=True)
class Dispatched:
    queued: bool
    run: SyncRun | None = None
    error: str = ""

    @property
    def failed(self):
        return bool(self.error)


def _eager():
    return tasks.sync_registrations.app.conf.task_always_eager


def _send(task, *args, **kwargs):
    if not _eager():
        task.delay(*args, **kwargs)
        return Dispatched(queued=True)
    try:
        run_pk = task.delay(*args, **kwargs).get()
    except SyncFailed as exc:
        return Dispatched(queued=False, run=exc.run, error=exc.run.error)
    return Dispatched(queued=False, run=SyncRun.objects.get(pk=run_pk))


def request_refresh(verifik_id, *, user_id=None, trigger=SyncRun.Trigger.USER, kind=SyncRun.Kind.SINGLE):
    """Refresh one registration. Raises InvalidRegistrationId before anything is queued."""
    verifik_id = validate_registration_id(verifik_id)
    return _send(tasks.refresh_registration, verifik_id, trigger=trigger, user_id=user_id, kind=kind)


def request_refreshes(verifik_ids, *, user_id=None):
    """Refresh many: one fan-out task with a broker, each inline in eager mode."""
    verifik_ids = [validate_registration_id(i) for i in verifik_ids]
    if not _eager():
        tasks.refresh_registrations.delay(verifik_ids, trigger=SyncRun.Trigger.USER, user_id=user_id)
        return [Dispatched(queued=True)]
    return [request_refresh(i, user_id=user_id) for i in verifik_ids]


def request_sync(*, user_id=None, statuses=None):
    return _send(tasks.sync_registrations, statuses=statuses, trigger=SyncRun.Trigger.USER, user_id=user_id)
