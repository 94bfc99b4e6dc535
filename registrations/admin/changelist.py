"""The registrations list: narrow rows (the JSON payloads are never read) and queue views in waiting order.

A queue view in its default order (oldest waiting first) is not sorted whole: its
page comes from `queue.ordered_page`, which merges the index-ordered legs of the
queue; its size from `queue.size`. Any other order, and "show all", use the
ordinary query, which applies the same rules.

Every list is counted up to `selectors.COUNT_CAP` rows ("more than 10,000") and paged
that far: a deeper page answers at once with a message pointing to filters, search and
sorting (docs/DESIGN.md, "Counts and deep pages").
"""

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ORDER_VAR
from django.core.paginator import InvalidPage, Paginator
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext as _

from .. import queue, selectors
from .filters import DecisionFilter, QueueFilter
from .lookups import AllowListedChangeList
from .per_request import pii_lens

PAGING_NOTE = "Pages cover the first {depth:,}; filter, search or sort to reach the others."
DEEP_PAGE_MESSAGE = (
    "Only the first {depth:,} registrations of this list are paged through. To reach the others, narrow the "
    "list with the filters or the search, or sort it by a column (click its header; click again to reverse "
    "the order)."
)

PK_SLOT = "__pk__"  # stands for a row's key in the change URL resolved once per list

# From this offset on, a page is found by its keys first (ReviewChangeList._page_rows).
DEEP_OFFSET = 1_000

# The list shows counts only; these columns can be large.
LIST_DEFERRED = [
    "raw",
    "populated",
    "red_flags_details",
    "failed_email_validations",
    "failed_phone_validations",
    "failed_biometric_validations",
    "failed_document_validations",
]


class MergedQueue:
    """The queue view as a Paginator reads a list: a count, and slices fetched page by page."""

    def __init__(self, legs, size, rows):
        self.legs, self.listed, self.rows = legs, size, rows
        self.depth = queue.ORDERED_DEPTH  # rows paged in waiting order

    def count(self):
        return self.listed.value

    def __getitem__(self, window):
        ids = queue.ordered_page(self.legs, window.start or 0, window.stop - (window.start or 0))
        found = {row.pk: row for row in self.rows.filter(pk__in=ids)}
        return [found[pk] for pk in ids if pk in found]


class PlainActionCheckbox:
    """Each row's action checkbox as Django's widget renders it, written out instead of rendered
    through the form template engine: that was a fifth of the list's rendering time at 50 rows."""

    def action_checkbox(self, obj):
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )


class CappedCountPaginator(Paginator):
    """Pages of a list counted up to `COUNT_CAP` rows, never past them.

    `listed` is what the page says ("1,234", "more than 10,000", "about 1,000,000" for the
    whole table); `count` what the pages cover: at most `COUNT_CAP` rows.
    """

    @cached_property
    def listed(self):
        rows = self.object_list
        if isinstance(rows, MergedQueue):
            return rows.listed
        if not rows.query.where:
            return selectors.total_count()
        return selectors.capped_count(rows)

    @cached_property
    def count(self):
        return min(self.listed.value, getattr(self.object_list, "depth", selectors.COUNT_CAP))

    def get_elided_page_range(self, number=1, *, on_each_side=3, on_ends=2):
        """A refused deep page still shows the pages there are, ending at the last one listed."""
        return super().get_elided_page_range(min(number, self.num_pages), on_each_side=on_each_side, on_ends=on_ends)


