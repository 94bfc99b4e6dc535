"""Ending a user's sessions (enrol_totp: a recovery must not leave a thief logged in)."""

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.utils import timezone


def end_sessions_of(user):
    """Delete every live session of `user`; returns how many.

    Sessions are database rows keyed by a random id, not by user, so each live one is decoded:
    a back office has a few hundred at most, and this runs only on a recovery.
    """
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get(SESSION_KEY) == str(user.pk):
            session.delete()
            ended += 1
    return ended
