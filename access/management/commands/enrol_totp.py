from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from access import devices


class Command(BaseCommand):
    help = (
        "Give USERNAME a confirmed authenticator app (replacing any other) and print its otpauth URL "
        "and QR code; --backup-codes also prints new backup codes. For the first superuser and lost phones."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--backup-codes", action="store_true", help="also issue and print new backup codes")

    def handle(self, *args, username, backup_codes, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(
                f"No user named {username!r}: create it first (python manage.py createsuperuser)."
            ) from None
        replaced = devices.confirmed_authenticator(user) is not None
        device = devices.enrol_confirmed(user)
        url = device.config_url
        self.stdout.write(f"Scan this QR code with an authenticator app (or open the URL on the phone) for {username}:")
        self.stdout.write(devices.qr_terminal(url), ending="")
        self.stdout.write(url)
        self.stdout.write(f"Key, to type in instead: {devices.secret_text(device)}")
        if replaced:
            self.stdout.write(self.style.WARNING("The previous authenticator app of this user no longer works."))
        if backup_codes:
            self.stdout.write("Backup codes, each good for one login; keep them apart from the phone:")
            for code in devices.issue_backup_codes(user):
                self.stdout.write(f"  {code}")
        self.stdout.write(self.style.SUCCESS(f"{username} logs in with a code from the app from now on."))
