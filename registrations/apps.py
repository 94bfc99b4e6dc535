from django.apps import AppConfig


class RegistrationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "registrations"

    def ready(self):
        from . import checks, receivers  # noqa: F401 - registers the system checks and the audit's receivers
