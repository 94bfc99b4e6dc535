"""The lists' query strings attacked the way an analyst would recover a masked value.

Django's admin applies any query-string parameter as a lookup and sorts by any column with an
ordering; each is an oracle ("does the row with id N have an email starting with a?"). Every list
takes only the lookups its own filters, date hierarchy and search produce, plus id/pk; without
view_pii it sorts only by impersonal columns and searches whole values only. The list and
`export/` must answer a matching guess exactly as they answer a wrong one.
"""

import csv
import html
import io
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from registrations import audit, review
from registrations.admin.lookups import SEARCH_MAX_CHARS, SEARCH_MAX_WORDS, SEARCH_TOO_LONG, AllowListedLookups
from registrations.models import AppRegistration, AuditAction, AuditEvent
from registrations.sync import run_sync

from .support import staff

pytestmark = pytest.mark.django_db

LIST = reverse("admin:registrations_appregistration_changelist")
EXPORT = reverse("admin:registrations_appregistration_export")
AUDIT_LIST = reverse("admin:registrations_auditevent_changelist")
DASHBOARD = reverse("admin:registrations_dashboard_changelist")
DOCUMENT = "populated__documentValidation__OCRExtraction__documentNumber"

# Every personal value of a registration, as a query-string path, and how to read it from the row.
PERSONAL_PATHS = {
    "name": lambda r: r.name,
    "email": lambda r: r.email,
    "phone": lambda r: r.phone,
    "country_code": lambda r: r.country_code,
    "notes": lambda r: r.notes,
    "raw__name": lambda r: r.raw["name"],
    "raw__email": lambda r: r.raw["email"],
    DOCUMENT: lambda r: r.populated["documentValidation"]["OCRExtraction"]["documentNumber"],
    "populated__project__dataProtection__email": lambda r: r.populated["project"]["dataProtection"]["email"],
    "comments__text": lambda r: r.comments.get().text,
    "decisions__reason": lambda r: r.decisions.get().reason,
    "audit_events__details__reason": lambda r: "a caller asked",
}
WRONG = "\x7e\x7e\x7e"  # "~~~": no value here starts with it or contains it


def guesses(hidden):
    """(lookup, a guess that matches the hidden value, one that does not)."""
    head = hidden[:2]
    return [
        ("", hidden, WRONG),
        ("__exact", hidden, WRONG),
        ("__startswith", head, WRONG),
        ("__regex", "^" + re.escape(head), "^" + WRONG),
        ("__icontains", hidden[1:3], WRONG),
        ("__gte", head, WRONG),  # a range is a binary search
    ]


@pytest.fixture
def target(verifik):
    """A registration with every kind of personal value, a comment and a decision quoting the person."""
    verifik(count=12)
    run_sync(details=True)
    obj = (
        AppRegistration.objects.exclude(email=None)
        .exclude(phone=None)
        .exclude(notes=None)
        .filter(**{f"{DOCUMENT}__isnull": False}, populated__project__isnull=False)
        .first()
    )
    reviewer = staff("rita", "Registration reviewers")
    review.comment(obj, reviewer, f"Called {obj.name} at {obj.email}")
    review.decide(obj, reviewer, "rejected", f"{obj.name} sent someone else's document")
    audit.record(AuditAction.REVEAL, registration=obj, actor=reviewer, details={"reason": "a caller asked"})
    return obj


def login(user):
    client = Client()
    client.force_login(user)
    return client


def analyst():
    return login(staff("ann", "Registration analysts"))


def superuser():
    return login(User.objects.create_superuser("root", password="pw"))


def outcome(response):
    """What a response tells: its status, where it sends the user, the rows it lists or exports, in order."""
    if response.streaming:
        text = b"".join(response.streaming_content).decode()
        return 200, [row[0] for row in csv.reader(io.StringIO(text))][1:]
    rows = None
    if response.status_code == 200 and response.context and "cl" in response.context:
        rows = [row.pk for row in response.context["cl"].result_list]
    return response.status_code, response.get("Location"), rows


def refused(result):
    """400, or Django's redirect for an invalid lookup (the list with ?e=1)."""
    return result[0] == 400 or (result[0] == 302 and result[1].endswith("?e=1"))


def both(client, query):
    """The list's answer and export/'s answer to one query string."""
    return outcome(client.get(LIST + query)), outcome(client.post(EXPORT + query))


