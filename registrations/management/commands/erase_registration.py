"""`erase_registration ID --reason "..."`: a data-subject request, carried out now and audited."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from registrations.mapping import is_object_id
from registrations.models import AppRegistration
from registrations.sync import erase


class Command(BaseCommand):
    help = (
        "Erase one registration's personal data now (name, email, phone, notes, payload), keeping its id, "
        "status, dates, decisions and audit trail. Audited with the reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("registration", metavar="ID", help="24-hex Verifik id, or the registration's admin number.")
        parser.add_argument("--reason", required=True, help="Why (e.g. the request's reference); stored in the audit.")
        parser.add_argument("--actor", metavar="USERNAME", help="The staff user this is done for, if any.")

    def handle(self, *args, registration, reason, actor=None, **options):
        if not reason.strip():
            raise CommandError("--reason must say why the data is erased (e.g. the request's reference).")
        target = _find(registration.strip())
        user = None
        if actor:
            user = get_user_model().objects.filter(username=actor).first()
            if user is None:
                raise CommandError(f"No user named {actor!r}.")
        erase(target, reason, actor=user)
        self.stdout.write(f"Erased the personal data of registration {target.verifik_id} (#{target.pk}).")
        if target.removed_upstream_at is None:
            self.stdout.write(
                self.style.WARNING(
                    "Verifik still lists this registration: the next sync stores it again unless it is "
                    "deleted at Verifik too."
                )
            )


def _find(value):
    if is_object_id(value):
        found = AppRegistration.objects.filter(verifik_id=value.lower()).first()
    elif value.isdigit() and len(value) <= 18:
        found = AppRegistration.objects.filter(pk=int(value)).first()
    else:
        raise CommandError(f"{value[:40]!r} is not a registration id (24 hex characters, or the admin's number).")
    if found is None:
        raise CommandError(f"No registration with id {value}.")
    return found
