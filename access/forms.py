"""The admin's login form: password, then the second factor when DJANGO_REQUIRE_2FA is on."""

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.models import Device

from . import devices

NO_AUTHENTICATOR = (
    "Two-factor authentication is required and this account has no authenticator app yet. "
    "Ask an administrator to run: python manage.py enrol_totp %(username)s"
)


class LoginForm(OTPAdminAuthenticationForm):
    """django-otp's admin login form, with the device taken from the code when none is chosen.

    A 6-digit code is checked against the user's authenticator app, anything else against their
    backup codes: one device is tried, never each in turn. A wrong code counts as a failed login
    for the lockout (django-axes), like a wrong password.
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
        self.cleaned_data = AdminAuthenticationForm.clean(self)  # password, active staff
        user = self.get_user()
        if user is None:
            return self.cleaned_data
        if settings.DJANGO_REQUIRE_2FA and devices.confirmed_authenticator(user) is None:
            raise forms.ValidationError(NO_AUTHENTICATOR, code="no_authenticator", params={"username": user.username})
        if settings.DJANGO_REQUIRE_2FA or self.cleaned_data.get("otp_token"):
            try:
                self.clean_otp(user)
            except forms.ValidationError as error:
                if error.code == "invalid_token":
                    user_login_failed.send(
                        sender=__name__, credentials={"username": user.get_username()}, request=self.request
                    )
                raise
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
