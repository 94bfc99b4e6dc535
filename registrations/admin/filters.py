"""List filters that stay fast at a million rows: every choice maps to an indexed condition,
and the choices themselves never come from a `SELECT DISTINCT` over the table."""

from django.contrib import admin
from django.db.models import Q

from .. import queue, selectors
from ..mapping import FAILED_VALIDATION_KINDS
from ..models import RegistrationStatus, failed_q, red_flags_q
from . import rendering
from .per_request import present_values, project_names, sync_health


class ChoicesFilter(admin.SimpleListFilter):
    """A filter defined by a mapping of choice -> (label, Q)."""

    options = {}

    def lookups(self, request, model_admin):
        return [(value, label) for value, (label, _) in self.options.items()]

    def queryset(self, request, queryset):
        option = self.options.get(self.value())
        return queryset.filter(option[1]) if option else queryset


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        known = [(s.value, s.label) for s in RegistrationStatus]
        present = present_values(request, "status")
        unknown = [(s, f"{s} (not documented)") for s in present if s not in RegistrationStatus.values]
        return known + unknown

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class RedFlagsFilter(ChoicesFilter):
    title = "red flags"
    parameter_name = "red_flags"
    options = {
        "none": ("None", Q(red_flags=0) | Q(red_flags__isnull=True)),
        "1": ("1 or more", red_flags_q(1)),
        "3": ("3 or more", red_flags_q(3)),
    }


class FailedValidationsFilter(ChoicesFilter):
    title = "failed validations"
    parameter_name = "failed"
    options = {
        "any": ("Any kind", failed_q()),
        **{kind: (kind.title(), failed_q(kind)) for kind in FAILED_VALIDATION_KINDS},
    }


class DistinctValuesFilter(admin.SimpleListFilter):
    """Choices are the values present in an indexed column, found by a loose index scan."""

    field_name = None

    def lookups(self, request, model_admin):
        return [(value, value) for value in present_values(request, self.field_name)]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field_name: self.value()}) if self.value() else queryset


class LanguageFilter(DistinctValuesFilter):
    title = "language"
    parameter_name = "language"
    field_name = "language"


class ProjectFilter(DistinctValuesFilter):
    """Projects by name (from the populated project), the id as a tooltip."""

    title = "project"
    parameter_name = "project"
    field_name = "project_id"

    def lookups(self, request, model_admin):
        names = project_names(request)
        return [
            (value, rendering.project_label(value, names.get(value))) for value in present_values(request, "project_id")
        ]


class QueueFilter(admin.SimpleListFilter):
    """The review queue and its views: overdue, mine, unassigned, awaiting a second approval."""

    title = "review queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return list(queue.QUEUE_VIEWS.items())

    def queryset(self, request, queryset):
        if self.value() not in queue.QUEUE_VIEWS:
            return queryset
        return queue.with_review(queryset).filter(queue.queue_q(self.value(), user=request.user))


class DecisionFilter(admin.SimpleListFilter):
    """The latest decision's outcome, none yet, or a change at Verifik since it."""

    title = "decision"
    parameter_name = "decision"

    def lookups(self, request, model_admin):
        return list(queue.DECISION_VIEWS.items())

    def queryset(self, request, queryset):
        if self.value() not in queue.DECISION_VIEWS:
            return queryset
        if self.value() == "changed_since":  # listed oldest waiting first
            queryset = queue.with_review(queryset)
        return queryset.filter(queue.decision_q(self.value()))


class RemovedUpstreamFilter(ChoicesFilter):
    title = "removed upstream"
    parameter_name = "removed"
    options = {
        "yes": ("Removed upstream", Q(removed_upstream_at__isnull=False)),
        "no": ("Still at Verifik", Q(removed_upstream_at__isnull=True)),
    }


class StaleFilter(admin.SimpleListFilter):
    title = "freshness"
    parameter_name = "stale"

    def lookups(self, request, model_admin):
        return [("yes", "Not synced for 24 h")]

    def queryset(self, request, queryset):
        if self.value() != "yes":
            return queryset
        return queryset.filter(selectors.stale_q(sync_health(request).covered_at))
