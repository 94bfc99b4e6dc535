from django.core.management.base import BaseCommand, CommandError

from registrations.models import SyncRun
from registrations.sync import SyncFailed, run_sync


def summary(run):
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0
    return (
        f"Sync run #{run.pk} {run.outcome}: {run.pages} pages, {run.created} created, {run.updated} updated, "
        f"{run.unchanged} unchanged, {run.failed} rejected, {run.cleaned} cleaned, {run.removed} removed upstream, "
        f"{run.details_fetched} details fetched ({run.details_failed} failed), {seconds:.1f}s"
    )


class Command(BaseCommand):
    help = "Mirror Verifik app registrations into the database, in this process."

    def add_arguments(self, parser):
        parser.add_argument(
            "--status", action="append", dest="statuses", metavar="STATUS", help="Only this status (repeatable)."
        )
        parser.add_argument(
            "--no-details",
            action="store_true",
            help="Skip fetching new or changed registrations from the detail endpoint.",
        )

    def handle(self, *args, statuses=None, no_details=False, **options):
        try:
            run = run_sync(statuses=statuses, trigger=SyncRun.Trigger.COMMAND, details=False if no_details else None)
        except SyncFailed as exc:
            raise CommandError(f"Sync run #{exc.run.pk} failed: {exc.run.error}") from None
        self.stdout.write(summary(run))
        for line in filter(None, [run.error, run.note]):
            self.stdout.write(line)
        for failure in run.failures[:10]:
            self.stdout.write(f"  rejected: {failure['id']}: {failure['reason']}")
