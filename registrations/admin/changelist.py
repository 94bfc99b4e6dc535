"""The registrations list: narrow rows (the JSON payloads are never read) and queue views in waiting order.

A queue view in its default order (oldest waiting first) is not sorted whole: its
page comes from `queue.ordered_page`, which merges the index-ordered legs of the
queue; its size from `queue.size`. Any other order, and "show all", use the
ordinary query, which applies the same rules.
"""

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.paginator import InvalidPage, Paginator

from .. import queue
from .filters import DecisionFilter, QueueFilter
from .per_request import pii_lens

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
        self.legs, self.size, self.rows = legs, size, rows

    def count(self):
        return self.size.count

    def __getitem__(self, window):
        ids = queue.ordered_page(self.legs, window.start or 0, window.stop - (window.start or 0))
        found = {row.pk: row for row in self.rows.filter(pk__in=ids)}
        return [found[pk] for pk in ids if pk in found]


class ReviewChangeList(ChangeList):
    def __init__(self, request, model, list_display, list_display_links, list_filter, date_hierarchy, *args, **kw):
        # No date drill-down in a queue or decision view: its bounds are a MIN/MAX over the view's
        # rows, which no index serves (a sequential scan, 0.4-2.7 s at a million registrations),
        # and a queue is read by how long rows waited, not by when they were created.
        if (
            request.GET.get(QueueFilter.parameter_name) in queue.QUEUE_VIEWS
            or request.GET.get(DecisionFilter.parameter_name) in queue.DECISION_VIEWS
        ):
            date_hierarchy = None
        super().__init__(request, model, list_display, list_display_links, list_filter, date_hierarchy, *args, **kw)

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
        """The rows shown carry the review columns; counts and the date drill-down read the lean queryset."""
        lean = self.queryset
        self.queryset = queue.with_review(lean)
        try:
            self._get_results(request)
        finally:
            self.queryset = lean
        # Each row carries how this user may see its personal data (see registrations.privacy).
        rows = list(self.result_list)
        for row in rows:
            row.pii_lens = pii_lens(request, row.pk)
        self.result_list = rows

    def _get_results(self, request):
        view, decision = self.queue_views()
        if ORDER_VAR in self.params or (view is None and decision is None):
            return super().get_results(request)
        excluded = [QueueFilter.parameter_name] if view else [DecisionFilter.parameter_name]
        base = self.get_queryset(request, exclude_parameters=excluded)
        reached = queue.checkpoint()
        legs = queue.legs(base, view, decision if view else decision, user=request.user, reached=reached)
        if legs is None:
            return super().get_results(request)
        size = queue.size(base, view, decision, user=request.user, reached=reached)
        paginator = Paginator(MergedQueue(legs, size, self.queryset.order_by()), self.list_per_page)
        can_show_all = size.count <= self.list_max_show_all
        multi_page = size.count > self.list_per_page
        if self.show_all and can_show_all:
            result_list = self.queryset._clone()
        else:
            try:
                result_list = paginator.page(self.page_num).object_list
            except InvalidPage:
                raise IncorrectLookupParameters from None
        self.result_count = size.count
        self.result_count_estimated = size.estimated
        self.show_full_result_count = self.model_admin.show_full_result_count
        self.show_admin_actions = True
        self.full_result_count = None
        self.result_list = result_list
        self.can_show_all = can_show_all
        self.multi_page = multi_page
        self.paginator = paginator
