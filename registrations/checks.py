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
