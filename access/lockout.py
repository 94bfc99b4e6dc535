"""The page a locked-out login gets (AXES_LOCKOUT_CALLABLE): that it is locked, and until when."""

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.db.models import Max
from django.shortcuts import render
from django.utils import timezone


def lockout_ends(username, cool_off):
    """When logins of `username` are accepted again: its last recorded failure plus the cool-off."""
    last = AccessAttempt.objects.filter(username=username).aggregate(last=Max("attempt_time"))["last"]
    return (last or timezone.now()) + cool_off


def lockout_response(request, original_response=None, credentials=None):
    username = get_client_username(request, credentials) or ""
    cool_off = get_cool_off(request)
    ends = lockout_ends(username, cool_off)
    minutes = max(1, round((ends - timezone.now()).total_seconds() / 60))
    context = {
        **admin.site.each_context(request),
        "title": "Login locked",
        "username": username,
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "lockout_ends": ends,
        "minutes_left": minutes,
    }
    return render(request, "access/lockout.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)
