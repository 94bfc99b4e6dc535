"""`migrate` as the schema's owner: Django's command, with `--database` defaulting to the `owner` alias.

DATABASE_OWNER_URL's role owns the tables and runs the migrations; the application's role
(DATABASE_URL) could not create or alter them. `manage.py migrate` therefore connects as the
owner without being told (the Procfile says `--database=owner` anyway); with one role for both,
`owner` is DATABASE_URL.
"""

from django.core.management.commands import migrate


class Command(migrate.Command):
    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(database="owner")
