"""The second factor on every request, not only at login."""

from django.conf import settings
from django.contrib.auth import logout


class RequireVerifiedSessionMiddleware:
    """With DJANGO_REQUIRE_2FA on, a logged-in session that is not OTP-verified is logged out.

    Runs after django-otp's OTPMiddleware, which finds the device the session was verified with
    (`request.user.is_verified()`): a session whose device has since been deleted (a stolen phone
    revoked in the admin, `enrol_totp` run for a recovery), or one made without the second factor,
    is ended here, so the admin's own views send it to the login page and the login and logout
    pages work as for anyone logged out.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if settings.DJANGO_REQUIRE_2FA and user.is_authenticated and not user.is_verified():
            logout(request)
            request.user.otp_device = None  # what OTPMiddleware gives every user, the anonymous one too
            request.user.is_verified = lambda: False
        return self.get_response(request)
