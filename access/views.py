"""The staff user's own second factor: enrol an authenticator app, get backup codes."""

from django.conf import settings
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import login as otp_login

from . import devices

NEEDS_VERIFIED_SESSION = (
    "This account already has an authenticator app. To change it or get backup codes, log out and "
    "log in again with a code from it (or a backup code)."
)


def may_change_second_factor(request):
    """A session that did not pass the second factor may not add one where one exists (a stolen
    password plus a session made without 2FA must not become a lasting second factor)."""
    if not settings.DJANGO_REQUIRE_2FA or request.user.is_verified():
        return True
    return devices.confirmed_authenticator(request.user) is None


def page(request, template, status=200, **context):
    return TemplateResponse(
        request,
        template,
        {**admin.site.each_context(request), "title": "Two-factor authentication", **context},
        status=status,
    )


@never_cache
def enrol(request):
    """The QR code of a pending authenticator (GET; with one enrolled, only after "Move to a new phone"),
    and its confirmation (POST `otp_token`: one code from it)."""
    user = request.user
    current = devices.confirmed_authenticator(user)
    if not may_change_second_factor(request):
        return page(request, "access/enrol.html", status=403, refused=NEEDS_VERIFIED_SESSION, current=current)
    context = {"current": current, "backup_codes_left": devices.backup_codes_left(user)}
    if current is None or request.method == "POST" or "new" in request.GET:
        pending = devices.pending_authenticator(user)
        if request.method == "POST":
            if devices.confirm_authenticator(pending, request.POST.get("otp_token", "")):
                otp_login(request, pending)  # this session has just proved the new device
                messages.success(request, "Your authenticator app is confirmed: log in with its codes from now on.")
                return redirect("access:enrol")
            context["error"] = "That code is not valid. Enter the code your app shows now for verifik-admin."
        qr = devices.qr_svg_data_uri(pending.config_url)
        context.update(pending=pending, qr=qr, secret=devices.secret_text(pending))
    return page(request, "access/enrol.html", **context)


@never_cache
@require_POST
def backup_codes(request):
    """New backup codes, shown once on this page (needs a confirmed authenticator first)."""
    if not may_change_second_factor(request):
        return page(request, "access/enrol.html", status=403, refused=NEEDS_VERIFIED_SESSION)
    if devices.confirmed_authenticator(request.user) is None:
        messages.error(request, "Confirm an authenticator app first; backup codes stand in for it.")
        return redirect("access:enrol")
    codes = devices.issue_backup_codes(request.user)
    return page(request, "access/backup_codes.html", codes=codes)
