"""What a list's query string may ask for: its own filters and sorts and a short search, nothing else.

Django's admin applies any query-string parameter its filters do not take as a lookup on the
model (`?email__startswith=a`, `?populated__documentValidation__OCRExtraction__documentNumber__regex=...`)
and sorts by any column that has an ordering (`?o=5`). Either is an oracle for a masked value:
which rows match, or in what order they come, tells what the mask hides. So every list here
takes only what its own links build (docs/DESIGN.md, "An allow-list of lookups"):

- the parameters its filters take, the date hierarchy's year/month/day, `id`/`pk`, and the
  plain lookups the admin names in `list_lookups` (the dashboard's links);
- sorts by the columns in `sortable_by`; without view_pii, only by those in `sortable_without_pii`;
- a search of at most SEARCH_MAX_CHARS characters and SEARCH_MAX_WORDS words;
- no facet counts (a count per filter choice over the whole table).

Anything else is refused before a row is read: a lookup, a sort or `_facets` answers 400
(`DisallowedModelAdminLookup`, Django's own refusal for a lookup `lookup_allowed` rejects),
superusers included; a long search goes back to the list with a message, as Django does for an
invalid lookup (?e=1). `export/` and the actions read the list through the same ChangeList.
"""

from django.contrib import admin, messages
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.options import IS_FACETS_VAR, IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.db.models.constants import LOOKUP_SEP

from .. import reveals

SEARCH_MAX_CHARS = 200
SEARCH_MAX_WORDS = 10
SEARCH_TOO_LONG = (
    f"A search takes at most {SEARCH_MAX_CHARS} characters and {SEARCH_MAX_WORDS} words: shorten it, "
    "or narrow the list with the filters."
)
KEY_LOOKUPS = frozenset({"id", "id__exact", "id__in", "pk", "pk__exact", "pk__in"})
DATE_PARTS = ("year", "month", "day")


class AllowListedChangeList(ChangeList):
    """Django's ChangeList, refusing what the list's own filters, sorts and search do not produce."""

    def get_queryset(self, request, exclude_parameters=None):
        if IS_FACETS_VAR in request.GET:
            raise DisallowedModelAdminLookup("Facet counts are not available on this list")
        if len(self.query) > SEARCH_MAX_CHARS or len(self.query.split()) > SEARCH_MAX_WORDS:
            messages.error(request, SEARCH_TOO_LONG)
            raise IncorrectLookupParameters(SEARCH_TOO_LONG)
        return super().get_queryset(request, exclude_parameters)

    def get_filters(self, request):
        """Every parameter left over once the filters took theirs must be one of the admin's plain lookups.

        `lookup_allowed` already refused what belongs to no filter; this catches what names a filter's
        field without being one of its parameters (`created_at__gte`, `at__regex`, `actor__username`).
        """
        asked = self.get_filters_params()
        specs, has_filters, remaining, may_have_duplicates, has_active_filters = super().get_filters(request)
        taken = {parameter for spec in specs for parameter in spec.expected_parameters()}
        plain = self.model_admin.plain_lookups()
        for key in asked.keys() & remaining.keys():  # left over: not a filter's (the date hierarchy's are new keys)
            if key not in taken and f"{key}{LOOKUP_SEP}exact" not in taken and key not in plain:
                raise DisallowedModelAdminLookup(f"Filtering by {key} not allowed")
        return specs, has_filters, remaining, may_have_duplicates, has_active_filters

    def get_ordering(self, request, queryset):
        """Without view_pii, `?o=` names only columns of `sortable_without_pii`: a sort by name tells names."""
        if not reveals.has_view_pii(request.user):
            allowed = self.model_admin.sortable_without_pii
            for column in self.sorted_columns():
                if column not in allowed:
                    raise DisallowedModelAdminLookup(f"Sorting by {column} not allowed")
        return super().get_ordering(request, queryset)

    def get_ordering_field(self, field_name):
        """Columns outside `sortable_by` do not sort (Django shows them unsortable yet sorts by them)."""
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def sorted_columns(self):
        """The list_display entries `?o=` names, read as Django's get_ordering reads them."""
        for part in self.params.get(ORDER_VAR, "").split("."):
            try:
                yield self.list_display[int(part.rpartition("-")[2])]
            except (IndexError, ValueError):
                continue


class AllowListedLookups:
    """For every list admin here: lookups, sorts, search and facets as AllowListedChangeList allows them."""

    list_lookups = ()  # plain lookups (no filter of their own) that the product's links use
    sortable_without_pii = ()  # the columns users without view_pii may sort by: none unless named
    show_facets = admin.ShowFacets.NEVER  # and `_facets` is refused

    def get_changelist(self, request, **kwargs):
        return AllowListedChangeList

    def plain_lookups(self):
        """Lookups applied as they are, not by a filter: keys, the date hierarchy's parts, `list_lookups`."""
        parts = {f"{self.date_hierarchy}{LOOKUP_SEP}{part}" for part in DATE_PARTS} if self.date_hierarchy else set()
        return KEY_LOOKUPS | parts | set(self.list_lookups)

    def lookup_allowed(self, lookup, value, request=None):
        """The first gate, before any filter runs a query: the parameter is a filter's or a plain lookup.

        Which filter parameters exactly is known once the filters are built: AllowListedChangeList.get_filters.
        """
        if lookup in self.plain_lookups():
            return True
        for item in self.get_list_filter(request) if request is not None else self.list_filter:
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                if lookup == item.parameter_name:
                    return True
                continue
            path = item[0] if isinstance(item, (list, tuple)) else item
            path = getattr(path, "name", path)  # a Field instance
            if lookup == path or lookup.startswith(path + LOOKUP_SEP):
                return True
        return False

    def get_sortable_by(self, request):
        """Users without view_pii get no sort links on the columns they may not sort by."""
        sortable = super().get_sortable_by(request)
        if reveals.has_view_pii(request.user):
            return sortable
        return [column for column in sortable if column in self.sortable_without_pii]
