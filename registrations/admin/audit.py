"""The audit trail in the admin: read-only for everyone, superusers included, and fast at millions of events.

The whole trail's count is Postgres' estimate, a filtered one is counted up to 10,000 rows, the date
drill-down reads MIN/MAX through an index, and every filter has an index that leads with it.
A registration is shown by its Verifik id only; details (reasons, an export's filter) quote people, so they are
masked like the registration's own page for users without view_pii.
"""

import json

from django.contrib import admin
from django.core.paginator import Paginator
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator

from .. import privacy, reveals, selectors
from ..models import AppRegistration, AuditEvent
from . import rendering
from .base import ReadOnlyAdmin
from .lookups import AllowListedChangeList, AllowListedLookups
from .per_request import pii_lens


class AuditPaginator(Paginator):
    """Millions of events are never counted: the whole trail shows Postgres' estimate of the table, a
    filtered list is counted up to `selectors.COUNT_CAP` (and paged that far), as the registrations list."""

    @cached_property
    def count(self):
        rows = self.object_list
        if not rows.query.where:
            estimate = selectors.estimated_total(rows.model)
            if estimate is not None and estimate > selectors.COUNT_CAP:
                return estimate
        return selectors.capped_count(rows).value


class AuditChangeList(AllowListedChangeList):
    def get_results(self, request):
        """Each event carries how this user may see its registration's personal data (reasons, filters)."""
        super().get_results(request)
        rows = list(self.result_list)
        for row in rows:
            row.pii_lens = pii_lens(request, row.registration_id) if row.registration_id else lens_for(request)
        self.result_list = rows


def lens_for(request):
    """Events of no registration (logins, exports): unmasked only for holders of view_pii."""
    return privacy.UNMASKED if reveals.has_view_pii(request.user) else privacy.MASKED


def shown_details(obj):
    """The event's details as this viewer may see them: reasons and filters quote people (fail closed)."""
    lens = getattr(obj, "pii_lens", privacy.MASKED)
    return lens.details(privacy.with_queries_masked(obj.details), obj.registration if obj.registration_id else None)


@admin.register(AuditEvent)
class AuditEventAdmin(AllowListedLookups, ReadOnlyAdmin):
    list_display = ["at", "action", "actor_name", "registration_link", "ip", "details_excerpt"]
    list_display_links = ["at"]
    list_filter = ["action", ("actor", admin.RelatedFieldListFilter), ("at", admin.DateFieldListFilter)]
    list_select_related = ["actor", "registration"]
    date_hierarchy = "at"
    search_fields = ["registration__verifik_id"]
    search_help_text = "A registration's Verifik id (or its number in this admin) lists its events."
    ordering = ["-at", "-id"]
    sortable_by = ["at"]  # newest or oldest first, through the index; other sorts would sort every event
    sortable_without_pii = sortable_by
    list_per_page = 100
    show_full_result_count = False
    paginator = AuditPaginator
    actions = None
    empty_value_display = "—"  # as the rest of the registrations pages
    fields = ["at", "action", "actor_name", "registration_link", "ip", "details_pretty"]
    readonly_fields = fields

    class Media:
        css = {"all": ["registrations/admin.css"]}

    def get_queryset(self, request):
        # The registration's id only: its payload columns can be large and its personal data is not ours to show.
        return (
            super()
            .get_queryset(request)
            .with_range_dates()
            .select_related("actor", "registration")
            .only(
                *(f.name for f in AuditEvent._meta.concrete_fields),
                "actor__username",
                "registration__verifik_id",
                "registration__name",
                "registration__email",
                "registration__phone",
            )
        )

    def get_changelist(self, request, **kwargs):
        return AuditChangeList

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.pii_lens = pii_lens(request, obj.registration_id) if obj.registration_id else lens_for(request)
        return obj

    def get_search_results(self, request, queryset, search_term):
        """An exact registration id: Verifik's (any case) or this admin's number. Anything else matches nothing."""
        term = search_term.strip()
        if not term:
            return queryset, False
        verifik_ids = {term, term.lower()}
        registrations = AppRegistration.objects.filter(verifik_id__in=verifik_ids).values("pk")
        if term.isdigit() and len(term) <= 18:
            return queryset.filter(registration_id__in=[*registrations.values_list("pk", flat=True), int(term)]), False
        return queryset.filter(registration_id__in=registrations), False

    @admin.display(description="Registration")
    def registration_link(self, obj):
        if obj.registration_id is None:
            return rendering.EMPTY
        url = reverse("admin:registrations_appregistration_change", args=[obj.registration_id])
        return format_html('<a href="{}"><code>{}</code></a>', url, obj.registration.verifik_id)

    @admin.display(description="Actor")
    def actor_name(self, obj):
        return obj.actor.get_username() if obj.actor_id else rendering.muted("system")

    @admin.display(description="Details")
    def details_excerpt(self, obj):
        if not obj.details:
            return rendering.EMPTY
        details = shown_details(obj)
        text = "; ".join(f"{key}: {_compact(value)}" for key, value in sorted(details.items()))
        return format_html('<span title="{}">{}</span>', Truncator(text).chars(1000), Truncator(text).chars(90))

    @admin.display(description="Details")
    def details_pretty(self, obj):
        return rendering.pretty_json(shown_details(obj)) if obj.details else rendering.EMPTY


def _compact(value):
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
