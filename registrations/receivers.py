"""Signal receivers of the audit trail: every login and every failed login writes one event.

Connected in RegistrationsConfig.ready(). A failed login has no actor (nobody was
authenticated); its details name the username that was tried, never the password.
"""

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
    details = {"username": str(username)[:USERNAME_MAX] if username is not None else None}
    audit.record(AuditAction.LOGIN_FAILED, request=request, details=details)
