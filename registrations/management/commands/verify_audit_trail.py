"""`verify_audit_trail`: prove the audit trail is the one the application wrote, or name where it is not."""

from django.core.management.base import BaseCommand, CommandError

from registrations import audit_chain


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's hash chain, oldest event first. Exits 0 with the count when every event "
        "follows the one before it and the chain's head agrees; exits 1 naming the first event that does not."
    )

    def handle(self, **options):
        verdict = audit_chain.verify()
        if not verdict.intact:
            raise CommandError(f"Audit trail NOT intact: {verdict.problem}.")
        self.stdout.write(f"Audit trail intact: {verdict.events} events, head {verdict.head.hex()}.")
