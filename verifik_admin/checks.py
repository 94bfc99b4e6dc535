"""System checks on settings that would quietly weaken a promise of the README, with DEBUG off.

They run with every `manage.py check` (`--deploy` too), `migrate` (the release step) and
`runserver`, and gunicorn's workers run them when they load verifik_admin/wsgi.py: an Error
stops each of them.
"""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

TAG = "unsafe_settings"
WEBHOOK_SECRET_MIN_LENGTH = 32  # a guessable path segment lets anyone trigger refreshes
REVEAL_MINUTES = (1, 60)
LOGIN_FAILURE_LIMIT = (3, 20)  # fewer locks users out on typos; more lets a guesser try too long
LOGIN_LOCKOUT_MINUTES = (1, 1440)  # under a minute slows nobody; over a day locks a colleague out for days


def _outside(check_id, name, value, bounds, why):
    low, high = bounds
    if low <= value <= high:
        return []
    return [
        checks.Error(
            f"{name} is {value:g}; it must be between {low} and {high} with DEBUG off.",
            hint=why,
            id=check_id,
        )
    ]


@checks.register(TAG)
def unsafe_settings(app_configs=None, **kwargs):
    """A short webhook secret, a reveal window or a lockout outside its range (README "Configuration")."""
    if settings.DEBUG:
        return []
    errors = []
    secret = settings.VERIFIK_WEBHOOK_SECRET
    if secret and len(secret) < WEBHOOK_SECRET_MIN_LENGTH:
        errors.append(
            checks.Error(
                f"VERIFIK_WEBHOOK_SECRET is {len(secret)} characters long; it must be at least "
                f"{WEBHOOK_SECRET_MIN_LENGTH} with DEBUG off.",
                hint="Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                id="verifik_admin.E001",
            )
        )
    errors += _outside(
        "verifik_admin.E002",
        "VERIFIK_REVEAL_MINUTES",
        settings.VERIFIK_REVEAL_MINUTES,
        REVEAL_MINUTES,
        "A reveal shows personal data unmasked for this long: keep it short.",
    )
    errors += _outside(
        "verifik_admin.E003",
        "DJANGO_LOGIN_FAILURE_LIMIT",
        settings.DJANGO_LOGIN_FAILURE_LIMIT,
        LOGIN_FAILURE_LIMIT,
        "Failed logins of a username before it is locked out.",
    )
    errors += _outside(
        "verifik_admin.E004",
        "DJANGO_LOGIN_LOCKOUT_MINUTES",
        settings.DJANGO_LOGIN_LOCKOUT_MINUTES,
        LOGIN_LOCKOUT_MINUTES,
        "How long a locked-out username stays refused.",
    )
    return errors


def refuse_unsafe_settings():
    """Startup of a web process: raise on any error of unsafe_settings (gunicorn does not run system checks)."""
    errors = [e for e in checks.run_checks(tags=[TAG]) if e.is_serious() and not e.is_silenced()]
    if errors:
        raise ImproperlyConfigured("\n".join(str(error) for error in errors))
