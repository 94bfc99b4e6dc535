"""System checks: the model and the mapping must name the same columns."""

from django.core import checks

from . import mapping


@checks.register(checks.Tags.models)
def mapping_matches_model(app_configs=None, **kwargs):
    """Every column the mapping fills exists, and every reference column of the model is mapped."""
    from .models import AppRegistration

    fields = {f.name for f in AppRegistration._meta.get_fields()}
    errors = [
        checks.Error(f"mapping.MAPPED_FIELDS names {name!r}, which AppRegistration lacks.", id="registrations.E001")
        for name in mapping.MAPPED_FIELDS
        if name not in fields
    ]
    references = {
        f.name for f in AppRegistration._meta.concrete_fields if (f.help_text or "").startswith("Verifik id of `")
    }
    for name in sorted(references ^ set(mapping.REFERENCES.values())):
        errors.append(
            checks.Error(
                f"Reference column {name!r} is not in both AppRegistration and mapping.REFERENCES.",
                id="registrations.E002",
            )
        )
    return errors


@checks.register()
def deprecated_settings(app_configs=None, **kwargs):
    """VERIFIK_DETAIL_RATE was per worker process; it now sets the account-wide VERIFIK_API_RATE, for one release."""
    from django.conf import settings

    if not settings.VERIFIK_DETAIL_RATE:
        return []
    return [
        checks.Warning(
            f"VERIFIK_DETAIL_RATE is deprecated and will be removed in the next release. It no longer paces each "
            f"worker process: while VERIFIK_API_RATE is unset it is read as VERIFIK_API_RATE, one budget for every "
            f"process and machine together (now {settings.VERIFIK_API_RATE:g} requests/s).",
            hint="Set VERIFIK_API_RATE to your Verifik account's rate limit and remove VERIFIK_DETAIL_RATE.",
            id="registrations.W001",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def audit_trail_has_its_own_owner(app_configs=None, **kwargs):
    """With one database role for the application and the schema, the app may disable the audit trigger."""
    from django.conf import settings

    owner, app = settings.DATABASES["owner"], settings.DATABASES["default"]
    if settings.DATABASE_OWNER_URL and owner["USER"] != app["USER"]:
        return []
    return [
        checks.Warning(
            "DATABASE_OWNER_URL is not set (or names DATABASE_URL's role): the application's role owns the schema, "
            "so the audit trail is protected only by its trigger, which that role may disable.",
            hint="Create a role that owns the schema and runs `migrate`, set DATABASE_OWNER_URL to it, and keep "
            "DATABASE_URL for a role that owns no table (README, 'Audit').",
            id="registrations.W020",
        )
    ]
