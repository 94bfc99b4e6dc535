"""The lockout's rules for django-axes, read from the settings at request time, and the page a
locked-out login gets (AXES_LOCKOUT_CALLABLE): that it is locked, and until when."""

from datetime import timedelta

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.db.models import Max
from django.shortcuts import render
from django.utils import timezone


def failure_limit(request, credentials):
    """AXES_FAILURE_LIMIT: failed logins of a username before its logins are refused."""
    return settings.DJANGO_LOGIN_FAILURE_LIMIT


def cool_off(request):
    """AXES_COOLOFF_TIME: how long the refusal lasts after the last failure."""
    return timedelta(minutes=settings.DJANGO_LOGIN_LOCKOUT_MINUTES)


def lockout_ends(username, cool_off):
    """When logins of `username` are accepted again: its last recorded failure plus the cool-off."""
    last = AccessAttempt.objects.filter(username=username).aggregate(last=Max("attempt_time"))["last"]
    return (last or timezone.now()) + cool_off


def lockout_response(request, original_response=None, credentials=None):
    username = get_client_username(request, credentials) or ""
    ends = lockout_ends(username, get_cool_off(request))
    minutes = max(1, round((ends - timezone.now()).total_seconds() / 60))
    context = {
        **admin.site.each_context(request),
        "title": "Login locked",
        "username": username,
        "failure_limit": get_failure_limit(request, credentials),
        "lockout_ends": ends,
        "minutes_left": minutes,
    }
    return render(request, "access/lockout.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)
