from django.apps import AppConfig


class RegistrationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "registrations"

    def ready(self):
        from django.db.models.signals import post_migrate

        from verifik_admin import checks as settings_checks  # noqa: F401 - the project's checks on its settings

        from . import checks, receivers  # noqa: F401 - registers the system checks and the audit's receivers
        from .db_roles import grant_after_migrate

        post_migrate.connect(grant_after_migrate, dispatch_uid="registrations.grant_app_role")
