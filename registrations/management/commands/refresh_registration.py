from django.core.management.base import BaseCommand, CommandError

from registrations.models import SyncRun
from registrations.sync import SyncFailed, refresh
from registrations.verifik import InvalidRegistrationId, validate_registration_id


def describe(run):
    result = next((name for name in ("created", "updated", "unchanged", "removed") if getattr(run, name)), "done")
    return f"refresh run #{run.pk} {run.outcome}: {result}"


class Command(BaseCommand):
    help = "Fetch registrations from Verifik's detail endpoint, with every populate, and store them."

    def add_arguments(self, parser):
        parser.add_argument("verifik_ids", nargs="+", metavar="ID", help="24-hex Verifik registration id.")

    def handle(self, *args, verifik_ids, **options):
        try:
            verifik_ids = [validate_registration_id(i) for i in verifik_ids]
        except InvalidRegistrationId as exc:
            raise CommandError(str(exc)) from None
        failed = 0
        for verifik_id in verifik_ids:
            try:
                self.stdout.write(f"{verifik_id}: {describe(refresh(verifik_id, trigger=SyncRun.Trigger.COMMAND))}")
            except SyncFailed as exc:
                failed += 1
                self.stderr.write(f"{verifik_id}: refresh run #{exc.run.pk} failed: {exc.run.error}")
        if failed:
            raise CommandError(f"{failed} of {len(verifik_ids)} refreshes failed.")