def test_no_answer_of_the_list_or_the_export_depends_on_a_hidden_value(target):
    """The analyst guesses every personal value of one registration with every lookup: right or wrong, same answer."""
    client = analyst()
    asked = 0
    for path, read in PERSONAL_PATHS.items():
        hidden = str(read(target))
        assert len(hidden) >= 3, path
        for lookup, right, wrong in guesses(hidden):
            for extra in ({}, {"id__exact": target.pk}) if lookup == "__startswith" else ({},):
                query = "?" + urlencode({f"{path}{lookup}": right, **extra})
                matching = both(client, query)
                missing = both(client, "?" + urlencode({f"{path}{lookup}": wrong, **extra}))
                assert matching == missing, query
                assert all(refused(answer) for answer in matching), (query, matching)
                asked += 2
    assert asked == len(PERSONAL_PATHS) * (6 + 1) * 2
    assert not AuditEvent.objects.filter(action="export").exists()


def test_a_superuser_is_refused_the_same_lookups(target):
    client = superuser()
    for path, read in PERSONAL_PATHS.items():
        hidden = str(read(target))
        for lookup, right, _ in guesses(hidden)[2:4]:  # startswith, regex
            query = "?" + urlencode({f"{path}{lookup}": right})
            assert all(refused(answer) for answer in both(client, query)), query
        assert refused(outcome(client.get(AUDIT_LIST + f"?registration__{path}__startswith=a")))
    details = outcome(client.get(AUDIT_LIST + "?details__reason__startswith=a"))
    assert refused(details)


def test_no_sort_of_the_analysts_list_or_export_depends_on_the_hidden_values(target):
    """Each column, both ways, before and after every person's name, email, phone and notes swap places."""
    client = analyst()
    columns = len(client.get(LIST).context["cl"].list_display)
    queries = [f"?o={sign}{index}" for index in range(columns) for sign in ("", "-")] + ["?o=5.2", "?o=x.5"]
    before = {query: both(client, query) for query in queries}
    rows = list(AppRegistration.objects.order_by("pk"))
    swapped = list(reversed(rows))
    for row, other in zip(rows, swapped, strict=True):
        AppRegistration.objects.filter(pk=row.pk).update(
            name=other.name, email=other.email, phone=other.phone, notes=other.notes, country_code=other.country_code
        )
    for query in queries:
        assert both(client, query) == before[query], query
    applicant = client.get(LIST).context["cl"].list_display.index("applicant")
    assert all(refused(answer) for answer in before[f"?o={applicant}"])
    assert all(refused(answer) for answer in before[f"?o=-{applicant}"])


def test_an_analysts_search_matches_whole_values_only(target):
    client = analyst()
    found = [row.pk for row in client.get(LIST, {"q": target.email.upper()}).context["cl"].result_list]
    assert found == [target.pk]
    for term in (target.email[:4], target.email[1:-1], target.name.split()[0], target.phone[:-1], "%", "_"):
        assert outcome(client.get(LIST, {"q": term})) == outcome(client.get(LIST, {"q": WRONG})), term
    assert "A whole email, phone number or name" in client.get(LIST).content.decode()


# --- one finding each --------------------------------------------------------------------------


def test_email_startswith_is_refused(target):
    answers = both(analyst(), f"?email__startswith={target.email[0]}")
    assert answers[0][0] == 400 and answers[1][0] == 400


def test_email_regex_is_refused(target):
    answers = both(analyst(), f"?email__regex=^{target.email[0]}")
    assert answers[0][0] == 400 and answers[1][0] == 400


def test_a_populated_json_path_is_refused(target):
    number = PERSONAL_PATHS[DOCUMENT](target)
    answers = both(analyst(), f"?{DOCUMENT}__startswith={number[0]}")
    assert answers[0][0] == 400 and answers[1][0] == 400


def test_id_exact_lists_that_registration_but_takes_no_other_lookup(target):
    client = analyst()
    assert outcome(client.get(LIST + f"?id__exact={target.pk}"))[2] == [target.pk]
    assert outcome(client.get(LIST + f"?pk__in={target.pk}"))[2] == [target.pk]
    answers = both(client, f"?id__exact={target.pk}&phone__endswith={target.phone[-1]}")
    assert answers[0][0] == 400 and answers[1][0] == 400


def test_sorting_by_name_is_refused_without_view_pii_and_offered_with_it(target):
    client = analyst()
    page = client.get(LIST)
    applicant = page.context["cl"].list_display.index("applicant")
    assert f"o={applicant}" not in page.content.decode()  # no sort link on the column
    answers = both(client, f"?o=-{applicant}")
    assert answers[0][0] == 400 and answers[1][0] == 400
    reviewer = login(User.objects.get(username="rita"))
    shown = outcome(reviewer.get(LIST + f"?o={applicant}"))
    assert shown[0] == 200 and shown[2] == list(
        AppRegistration.objects.order_by("name", "-created_at", "-id").values_list("pk", flat=True)
    )


