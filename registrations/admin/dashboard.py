"""The team dashboard and the "Needs review" entry, as admin pages of two proxy models.

The proxies only give the admin's navigation its entries and the dashboard its URL
(/admin/registrations/dashboard/); both read registrations, so both need the permission
to view registrations. Charts are SVG drawn here, styled by admin.css (light and dark),
each bar and legend entry a link to the list filtered to it.
"""

from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from .. import dashboard, selectors
from ..models import Dashboard, RegistrationStatus, ReviewOutcome, ReviewQueue
from . import rendering
from .base import ReadOnlyAdmin
from .review import OUTCOME_TONES

STATUS_ORDER = [s.value for s in RegistrationStatus]
WIDTH, HEIGHT, BAR_GAP = 560, 160, 2


def list_url(**params):
    return reverse("admin:registrations_appregistration_changelist") + ("?" + urlencode(params) if params else "")


class EntryAdmin(ReadOnlyAdmin):
    """An admin entry that is a page, not a table: visible to whoever may view registrations."""

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("registrations.view_appregistration")

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [path("", self.admin_site.admin_view(self.changelist_view), name="{}_{}_changelist".format(*info))]


@admin.register(ReviewQueue)
class ReviewQueueAdmin(EntryAdmin):
    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(list_url(queue="needs_review"))


@admin.register(Dashboard)
class DashboardAdmin(EntryAdmin):
    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        selectors.without_jit(serial=True)
        figures = dashboard.figures()
        outcomes = [(o.value, o.label, OUTCOME_TONES[o]) for o in ReviewOutcome]
        statuses = [(s, rendering.status_label(s), rendering.STATUS_TONES.get(s, "unknown")) for s in STATUS_ORDER]
        context = {
            **self.admin_site.each_context(request),
            "title": "Team dashboard",
            "opts": self.opts,
            "figures": figures,
            "tiles": [
                ("Needs review", figures.queue, list_url(queue="needs_review")),
                ("Overdue", figures.overdue, list_url(queue="overdue")),
                ("Awaiting second approval", figures.awaiting_second, list_url(queue="awaiting_second")),
            ],
            "median": rendering.duration(figures.median_to_decision) if figures.median_to_decision else None,
            "decisions_chart": stacked_bars(
                figures.days, figures.decisions, outcomes, lambda key, day: list_url(decision=key), "decisions"
            ),
            "intake_chart": stacked_bars(
                figures.days,
                figures.intake,
                statuses,
                lambda key, day: list_url(
                    status=key, created_at__year=day.year, created_at__month=day.month, created_at__day=day.day
                ),
                "registrations",
            ),
            "stopped_chart": horizontal_bars(figures.stopped),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/registrations/dashboard.html", context)


def stacked_bars(days, counts, series, link, noun):
    """Days on x, one stacked bar a day, a segment per series; each segment links to its list."""
    totals = [sum(counts.get((day, key), 0) for key, _, _ in series) for day in days]
    peak = max(totals, default=0) or 1
    slot = WIDTH / len(days)
    bars = []
    for i, day in enumerate(days):
        y = HEIGHT
        for key, label, tone in series:
            n = counts.get((day, key), 0)
            if not n:
                continue
            h = max(1.0, n / peak * (HEIGHT - 10))
            y -= h
            bars.append(
                format_html(
                    '<a href="{}"><rect class="vf-fill-{}" x="{}" y="{}" width="{}" height="{}">'
                    "<title>{}: {} {} {}</title></rect></a>",
                    link(key, day),
                    tone,
                    _n(i * slot + BAR_GAP / 2),
                    _n(y),
                    _n(slot - BAR_GAP),
                    _n(h),
                    day.isoformat(),
                    n,
                    label.lower(),
                    noun,
                )
            )
    ticks = format_html_join(
        "",
        '<text class="vf-axis" x="{}" y="{}" text-anchor="{}">{}</text>',
        (  # the first label starts at the axis rather than centred on it, so it is not cut off
            (
                _n(0 if i == 0 else i * slot + slot / 2),
                HEIGHT + 14,
                "start" if i == 0 else "middle",
                days[i].strftime("%d %b"),
            )
            for i in range(0, len(days), 7)
        ),
    )
    legend = format_html_join(
        "",
        '<a class="vf-legend-item" href="{}"><span class="vf-swatch vf-fill-{}"></span>{} ({})</a>',
        (
            (link(key, None) if noun == "decisions" else list_url(status=key), tone, label, _total(counts, key))
            for key, label, tone in series
        ),
    )
    svg = format_html(
        '<svg class="vf-chart" viewBox="0 0 {} {}" role="img" aria-label="{} per day">'
        '<text class="vf-axis" x="0" y="9">{} max</text>{}{}</svg>',
        WIDTH,
        HEIGHT + 18,
        noun,
        peak if any(totals) else 0,
        format_html_join("", "{}", ((b,) for b in bars)),
        ticks,
    )
    return format_html('{}<div class="vf-legend">{}</div>', svg, legend)


def _n(x):
    """SVG coordinates with one decimal."""
    return f"{x:.1f}"


def _total(counts, key):
    return sum(n for (_, k), n in counts.items() if k == key)


def horizontal_bars(rows, limit=12):
    """Current steps of registrations still started or ongoing, most first; each links to them."""
    rows = rows[:limit]
    if not rows:
        return rendering.muted("No registration is started or ongoing.")
    peak = max(n for _, n in rows) or 1
    line, label_width = 22, 170
    items = format_html_join(
        "",
        '<a href="{}"><text class="vf-axis vf-label" x="{}" y="{}" text-anchor="end">{}</text>'
        '<rect class="vf-fill-info" x="{}" y="{}" width="{}" height="14"><title>{}: {}</title></rect>'
        '<text class="vf-axis" x="{}" y="{}">{}</text></a>',
        (
            (
                list_url(status__in="STARTED,ONGOING", current_step=step or ""),
                label_width - 6,
                i * line + 12,
                (step or "(no step)")[:28],
                label_width,
                i * line + 1,
                _n(max(1.0, n / peak * (WIDTH - label_width - 60))),
                step or "(no step)",
                n,
                _n(label_width + max(1.0, n / peak * (WIDTH - label_width - 60)) + 4),
                i * line + 12,
                f"{n:,}",
            )
            for i, (step, n) in enumerate(rows)
        ),
    )
    return format_html(
        '<svg class="vf-chart" viewBox="0 0 {} {}" role="img" aria-label="Where registrations stop">{}</svg>',
        WIDTH,
        len(rows) * line,
        items,
    )
