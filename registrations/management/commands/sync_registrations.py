from django.core.management.base import BaseCommand, CommandError

from registrations import tasks
from registrations.models import SyncRun
from registrations.sync import SyncFailed, run_sync
from verifik_admin.celery import NoBrokerConfigured


def summary(run):
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0
    return (
        f"Sync run #{run.pk} {run.outcome}: {run.pages} pages, {run.created} created, {run.updated} updated, "
        f"{run.unchanged} unchanged, {run.failed} rejected, {run.cleaned} cleaned, {run.removed} removed upstream, "
        f"{run.details_fetched} details fetched ({run.details_failed} failed), {seconds:.1f}s"
    )


class Command(BaseCommand):
    help = "Mirror Verifik app registrations into the database, in this process (or --queue it for a worker)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--status", action="append", dest="statuses", metavar="STATUS", help="Only this status (repeatable)."
        )
        parser.add_argument(
            "--no-details",
            action="store_true",
            help="Skip fetching new or changed registrations from the detail endpoint.",
        )
        parser.add_argument(
            "--queue", action="store_true", help="Queue the sync for a Celery worker instead of running it here."
        )

    def handle(self, *args, statuses=None, no_details=False, queue=False, **options):
        if queue:
            return self.queue(statuses, no_details)
        try:
            run = run_sync(statuses=statuses, trigger=SyncRun.Trigger.COMMAND, details=False if no_details else None)
        except SyncFailed as exc:
            raise CommandError(f"Sync run #{exc.run.pk} failed: {exc.run.error}") from None
        self.stdout.write(summary(run))
        for line in filter(None, [run.error, run.note]):
            self.stdout.write(line)
        for failure in run.failures[:10]:
            self.stdout.write(f"  rejected: {failure['id']}: {failure['reason']}")

    def queue(self, statuses, no_details):
        if no_details:
            raise CommandError("--no-details applies to a sync run here; a queued sync follows VERIFIK_SYNC_DETAILS.")
        eager = tasks.sync_registrations.app.conf.task_always_eager  # CELERY_TASK_ALWAYS_EAGER: it runs here
        try:
            result = tasks.sync_registrations.delay(statuses=statuses, trigger=SyncRun.Trigger.COMMAND)
        except NoBrokerConfigured as exc:
            raise CommandError(str(exc)) from None
        except SyncFailed as exc:
            raise CommandError(f"Sync run #{exc.run.pk} failed: {exc.run.error}") from None
        if eager:
            self.stdout.write(summary(SyncRun.objects.get(pk=result.get())))
        else:
            self.stdout.write(f"Sync queued as task {result.id}; a worker runs it (see Sync runs in the admin).")
