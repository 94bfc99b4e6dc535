"""`migrate` as the schema's owner: Django's command, connected as DATABASE_OWNER_URL's role.

The owner's role owns the tables and runs the migrations; the application's role
(DATABASE_URL) could not create or alter them. For the length of the command the default
connection logs in as the owner (same database; only the role and its password change), so
every statement of a migration is the owner's, data migrations and post_migrate receivers
included, however they pick their connection. With one role for both nothing changes.
"""

from contextlib import contextmanager

from django.conf import settings
from django.core.management.commands import migrate
from django.db import DEFAULT_DB_ALIAS, connections

CREDENTIALS = ("USER", "PASSWORD")


@contextmanager
def connected_as_owner(alias):
    connection, owner = connections[alias], settings.DATABASES["owner"]
    saved = {key: connection.settings_dict.get(key) for key in CREDENTIALS}
    if alias != DEFAULT_DB_ALIAS or all(saved[key] == owner.get(key) for key in CREDENTIALS):
        yield
        return
    connection.close()
    connection.settings_dict.update({key: owner.get(key) for key in CREDENTIALS})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


class Command(migrate.Command):
    def handle(self, *args, **options):
        with connected_as_owner(options["database"]):
            return super().handle(*args, **options)