class ReviewChangeList(AllowListedChangeList):
    def __init__(self, request, model, list_display, list_display_links, list_filter, date_hierarchy, *args, **kw):
        # No date drill-down in a queue or decision view: its bounds are a MIN/MAX over the view's
        # rows, which no index serves (a sequential scan, 0.4-2.7 s at a million registrations),
        # and a queue is read by how long rows waited, not by when they were created.
        review_desk = (
            request.GET.get(QueueFilter.parameter_name) in queue.QUEUE_VIEWS
            or request.GET.get(DecisionFilter.parameter_name) in queue.DECISION_VIEWS
        )
        if review_desk:
            date_hierarchy = None
        selectors.without_jit(serial=review_desk)
        super().__init__(request, model, list_display, list_display_links, list_filter, date_hierarchy, *args, **kw)
        if not any(self.queue_views()) and self.sortable_by is not None:
            self.sortable_by = [name for name in self.sortable_by if name != "waiting"]

    @cached_property
    def _change_url(self):
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=(PK_SLOT,),
            current_app=self.model_admin.admin_site.name,
        )

    def url_for_result(self, result):
        """Django's link to a row's page, resolved once per list instead of once per row."""
        return self._change_url.replace(PK_SLOT, str(quote(getattr(result, self.pk_attname))))  # integer keys

    def get_ordering_field(self, field_name):
        """How long a row waited is known in queue and decision views only: elsewhere "Waiting" does not sort
        (it was a 500, and at a million rows it would sort the whole table on a computed column)."""
        if field_name == "waiting" and not any(self.queue_views()):
            return None
        return super().get_ordering_field(field_name)

    def get_queryset(self, request, exclude_parameters=None):
        if any(self.queue_views()):  # a queue view may sort and filter on how long rows waited
            self.root_queryset = queue.with_review(self.root_queryset)
        return super().get_queryset(request, exclude_parameters).defer(*LIST_DEFERRED)

    def queue_views(self):
        """(queue view, decision view) from the query string, unknown values as None."""
        view = self.params.get(QueueFilter.parameter_name)
        decision = self.params.get(DecisionFilter.parameter_name)
        view = view[-1] if isinstance(view, list) else view
        decision = decision[-1] if isinstance(decision, list) else decision
        return (
            view if view in queue.QUEUE_VIEWS else None,
            decision if decision in queue.DECISION_VIEWS else None,
        )

    def get_results(self, request):
        """Counts read the lean queryset (no review joins); the rows shown carry the review columns."""
        shown = queue.with_review(self.queryset)
        merged = self._merged_queue(request, shown)
        paginator = self.model_admin.get_paginator(request, merged or self.queryset, self.list_per_page)
        listed = paginator.listed
        paged_through = paginator.count
        deeper = not listed.exact or paged_through < listed.value  # the list goes on past its pages
        can_show_all = listed.exact and listed.value <= self.list_max_show_all
        multi_page = not listed.exact or listed.value > self.list_per_page
        self.deep_page_refused = False
        if (self.show_all and can_show_all) or not multi_page:
            result_list = shown._clone()
        elif deeper and self.page_num > paginator.num_pages:
            # Past the rows paged through: refused at once, with the ways that reach them.
            self.deep_page_refused = True
            messages.warning(request, DEEP_PAGE_MESSAGE.format(depth=paged_through))
            result_list = shown.none()
        else:
            try:
                page = paginator.page(self.page_num)
            except InvalidPage:
                raise IncorrectLookupParameters from None
            result_list = page.object_list if merged else self._page_rows(shown, page)
        self.listed = listed
        self.paging_note = PAGING_NOTE.format(depth=paged_through) if deeper else ""
        self.result_count = listed.value
        self.show_full_result_count = self.model_admin.show_full_result_count
        self.show_admin_actions = True
        self.full_result_count = None
        # Each row carries how this user may see its personal data (see registrations.privacy).
        rows = list(result_list)
        for row in rows:
            row.pii_lens = pii_lens(request, row.pk)
        self.result_list = rows
        self.can_show_all = can_show_all
        self.multi_page = multi_page
        self.paginator = paginator

    def _page_rows(self, shown, page):
        """A page's rows; a deep page finds its ids first, in an index-only walk of the list's order.

        OFFSET skips rows it still reads from the table: page 200 read 9,950 rows it did not show.
        Read as keys only, the skipped rows cost an index entry each, and 50 rows are fetched.
        """
        start, end = page.start_index() - 1, page.end_index()
        if start < DEEP_OFFSET:
            return shown[start:end]
        ids = list(self.queryset.values_list("pk", flat=True)[start:end])
        found = {row.pk: row for row in shown.order_by().filter(pk__in=ids)}
        return [found[pk] for pk in ids if pk in found]

    def _merged_queue(self, request, shown):
        """A queue view in waiting order, paged from its merged legs; None for every other list."""
        view, decision = self.queue_views()
        if ORDER_VAR in self.params or (view is None and decision is None):
            return None
        excluded = [QueueFilter.parameter_name] if view else [DecisionFilter.parameter_name]
        base = self.get_queryset(request, exclude_parameters=excluded)
        reached = queue.checkpoint()
        legs = queue.legs(base, view, decision, user=request.user, reached=reached)
        if legs is None:
            return None
        size = queue.size(base, view, decision, user=request.user, reached=reached, legs_=legs)
        return MergedQueue(legs, size, shown.order_by())
