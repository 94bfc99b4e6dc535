"""Second-factor devices: enrol an authenticator app (TOTP), issue backup codes, start afresh.

The only writer of django-otp's devices. One authenticator per user: a confirmed new one
replaces the old; backup codes are one static device whose codes are replaced as a set.
"""

import io
from base64 import b32encode

import segno
from django.db import transaction
from django_otp import devices_for_user
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

AUTHENTICATOR_NAME = "Authenticator app"
BACKUP_CODES_NAME = "Backup codes"
BACKUP_CODE_COUNT = 10


def confirmed_authenticator(user):
    """The user's confirmed TOTP device, or None."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-id").first()


def backup_device(user):
    return StaticDevice.objects.filter(user=user, confirmed=True).first()


def backup_codes_left(user):
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


@transaction.atomic
def new_pending_authenticator(user):
    """A new unconfirmed device, with a new secret, replacing any other pending one of the user.

    Made for each page that shows a QR code, so a secret seen once (by whoever saw that page) is
    never the one a later visit confirms.
    """
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)


def pending_authenticator(user, pk):
    """The user's pending device `pk` (the one a page showed), or None once it is gone or confirmed."""
    if not isinstance(pk, int):
        return None
    return TOTPDevice.objects.filter(user=user, pk=pk, confirmed=False).first()


@transaction.atomic
def confirm_authenticator(device, token):
    """Confirm a pending device with one code from the app; it replaces the user's previous one.

    The pending device is no login factor yet, so a wrong code does not throttle the next try:
    whoever sees the page sees the secret anyway.
    """
    device.throttle_reset(commit=False)
    if not device.verify_token(normalise(token)):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    TOTPDevice.objects.filter(user=device.user).exclude(pk=device.pk).delete()
    return True


@transaction.atomic
def enrol_confirmed(user):
    """A confirmed authenticator at once, replacing every other device of the user, backup codes
    included (the enrol_totp command: an admin's word, for a lost phone or a stolen factor)."""
    for device in list(devices_for_user(user, confirmed=None)):
        device.delete()
    return TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=True)


def discard_backup_codes_without_authenticator(user_id):
    """Backup codes stand in for the authenticator: when its last one is deleted, they go too."""
    if not TOTPDevice.objects.filter(user_id=user_id, confirmed=True).exists():
        StaticDevice.objects.filter(user_id=user_id).delete()


@transaction.atomic
def issue_backup_codes(user):
    """New single-use backup codes for the user, replacing any left; returned once, to be shown once."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name=BACKUP_CODES_NAME, defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def normalise(token):
    """A code as typed: spaces and dashes dropped, lower case (backup codes are lower-case base32)."""
    return "".join((token or "").split()).replace("-", "").lower()


def secret_text(device):
    """The key as authenticator apps take it typed in: base32, in groups of four."""
    key = b32encode(device.bin_key).decode()
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def qr_svg_data_uri(url):
    """The otpauth URL as a QR code, an SVG data: URI (dark on white, readable in dark mode too)."""
    return segno.make(url, error="m").svg_data_uri(scale=5, border=4, dark="#000", light="#fff")


def qr_terminal(url):
    """The otpauth URL as a QR code drawn with block characters, for the enrol_totp command."""
    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True)
    return out.getvalue()
