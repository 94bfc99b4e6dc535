"""The Celery app: configured from Django settings (CELERY_ namespace), tasks autodiscovered.

Also the process-wide rules every worker, beat and caller share: logging goes
through Django's LOGGING (JSON or plain, with the task id on every line of a
task), a worker or beat never runs tasks eagerly, and enqueueing without a
broker fails with a message that says so instead of trying a default address.
"""

import logging.config
import os

from celery import Celery, signals
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verifik_admin.settings")

NO_BROKER = (
    "No Celery broker is configured: set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0; `make run` starts "
    "one), or CELERY_TASK_ALWAYS_EAGER=true to run tasks inline in the calling process."
)


class NoBrokerConfigured(ImproperlyConfigured):
    pass


class VerifikCelery(Celery):
    """Every task sent (apply_async past eager mode, send_task, `celery call`) passes through send_task."""

    def send_task(self, *args, **kwargs):
        if not self.conf.broker_url:
            raise NoBrokerConfigured(NO_BROKER)
        return super().send_task(*args, **kwargs)


app = VerifikCelery("verifik_admin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_django_logging(**kwargs):
    """Workers and beat log through settings.LOGGING instead of Celery's own format."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


_task_context = {}


@signals.task_prerun.connect
def bind_task_id(task_id=None, **kwargs):
    from .logs import push

    _task_context[task_id] = push(task_id=task_id)


@signals.task_postrun.connect
def unbind_task_id(task_id=None, **kwargs):
    from .logs import pop

    token = _task_context.pop(task_id, None)
    if token is not None:
        pop(token)


def _serve_only_with_broker(**kwargs):
    """A worker or beat without a broker would use Celery's default AMQP address; stop instead.

    They are the executors: the tasks they send (a sync's detail fan-out, beat's
    schedule) always go to the broker, whatever CELERY_TASK_ALWAYS_EAGER says for callers.
    Celery logs and swallows exceptions raised in signal handlers, so this exits.
    """
    if not app.conf.broker_url:
        raise SystemExit(f"Error: {NO_BROKER}")
    app.conf.task_always_eager = False


signals.celeryd_init.connect(_serve_only_with_broker)
signals.beat_init.connect(_serve_only_with_broker)
