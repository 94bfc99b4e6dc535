from django.core.management.base import BaseCommand, CommandError

from registrations.models import SyncRun
from registrations.sync import SyncFailed, refresh
from registrations.verifik import InvalidRegistrationId


class Command(BaseCommand):
    help = "Fetch registrations from Verifik's detail endpoint, with every populate, and store them."

    def add_arguments(self, parser):
        parser.add_argument("verifik_ids", nargs="+", metavar="ID", help="24-hex Verifik registration id.")

    def handle(self, *args, verifik_ids, **options):
        try:
            run = refresh(verifik_ids, trigger=SyncRun.Trigger.COMMAND)
        except InvalidRegistrationId as exc:
            raise CommandError(str(exc)) from None
        except SyncFailed as exc:
            raise CommandError(f"Refresh run #{exc.run.pk} failed: {exc.run.error}") from None
        self.stdout.write(
            f"Refresh run #{run.pk} {run.outcome}: {run.created} created, {run.updated} updated, "
            f"{run.unchanged} unchanged, {run.removed} removed upstream, {run.failed} not found"
        )
