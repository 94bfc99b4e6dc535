"""One-time enrolment links: how a user without a usable second factor enrols a new one.

`enrol_totp USERNAME` prints one. The token is `django.core.signing.dumps` of the user's id and a
fingerprint of their second factor as it stands: an HMAC (keyed by SECRET_KEY) over their password
hash, last login and confirmed devices. Nothing is stored, so there is nothing to steal from the
database; the link expires after ENROLMENT_LINK_MAX_AGE (the signature's timestamp), and it is
single-use because confirming a device through it (or any other enrolment, a new `enrol_totp`, a
password change, a login) changes the fingerprint: Django's password-reset tokens work the same way.
"""

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.core import signing
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac
from django_otp import devices_for_user

ENROLMENT_LINK_MAX_AGE = timedelta(hours=24)
SALT = "access.enrolment_links"


def fingerprint(user):
    """Changes whenever the user's second factor, password or last login does."""
    devices = sorted(device.persistent_id for device in devices_for_user(user, confirmed=True))
    state = "|".join([str(user.pk), user.password, str(user.last_login), *devices])
    return salted_hmac(SALT, state, algorithm="sha256").hexdigest()


def token_for(user):
    return signing.dumps({"user": user.pk, "state": fingerprint(user)}, salt=SALT, compress=True)


def path_for(user):
    """The link's path and query; the command prints it after the site's address. The token is in
    the query string, which the request log leaves out (axes masks it: AXES_SENSITIVE_PARAMETERS)."""
    return f"{reverse('access:enrol_link')}?{urlencode({'token': token_for(user)})}"


def user_for(token):
    """The active user a token was made for, if it is genuine, unexpired and unspent; else None."""
    if not token:
        return None
    try:
        data = signing.loads(token, salt=SALT, max_age=ENROLMENT_LINK_MAX_AGE)
        pk, state = data["user"], data["state"]
    except (signing.BadSignature, KeyError, TypeError):
        return None
    user = get_user_model()._default_manager.filter(pk=pk, is_active=True).first() if isinstance(pk, int) else None
    if user is None or not constant_time_compare(fingerprint(user), state):
        return None
    return user