def test_a_sort_outside_sortable_by_does_not_sort(target):
    """Django shows such a column unsortable yet sorts by it (the audit list by IP, over millions of events)."""
    client = superuser()
    change = reverse("admin:registrations_appregistration_change", args=[target.pk])
    client.get(change, REMOTE_ADDR="10.0.0.1")
    client.get(change, REMOTE_ADDR="10.0.0.9")  # newest first, so by address it would come second
    listed = outcome(client.get(AUDIT_LIST))
    ip = client.get(AUDIT_LIST).context["cl"].list_display.index("ip")
    assert [e.ip for e in AuditEvent.objects.filter(pk__in=listed[2][:2]).order_by("-at")] == ["10.0.0.9", "10.0.0.1"]
    assert outcome(client.get(AUDIT_LIST + f"?o={ip}")) == listed


def test_facets_are_refused_on_every_list(target):
    client = superuser()
    for url in (LIST, AUDIT_LIST, reverse("admin:registrations_syncrun_changelist")):
        assert client.get(url + "?_facets=1").status_code == 400, url
        assert client.get(url).status_code == 200
    assert client.post(EXPORT + "?_facets=1").status_code == 400
    assert "_facets" not in client.get(LIST).content.decode()  # no "Show counts" link


def test_a_long_search_is_refused_with_a_message(target):
    client = analyst()
    for term in ("x" * (SEARCH_MAX_CHARS + 1), " ".join(["word"] * (SEARCH_MAX_WORDS + 1))):
        response = client.get(LIST, {"q": term})
        assert response.status_code == 302 and response["Location"] == LIST + "?e=1"
        assert SEARCH_TOO_LONG in client.get(response["Location"]).content.decode()
        assert client.post(EXPORT + "?q=" + term.replace(" ", "+")).status_code == 302
    assert client.get(LIST, {"q": " ".join(["word"] * SEARCH_MAX_WORDS)}).status_code == 200
    assert client.get(LIST, {"q": "x" * SEARCH_MAX_CHARS}).status_code == 200
    assert not AuditEvent.objects.filter(action="export").exists()


def test_every_list_admin_of_the_app_takes_the_allow_list():
    lists = [
        model_admin
        for model, model_admin in django_admin.site._registry.items()
        if model._meta.app_label == "registrations" and not model._meta.proxy
    ]
    assert len(lists) >= 4
    for model_admin in lists:
        assert isinstance(model_admin, AllowListedLookups), type(model_admin).__name__


# --- the product's own links keep working -------------------------------------------------------


def links_to(page, url):
    """Every href on `page` that opens the list at `url` (absolute, or the page's own "?..." links)."""
    found = set()
    for href in re.findall(r'href="([^"]*)"', page):
        href = html.unescape(href)
        if href.startswith("?"):
            found.add(url + href)
        elif href.startswith(url + "?"):
            found.add(href)
    return found


@pytest.mark.parametrize("group", ["Registration analysts", "Registration reviewers"])
def test_every_link_the_dashboard_and_the_lists_build_opens(target, group):
    """The dashboard's tiles and charts (queue, decision, status + day, status__in + current_step), the
    navigation, and each list's filter, date drill-down and sort links answer 200."""
    recent = timezone.now() - timedelta(days=2)
    AppRegistration.objects.filter(pk__in=AppRegistration.objects.values("pk")[:6]).update(created_at=recent)
    client = login(staff("user", group))
    dashboard = client.get(DASHBOARD).content.decode()
    from_dashboard = links_to(dashboard, LIST)
    assert any("current_step=" in link and "status__in=" in link for link in from_dashboard)
    assert any("created_at__day=" in link for link in from_dashboard)
    assert any("decision=" in link for link in from_dashboard)
    on_lists = {}  # one link of each shape (the parameters it sets): a filter's other choices build the same
    for start in (LIST, LIST + "?queue=needs_review", LIST + f"?created_at__year={recent.year}"):
        for link in links_to(client.get(start).content.decode(), LIST):
            on_lists.setdefault(tuple(sorted(parse_qs(urlsplit(link).query, keep_blank_values=True))), link)
    assert any("o=" in link for link in on_lists.values()) and any("red_flags=" in link for link in on_lists.values())
    for link in sorted(from_dashboard | set(on_lists.values())):
        response = client.get(link)
        assert response.status_code == 200, (link, response.status_code)
