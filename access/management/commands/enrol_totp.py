from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from access import devices, enrolment_links, sessions


class Command(BaseCommand):
    help = (
        "Recovery of USERNAME's second factor: delete every device of the user (backup codes included), "
        "end their sessions, give them a confirmed authenticator app (its otpauth URL and QR code are "
        "printed) and print a one-time enrolment link with which they enrol their own phone instead. "
        "--backup-codes also prints new backup codes. For the first superuser and lost or stolen phones."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--backup-codes", action="store_true", help="also issue and print new backup codes")
        parser.add_argument(
            "--site",
            default="",
            help="the admin's address, e.g. https://admin.example.com, printed before the link's path",
        )

    def handle(self, *args, username, backup_codes, site, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(
                f"No user named {username!r}: create it first (python manage.py createsuperuser)."
            ) from None
        replaced = devices.confirmed_authenticator(user) is not None or devices.backup_device(user) is not None
        device = devices.enrol_confirmed(user)
        ended = sessions.end_sessions_of(user)
        url = device.config_url
        self.stdout.write(f"Scan this QR code with an authenticator app (or open the URL on the phone) for {username}:")
        self.stdout.write(devices.qr_terminal(url), ending="")
        self.stdout.write(url)
        self.stdout.write(f"Key, to type in instead: {devices.secret_text(device)}")
        if replaced:
            self.stdout.write(
                self.style.WARNING("The previous authenticator app and backup codes of this user no longer work.")
            )
        self.stdout.write(f"Sessions ended: {ended}.")
        if backup_codes:
            self.stdout.write("Backup codes, each good for one login; keep them apart from the phone:")
            for code in devices.issue_backup_codes(user):
                self.stdout.write(f"  {code}")
        hours = int(enrolment_links.ENROLMENT_LINK_MAX_AGE.total_seconds() // 3600)
        self.stdout.write(
            f"Or send {username} this enrolment link to enrol their own phone instead (with their password; "
            f"once, within {hours} hours, and only until they log in):"
        )
        self.stdout.write(f"  {site.rstrip('/')}{enrolment_links.path_for(user)}")
        self.stdout.write(self.style.SUCCESS(f"{username} logs in with a code from the app from now on."))
