"""The staff user's own second factor (enrol an authenticator app, get backup codes), the
one-time enrolment link `enrol_totp` prints, and the admin's password change under the lockout."""

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import authenticate, login
from django.contrib.auth.views import PasswordChangeView
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import login as otp_login

from . import devices, enrolment_links, lockout
from .forms import EnrolmentPasswordForm, PasswordChangeForm

NEEDS_VERIFIED_SESSION = (
    "This account already has an authenticator app. To change it or get backup codes, log out and "
    "log in again with a code from it (or a backup code)."
)
WRONG_CODE = "That code is not valid. Start again with a new key, scan it, and enter the code your app then shows."
CONFIRMED = "Your authenticator app is confirmed: log in with its codes from now on."
# The pending device a page has shown, by id: only that one can be confirmed from this session.
PENDING_SESSION_KEY = "access_pending_device"


def may_change_second_factor(request):
    """With 2FA required, only a session verified with a confirmed device may add or replace one
    (a stolen password, or a session whose factor was revoked, must not become a lasting device)."""
    if not settings.DJANGO_REQUIRE_2FA:
        return True
    device = request.user.otp_device if request.user.is_verified() else None
    return device is not None and device.confirmed


def page(request, template, status=200, **context):
    return TemplateResponse(
        request,
        template,
        {**admin.site.each_context(request), "title": "Two-factor authentication", **context},
        status=status,
    )


def show_new_key(request, user, context):
    """A new pending device, shown this once: its QR code and key go into `context` and never again."""
    pending = devices.new_pending_authenticator(user)
    request.session[PENDING_SESSION_KEY] = pending.pk
    context.update(pending=pending, qr=devices.qr_svg_data_uri(pending.config_url), secret=devices.secret_text(pending))


def confirm_shown_key(request, user):
    """The pending device this session was shown, confirmed with the POSTed code; None if not."""
    pending = devices.pending_authenticator(user, request.session.get(PENDING_SESSION_KEY))
    if pending is None or not devices.confirm_authenticator(pending, request.POST.get("otp_token", "")):
        return None
    del request.session[PENDING_SESSION_KEY]
    return pending


@never_cache
def enrol(request):
    """The account's second factor. A QR code (GET, with no authenticator yet or "Move to a new
    phone", `?new=1`) is a new key each time; its confirmation is POST `otp_token`."""
    user = request.user
    current = devices.confirmed_authenticator(user)
    if not may_change_second_factor(request):
        return page(request, "access/enrol.html", status=403, refused=NEEDS_VERIFIED_SESSION, current=current)
    context = {"current": current, "backup_codes_left": devices.backup_codes_left(user)}
    if request.method == "POST":
        confirmed = confirm_shown_key(request, user)
        if confirmed is not None:
            otp_login(request, confirmed)  # this session has just proved the new device
            messages.success(request, CONFIRMED)
            return redirect("access:enrol")
        context["error"] = WRONG_CODE
    elif current is None or "new" in request.GET:
        show_new_key(request, user, context)
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


@never_cache
@sensitive_post_parameters("password", "otp_token")
def enrol_link(request):
    """An enrolment link (`?token=`): the account's password (counted by the lockout), then a new
    key shown once, then one code from it, which confirms the device and logs the user in with it."""
    user = enrolment_links.user_for(request.GET.get("token", ""))
    if user is None:
        return page(request, "access/enrol_link.html", status=404, title="Enrolment link", invalid=True)
    context = {"title": "Enrol an authenticator app", "enrolling": user}
    if request.method == "POST" and "otp_token" in request.POST:
        confirmed = confirm_shown_key(request, user)
        if confirmed is None:
            return page(request, "access/enrol_link.html", error=WRONG_CODE, **context)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        otp_login(request, confirmed)
        messages.success(request, CONFIRMED)
        return redirect("admin:index")
    form = EnrolmentPasswordForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        password = form.cleaned_data["password"]
        if authenticate(request, username=user.get_username(), password=password) == user:
            show_new_key(request, user, context)
            return page(request, "access/enrol_link.html", **context)
        form.add_error("password", "That is not this account's password.")
    return page(request, "access/enrol_link.html", form=form, **context)


class PasswordChange(PasswordChangeView):
    """The admin's password change, with a wrong old password counted as a failed login and,
    while the username is locked out, every change refused with the lockout page."""

    form_class = PasswordChangeForm
    success_url = reverse_lazy("admin:password_change_done")

    def dispatch(self, request, *args, **kwargs):
        request.current_app = admin.site.name
        credentials = {"username": request.user.get_username()}
        if request.method == "POST" and not AxesProxyHandler.is_allowed(request, credentials):
            return lockout.lockout_response(request, credentials=credentials)
        return super().dispatch(request, *args, **kwargs)

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def get_context_data(self, **kwargs):
        return {**admin.site.each_context(self.request), **super().get_context_data(**kwargs)}


password_change = PasswordChange.as_view()
