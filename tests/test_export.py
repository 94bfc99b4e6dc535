"""CSV export: the list's Export button (every row the filters and search match) and the action (selected
rows); streamed, masked per the user, permission-checked, audited once with the filter and the count."""

import csv
import html
import io
import re

import pytest
from django.test import Client
from django.urls import reverse

from registrations import export
from registrations.models import AppRegistration, AuditEvent
from registrations.sync import run_sync

from .support import staff

pytestmark = pytest.mark.django_db

LIST = reverse("admin:registrations_appregistration_changelist")
EXPORT = reverse("admin:registrations_appregistration_export")


@pytest.fixture
def account(verifik):
    account = verifik(count=60)
    run_sync(details=True)
    return account


def login(username, group):
    client = Client()
    client.force_login(staff(username, group))
    return client


def download(response):
    assert response.status_code == 200, response.content[:300] if not response.streaming else response.status_code
    assert response.streaming is True
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="registrations-')
    text = b"".join(response.streaming_content).decode()
    return text, list(csv.reader(io.StringIO(text)))


def test_the_export_button_exports_every_row_the_filters_and_search_match(account):
    client = login("rita", "Registration reviewers")
    client.get(LIST)  # a page of 50: the export is not limited to it
    everything, rows = download(client.post(EXPORT))
    assert rows[0] == export.HEADER
    assert {row[0] for row in rows[1:]} == set(AppRegistration.objects.values_list("verifik_id", flat=True))
    assert len(rows) - 1 == 60

    query = "?status=NEEDS_MANUAL_VERIFICATION&q=example"
    _, rows = download(client.post(EXPORT + query))
    expected = AppRegistration.objects.filter(status="NEEDS_MANUAL_VERIFICATION", email__contains="example")
    assert {row[0] for row in rows[1:]} == set(expected.values_list("verifik_id", flat=True)) != set()
    by_id = {row[0]: dict(zip(export.HEADER, row, strict=True)) for row in rows[1:]}
    sample = expected.first()
    assert by_id[sample.verifik_id]["email"] == sample.email and by_id[sample.verifik_id]["phone"] == sample.phone
    assert by_id[sample.verifik_id]["status"] == "NEEDS_MANUAL_VERIFICATION"

    # One event per export, with the filter and the row count.
    events = list(AuditEvent.objects.filter(action="export").order_by("at", "id"))
    assert len(events) == 2
    assert events[0].details["rows"] == 60 and events[0].actor.username == "rita"
    assert events[1].details["rows"] == expected.count()
    assert events[1].details["filter"] == "status=NEEDS_MANUAL_VERIFICATION&q=e***"  # the search term masked


def test_the_action_exports_the_selected_rows(account):
    client = login("rita", "Registration reviewers")
    chosen = list(AppRegistration.objects.order_by("pk").values_list("pk", "verifik_id")[:3])
    response = client.post(LIST, {"action": "export_csv", "_selected_action": [pk for pk, _ in chosen]})
    _, rows = download(response)
    assert rows[0] == export.HEADER and sorted(row[0] for row in rows[1:]) == sorted(v for _, v in chosen)
    event = AuditEvent.objects.get(action="export")
    assert event.details["rows"] == 3 and event.details["source"] == "action"


def test_an_analysts_export_is_masked(account):
    client = login("ann", "Registration analysts")
    text, rows = download(client.post(EXPORT))
    for record in account.records:
        assert record["email"] not in text and record["phone"] not in text
    assert len(rows) == 61
    sample = AppRegistration.objects.exclude(email=None).exclude(name__contains="<").first()
    row = next(dict(zip(export.HEADER, r, strict=True)) for r in rows if r[0] == sample.verifik_id)
    local, domain = sample.email.split("@")
    assert row["email"] == f"{local[0]}***@{domain[0]}***.{domain.rsplit('.', 1)[1]}"
    assert row["phone"].endswith(sample.phone[-4:]) and row["phone"].startswith("*")
    assert row["name"] == " ".join(word[0] + "***" for word in sample.name.split())
    assert AuditEvent.objects.get(action="export").details["rows"] == 60


def test_an_analysts_export_shows_a_revealed_registration(account):
    client = login("ann", "Registration analysts")
    obj = AppRegistration.objects.exclude(email=None).first()
    client.post(reverse("admin:registrations_appregistration_reveal", args=[obj.pk]), {"reason": "a complaint"})
    text, _ = download(client.post(EXPORT))
    others = AppRegistration.objects.exclude(pk=obj.pk).exclude(email=None).values_list("email", flat=True)
    assert obj.email in text and not any(email in text for email in others)


