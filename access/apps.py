from django.apps import AppConfig, apps

# How the libraries' apps are headed in the admin's index (their labels would show as "Otp_Totp" ...).
ADMIN_HEADINGS = {
    "otp_totp": "Two-factor: authenticator apps",
    "otp_static": "Two-factor: backup codes",
    "axes": "Login attempts",
}


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access control"

    def ready(self):
        from . import signals  # noqa: F401  (connects the receivers)

        for label, heading in ADMIN_HEADINGS.items():
            apps.get_app_config(label).verbose_name = heading
