"""Signal receivers of the audit trail: every login and every failed login writes one event.

Connected in RegistrationsConfig.ready(). A failed login has no actor (nobody was
authenticated); its details name the username that was tried when it is one of our users,
never the password. Text typed as a username that names nobody is not stored: people type
their password into the username box, and the trail is read by more people than the lockout.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from . import audit
from .models import AuditAction

USERNAME_MAX = 150  # Django's own username length; a longer attempt is cut, not stored whole


@receiver(user_logged_in, dispatch_uid="registrations.audit.login")
def audit_login(sender, request, user, **kwargs):
    audit.record(AuditAction.LOGIN, actor=user, request=request)


@receiver(user_login_failed, dispatch_uid="registrations.audit.login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    username = credentials.get("username")
    username = str(username)[:USERNAME_MAX] if username is not None else None
    known = username is not None and get_user_model()._default_manager.filter(username=username).exists()
    details = {"username": username} if known else {"username": None, "unknown_username": True}
    audit.record(AuditAction.LOGIN_FAILED, request=request, details=details)
