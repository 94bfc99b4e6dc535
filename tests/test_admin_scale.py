"""The list at scale, shrunk to a small account: counts stop at a cap, pages stop where counting did, and
every pair of the status, red-flag and failed-validation filters still selects exactly the matching rows."""

import itertools
import re

import pytest
from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.db import connection
from django.urls import reverse

from registrations import queue, selectors
from registrations.admin import changelist
from registrations.admin.filters import FailedValidationsFilter, RedFlagsFilter
from registrations.models import AppRegistration, RegistrationStatus
from registrations.sync import run_sync

pytestmark = pytest.mark.django_db

LIST = reverse("admin:registrations_appregistration_changelist")
CAP, PER_PAGE = 20, 5


@pytest.fixture
def account(verifik):
    account = verifik(count=60)
    run_sync(details=False)
    return account


@pytest.fixture
def small_cap(monkeypatch):
    """The cap and page size of a million-row account, scaled down to 60 registrations."""
    monkeypatch.setattr(selectors, "COUNT_CAP", CAP)
    monkeypatch.setattr(admin.site._registry[AppRegistration], "list_per_page", PER_PAGE)


def shown_count(html):
    return re.search(r'<span class="vf-count">([^<]*) registrations?</span>', html).group(1)


def row_ids(response):
    return [r.pk for r in response.context["cl"].result_list]


def test_a_filtered_list_past_the_cap_says_more_than_and_pages_that_far(operator, account, small_cap):
    reviewer = operator  # the refresh action shows the "select all" link
    assert AppRegistration.objects.filter(red_flags__gte=0).count() > CAP
    response = reviewer.get(LIST + "?red_flags=none")
    html = response.content.decode()
    assert shown_count(html) == f"more than {CAP}"
    assert f"Pages cover the first {CAP}; filter, search or sort to reach the others." in html
    assert "Select all more than 20 registrations" in html  # not the cap passed off as a count
    cl = response.context["cl"]
    assert cl.paginator.num_pages == CAP // PER_PAGE
    last = reviewer.get(LIST + f"?red_flags=none&p={CAP // PER_PAGE}")
    assert len(row_ids(last)) == PER_PAGE and not last.context["cl"].deep_page_refused


def test_a_filtered_list_within_the_cap_is_counted_exactly(reviewer, account, small_cap):
    failed = AppRegistration.objects.filter(status="FAILED").count()
    assert 0 < failed <= CAP
    html = reviewer.get(LIST + "?status=FAILED").content.decode()
    assert shown_count(html) == str(failed)
    assert "Pages cover the first" not in html


def test_the_whole_table_shows_postgres_estimate_labelled_about(reviewer, account, small_cap):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE registrations_appregistration")
    total = AppRegistration.objects.count()
    assert shown_count(reviewer.get(LIST).content.decode()) == f"about {total}"