def test_export_needs_the_permission(account):
    client = login("otto", "Registration operators")  # no export_appregistration
    assert client.post(EXPORT).status_code == 403
    page = client.get(LIST).content.decode()
    assert EXPORT not in page and 'value="export_csv"' not in page
    obj = AppRegistration.objects.first()
    refused = client.post(LIST, {"action": "export_csv", "_selected_action": [obj.pk]})
    assert refused.status_code == 302 and not refused.streaming  # "No action selected": the list again
    assert not AuditEvent.objects.filter(action="export").exists()

    reviewer = login("rita", "Registration reviewers")
    page = reviewer.get(LIST + "?status=COMPLETED").content.decode()
    assert f'<form method="post" action="{EXPORT}?status=COMPLETED">' in page and 'value="export_csv"' in page


def test_the_export_button_is_a_form_that_posts_the_lists_query_string(account):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff("rita", "Registration reviewers"))
    page = client.get(LIST + "?status=FAILED&o=-2")
    form = re.search(
        rf'<form method="post" action="{re.escape(EXPORT)}\?([^"]*)">\s*<input type="hidden" '
        r'name="csrfmiddlewaretoken" value="([^"]+)">',
        page.content.decode(),
    )
    assert form, "the Export button is a form posting to export/ with its CSRF token"
    query, token = html.unescape(form[1]), form[2]
    assert query == "o=-2&status=FAILED"
    _, rows = download(client.post(f"{EXPORT}?{query}", {"csrfmiddlewaretoken": token}))
    assert {r[0] for r in rows[1:]} == set(
        AppRegistration.objects.filter(status="FAILED").values_list("verifik_id", flat=True)
    )
    assert AuditEvent.objects.get(action="export").details["filter"] == query


def test_export_refuses_a_link_a_cross_site_form_and_other_methods(account):
    """A link (GET) or a form on another site (POST without the token) cannot download the CSV in a user's name."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff("rita", "Registration reviewers"))
    assert client.get(EXPORT + "?status=FAILED").status_code == 405
    assert client.head(EXPORT).status_code == 405
    assert client.post(EXPORT + "?status=FAILED").status_code == 403  # no CSRF token
    assert not AuditEvent.objects.filter(action="export").exists()
    same_site = login("ann", "Registration analysts")
    assert same_site.put(EXPORT).status_code == 405 and same_site.delete(EXPORT).status_code == 405


def test_export_refuses_what_the_list_refuses(account):
    """Lookups the list's filters do not make answer 400; values the filters cannot read go back to the list."""
    client = login("rita", "Registration reviewers")
    assert client.post(EXPORT + "?nonsense__field=1").status_code == 400
    assert client.post(EXPORT + "?_facets=1").status_code == 400
    invalid = client.post(EXPORT + "?created_at__year=abc")
    assert invalid.status_code == 302 and invalid["Location"] == LIST + "?e=1" and not invalid.streaming
    long_search = client.post(EXPORT + "?q=" + "+".join(["word"] * 11))
    assert long_search.status_code == 302 and not long_search.streaming
    assert not AuditEvent.objects.filter(action="export").exists()


def test_cells_that_a_spreadsheet_would_run_get_an_apostrophe(account):
    target = account.records[-1]["_id"]
    account.update(target, name='=HYPERLINK("http://x","y")', notes="@SUM(1+1)", currentStep="-2+3")
    run_sync(details=True)
    client = login("rita", "Registration reviewers")
    _, rows = download(client.post(EXPORT + "?q=" + target))
    row = dict(zip(export.HEADER, rows[1], strict=True))
    assert row["name"] == '\'=HYPERLINK("http://x","y")' and row["notes"] == "'@SUM(1+1)"
    assert row["current_step"] == "'-2+3" and row["country_code"].startswith("'+")
    assert export.cell(None) == "" and export.cell(3) == "3" and export.cell("plain") == "plain"
    assert export.cell("\tx") == "'\tx"


@pytest.mark.parametrize("query", ["?queue=needs_review", "?decision=none&o=-4", "?red_flags=1&language=es"])
def test_the_export_holds_what_the_list_shows(account, query):
    """Queue and decision views too: the same rows as the list's "show all", in the same order."""
    client = login("rita", "Registration reviewers")
    shown = client.get(LIST + query + "&all=")
    assert shown.status_code == 200
    listed = [row.verifik_id for row in shown.context["cl"].result_list]
    _, rows = download(client.post(EXPORT + query))
    assert listed and [row[0] for row in rows[1:]] == listed
