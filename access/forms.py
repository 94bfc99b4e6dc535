"""The admin's login form (password, then the second factor when DJANGO_REQUIRE_2FA is on) and
its password-change form, both counted by the lockout."""

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm, AdminPasswordChangeForm
from django.contrib.auth.signals import user_login_failed
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.models import Device

from . import devices

# The one answer to every failed login with 2FA on, whatever was wrong: a different one for a right
# password (a missing or wrong code, no authenticator) would tell a password guesser they have it.
FAILED_LOGIN = (
    "Please enter the correct username, password and authentication code of a staff account. "
    "No authenticator app yet, or lost it? Ask an administrator for an enrolment link "
    "(python manage.py enrol_totp USERNAME)."
)


def count_failure(request, user):
    """A failed login of `user` for the lockout (django-axes) and the audit trail, as Django's
    authenticate() signals a wrong password."""
    user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=request)


class LoginForm(OTPAdminAuthenticationForm):
    """django-otp's admin login form, with the device taken from the code when none is chosen.

    A 6-digit code is checked against the user's authenticator app, anything else against their
    backup codes: one device is tried, never each in turn. With 2FA on, every failure (a wrong
    password, a missing or wrong code, no authenticator) counts as a failed login for the lockout
    (django-axes) and gets the same message, FAILED_LOGIN.
    """

    otp_error_messages = {
        **OTPAdminAuthenticationForm.otp_error_messages,
        "token_required": "Enter the code from your authenticator app (or a backup code).",
        "invalid_token": "That code is not valid. Enter the current code from your authenticator app or a backup code.",
        "device_required": "This account has no second factor to check the code against.",
    }

    otp_token = forms.CharField(
        required=False,
        max_length=64,
        label="Authentication code",
        help_text="The 6-digit code from your authenticator app, or one of your backup codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "spellcheck": "false"}),
    )

    @property
    def asks_for_code(self):
        return settings.DJANGO_REQUIRE_2FA

    def clean_otp_token(self):
        return devices.normalise(self.cleaned_data.get("otp_token"))

    def clean(self):
        if not settings.DJANGO_REQUIRE_2FA:  # the password alone; a code, when typed, is still checked
            self.cleaned_data = AdminAuthenticationForm.clean(self)
            if self.get_user() is not None and self.cleaned_data.get("otp_token"):
                try:
                    self.clean_otp(self.get_user())
                except forms.ValidationError:
                    count_failure(self.request, self.get_user())
                    raise
            return self.cleaned_data
        if self.has_error("otp_token"):
            # A malformed code (too long): refused before the password is checked, so the answer
            # cannot depend on it and costs no failure.
            return self.cleaned_data
        try:
            self.cleaned_data = AdminAuthenticationForm.clean(self)  # a wrong password: authenticate() counts it
            user = self.get_user()
            if user is None:  # a field left empty: nothing was checked
                return self.cleaned_data
            if devices.confirmed_authenticator(user) is None:
                raise forms.ValidationError(FAILED_LOGIN, code="no_authenticator")
            self.clean_otp(user)
        except forms.ValidationError:
            if self.user_cache is not None:  # the password was right: nothing has counted this failure yet
                count_failure(self.request, self.user_cache)
                self.user_cache = None
            raise forms.ValidationError(FAILED_LOGIN, code="invalid_login") from None
        return self.cleaned_data

    def _chosen_device(self, user):
        chosen = self.cleaned_data.get("otp_device")
        if chosen:
            # Only one of the user's own devices: django-otp would look up any model the value names.
            own = {device.persistent_id for device in devices_for_user(user)}
            return Device.from_persistent_id(chosen, for_verify=True) if chosen in own else None
        token = self.cleaned_data.get("otp_token") or ""
        authenticator = devices.confirmed_authenticator(user)
        if not (token.isdigit() and authenticator is not None and len(token) == authenticator.digits):
            authenticator = devices.backup_device(user) or authenticator
        # Locked for the check, as django-otp does for a chosen device, so its throttling counts every try.
        return Device.from_persistent_id(authenticator.persistent_id, for_verify=True) if authenticator else None


class PasswordChangeForm(AdminPasswordChangeForm):
    """The admin's password change, where a wrong old password is a failed login (the lockout's
    count and rules), so the form is no unthrottled oracle for the password."""

    def __init__(self, user, *args, request, **kwargs):
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self):
        try:
            return super().clean_old_password()
        except forms.ValidationError:
            count_failure(self.request, self.user)
            raise


class EnrolmentPasswordForm(forms.Form):
    """The password, asked on an enrolment link's page: the link alone does not enrol a device."""

    password = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput(attrs={"autofocus": True}))
