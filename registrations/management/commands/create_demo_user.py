from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"


class Command(BaseCommand):
    help = "Create a demo superuser, only with DEBUG on and no user in the database."

    def handle(self, *args, **options):
        User = get_user_model()
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no demo user created.")
        elif User.objects.exists():
            self.stdout.write("Users exist already: log in with your own account (no demo user created).")
        else:
            User.objects.create_superuser(DEMO_USERNAME, "demo@example.com", DEMO_PASSWORD)
            self.stdout.write(
                self.style.SUCCESS(f"Demo superuser created: username {DEMO_USERNAME!r}, password {DEMO_PASSWORD!r}")
            )