def test_a_page_past_the_counted_rows_answers_at_once_with_what_to_do(reviewer, account, small_cap):
    response = reviewer.get(LIST + f"?red_flags=none&p={CAP // PER_PAGE + 1}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Only the first 20 registrations of this list are paged through." in html
    assert "narrow the list with the filters or the search, or sort it by a column" in html
    assert row_ids(response) == [] and response.context["cl"].deep_page_refused
    assert shown_count(html) == f"more than {CAP}"
    far = reviewer.get(LIST + "?p=10000")  # the whole table, far past the cap
    assert far.status_code == 200 and row_ids(far) == [] and "Only the first 20" in far.content.decode()


def test_a_page_past_an_exact_count_is_still_an_invalid_page(reviewer, account, small_cap):
    statuses = AppRegistration.objects.values_list("status", flat=True)
    status = next(s for s in set(statuses) if PER_PAGE < list(statuses).count(s) <= CAP)
    response = reviewer.get(LIST + f"?status={status}&p=99")
    assert response.status_code == 302 and response.url.endswith("?e=1")


def column(client, name):
    return client.get(LIST).context["cl"].list_display.index(name)


@pytest.mark.parametrize("deep_offset", [1_000, PER_PAGE], ids=["offset", "keys first"])
def test_sorted_lists_page_to_the_cap_in_their_order(reviewer, account, small_cap, monkeypatch, deep_offset):
    monkeypatch.setattr(changelist, "DEEP_OFFSET", deep_offset)  # deep pages find their ids first
    reasons = column(reviewer, "reasons")  # sorts by red flags
    pages = [row_ids(reviewer.get(LIST + f"?o=-{reasons}&p={n}")) for n in range(1, CAP // PER_PAGE + 1)]
    seen = [pk for page in pages for pk in page]
    assert len(seen) == len(set(seen)) == CAP
    expected = list(AppRegistration.objects.order_by("-red_flags", "-created_at", "-id").values_list("pk", flat=True))
    assert seen == expected[:CAP]
    newest = [row_ids(reviewer.get(LIST + f"?status=ONGOING&p={n}")) for n in (1, 2, 3)]
    ongoing = AppRegistration.objects.filter(status="ONGOING").order_by("-created_at", "-id")
    assert [pk for page in newest for pk in page] == list(ongoing.values_list("pk", flat=True)[: 3 * PER_PAGE])


def test_the_queue_in_waiting_order_pages_only_its_longest_waiting(reviewer, account, small_cap, monkeypatch):
    monkeypatch.setattr(queue, "ORDERED_DEPTH", 10)
    in_queue = AppRegistration.objects.filter(queue.reasons_q() & queue.reviewable_q()).count()
    assert in_queue > 10, "the account should fill more than the ordered depth"
    first = reviewer.get(LIST + "?queue=needs_review")
    assert first.context["cl"].paginator.num_pages == 2
    assert "Pages cover the first 10;" in first.content.decode()
    beyond = reviewer.get(LIST + "?queue=needs_review&p=3")
    assert beyond.status_code == 200 and row_ids(beyond) == []
    assert "Only the first 10 registrations of this list are paged through." in beyond.content.decode()
    # Sorted by a column, the same queue pages as any list: up to the count's cap.
    sorted_pages = reviewer.get(LIST + f"?queue=needs_review&o=-{column(reviewer, 'reasons')}&p=3")
    assert len(row_ids(sorted_pages)) == PER_PAGE


def test_waiting_sorts_queue_views_only(reviewer, account):
    waiting = column(reviewer, "waiting")
    plain = reviewer.get(LIST + f"?o={waiting}")
    assert plain.status_code == 200  # ignored, as Django ignores a column that does not sort
    assert 'class="column-waiting"' in plain.content.decode()  # a header that does not sort
    in_queue = reviewer.get(LIST + f"?queue=needs_review&o={waiting}")
    assert 'class="sortable column-waiting sorted ascending"' in in_queue.content.decode()
    waited = [r.waiting_since for r in in_queue.context["cl"].result_list]
    assert waited and waited == sorted(waited)


STATUS = [("status", s.value) for s in RegistrationStatus]
RED_FLAGS = [("red_flags", v) for v in RedFlagsFilter.options]
FAILED = [("failed", v) for v in FailedValidationsFilter.options]
PAIRS = [
    (a, b)
    for group_a, group_b in ((STATUS, RED_FLAGS), (STATUS, FAILED), (RED_FLAGS, FAILED))
    for a, b in itertools.product(group_a, group_b)
]


def test_every_pair_of_status_red_flag_and_failed_filters_selects_exactly_its_rows(reviewer, account):
    options = {**{("red_flags", k): q for k, (_, q) in RedFlagsFilter.options.items()}}
    options |= {("failed", k): q for k, (_, q) in FailedValidationsFilter.options.items()}
    options |= {("status", s): None for _, s in STATUS}
    matched = 0
    for a, b in PAIRS:
        rows = AppRegistration.objects.all()
        for key in (a, b):
            rows = rows.filter(status=key[1]) if key[0] == "status" else rows.filter(options[key])
        want = set(rows.values_list("pk", flat=True))
        response = reviewer.get(LIST + f"?{a[0]}={a[1]}&{b[0]}={b[1]}&all=")
        assert response.status_code == 200
        assert set(row_ids(response)) == want, (a, b)
        counted = response.context["cl"].listed
        assert counted.exact and counted.value == len(want), (a, b)
        matched += bool(want)
    assert matched > len(PAIRS) // 2, "the data set should exercise most pairs"


def test_the_row_checkbox_is_the_one_djangos_widget_renders(account):
    obj = AppRegistration.objects.first()
    obj.name = '<b>"Zoë" & co</b>'
    model_admin = admin.site._registry[AppRegistration]
    assert model_admin.action_checkbox(obj) == ModelAdmin.action_checkbox(model_admin, obj)


def test_counts_say_what_they_are():
    assert (selectors.Count(7).label, selectors.Count(7).short) == ("7", "7")
    capped = selectors.Count(10_000, exact=False)
    assert (capped.label, capped.short) == ("more than 10,000", "10,000+")
    about = selectors.Count(1_000_022, exact=False, about=True)
    assert (about.label, about.short) == ("about 1,000,022", "≈ 1,000,022")


def test_the_dashboard_tiles_show_capped_queue_counts(reviewer, account, monkeypatch):
    in_queue = AppRegistration.objects.filter(queue.needs_review_q()).count()
    assert in_queue > 3
    monkeypatch.setattr(selectors, "COUNT_CAP", 3)
    html = reviewer.get("/admin/registrations/dashboard/").content.decode()
    assert '<span class="vf-tile-figure" title="more than 3">3+</span>' in html
    monkeypatch.setattr(selectors, "COUNT_CAP", 10_000)
    html = reviewer.get("/admin/registrations/dashboard/").content.decode()
    assert f'<span class="vf-tile-figure" title="{in_queue}">{in_queue}</span>' in html


def test_each_row_links_to_its_own_page(reviewer, account):
    response = reviewer.get(LIST + "?status=FAILED")
    html = response.content.decode()
    rows = response.context["cl"].result_list
    assert rows
    for obj in rows:
        url = reverse("admin:registrations_appregistration_change", args=[obj.pk])
        assert f'href="{url}?_changelist_filters=status%3DFAILED"' in html
