"""The suite's `flush` (between transactional tests): Django's, run as the owner, who may empty the audit trail.

The audit table refuses TRUNCATE to every session; its owner can disable the trigger, which
this does for the flush's own transaction only (ALTER TABLE is transactional: the trigger is
back on at the commit, or untouched if the flush fails). The product has no such command.
"""

from django.core.management.commands import flush
from django.db import connections, transaction

TRIGGER = "ALTER TABLE registrations_auditevent {} TRIGGER registrations_auditevent_no_truncate"


class Command(flush.Command):
    def handle(self, **options):
        database = options["database"]
        with transaction.atomic(using=database), connections[database].cursor() as cursor:
            cursor.execute(TRIGGER.format("DISABLE"))
            super().handle(**options)
            cursor.execute(TRIGGER.format("ENABLE"))
