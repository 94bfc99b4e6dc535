"""Receivers that keep a revoked second factor revoked."""

from django.db.models.signals import post_delete
from django.dispatch import receiver
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import devices


@receiver(post_delete, sender=TOTPDevice, dispatch_uid="access.authenticator_deleted")
def authenticator_deleted(sender, instance, **kwargs):
    """A superuser deleting a user's authenticator (a stolen phone) revokes its backup codes too:
    codes a thief generated with it must not log in afterwards. Replacing it keeps them."""
    if instance.confirmed:
        devices.discard_backup_codes_without_authenticator(instance.user_id)
