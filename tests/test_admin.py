"""The review back office through Django's test client: lists, filters, search, detail, refresh, permissions."""

import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from registrations.models import AppRegistration, SyncRun
from registrations.sync import run_sync, store_detail

pytestmark = pytest.mark.django_db

LIST = reverse("admin:registrations_appregistration_changelist")
SYNC = reverse("admin:registrations_appregistration_sync")
RUNS = reverse("admin:registrations_syncrun_changelist")


def detail_url(obj):
    return reverse("admin:registrations_appregistration_change", args=[obj.pk])


def refresh_url(obj):
    return reverse("admin:registrations_appregistration_refresh", args=[obj.pk])


@pytest.fixture
def account(verifik):
    account = verifik(count=60)
    run_sync(details=True)
    return account


def listed(response):
    return list(response.context["cl"].result_list)


def listed_ids(client, query=""):
    response = client.get(LIST + query + ("&" if "?" in query else "?") + "all=")
    assert response.status_code == 200, response.content[:500]
    return {r.verifik_id for r in listed(response)}


def ids(**filters):
    return set(AppRegistration.objects.filter(**filters).values_list("verifik_id", flat=True))


def test_migrations_create_the_reviewer_and_operator_groups():
    perms = {g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    assert perms["Registration reviewers"] == {
        "view_appregistration",
        "view_syncrun",
        "view_webhookdelivery",
        "decide_appregistration",
        "view_pii",
        "export_appregistration",
    }
    assert perms["Registration operators"] == {
        "view_appregistration",
        "view_syncrun",
        "view_webhookdelivery",
        "refresh_appregistration",
    }
    assert perms["Registration analysts"] == {
        "view_appregistration",
        "view_syncrun",
        "export_appregistration",
        "reveal_pii",
    }
    assert Permission.objects.get(codename="view_pii").name == "Can see personal data unmasked"
    assert Permission.objects.get(codename="refresh_appregistration").name == "Can refresh from Verifik"
    assert Permission.objects.get(codename="decide_appregistration").name == (
        "Can record review decisions, assign and comment"
    )


def test_every_admin_page_needs_a_staff_login(client, account):
    obj = AppRegistration.objects.first()
    for url in (LIST, detail_url(obj), RUNS):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.post(refresh_url(obj)).status_code == 302
    assert not SyncRun.objects.filter(kind=SyncRun.Kind.SINGLE).exists()


def test_the_list_shows_the_columns_a_reviewer_reads(reviewer, account):
    response = reviewer.get(LIST)
    html = response.content.decode()
    for header in (
        "Status",
        "Why it&#x27;s here",
        "Waiting",
        "Assignee",
        "Decision",
        "Name",
        "Contact",
        "Project",
        "Updated at",
        "Last synced",
    ):
        assert f">{header}<" in html or f">{header}</a>" in html, header
    record = account.records[-1]
    assert record["email"] in html and f"{record['countryCode']} {record['phone']}" in html
    row = AppRegistration.objects.get(verifik_id=record["_id"])
    assert row.current_step in html, "the current step shows under the status"
    flagged = AppRegistration.objects.filter(red_flags__gte=2).first()
    assert f"{flagged.red_flags} red flags" in html or flagged.created_at < listed(response)[-1].created_at
    assert "Last successful full sync finished" in html


def test_deleted_and_removed_upstream_registrations_stay_visible_and_marked(reviewer, account):
    gone = AppRegistration.objects.filter(deleted=False).first()
    gone.removed_upstream_at = gone.last_synced_at
    gone.save()
    assert AppRegistration.objects.filter(deleted=True).exists()
    html = reviewer.get(LIST + "?all=").content.decode()
    assert "Deleted at Verifik" in html and "Removed upstream" in html


@pytest.mark.parametrize(
    "query, expected",
    [
        ("?status=FAILED", lambda: ids(status="FAILED")),
        ("?status=NEEDS_MANUAL_VERIFICATION", lambda: ids(status="NEEDS_MANUAL_VERIFICATION")),
        ("?red_flags=none", lambda: ids(red_flags=0)),
        ("?red_flags=1", lambda: ids(red_flags__gte=1)),
        ("?red_flags=3", lambda: ids(red_flags__gte=3)),
        ("?failed=any", lambda: ids(failed_validations_count__gt=0)),
        ("?failed=email", lambda: ids(failed_email_count__gt=0)),
        ("?failed=phone", lambda: ids(failed_phone_count__gt=0)),
        ("?failed=biometric", lambda: ids(failed_biometric_count__gt=0)),
        ("?failed=document", lambda: ids(failed_document_count__gt=0)),
        ("?language=es", lambda: ids(language="es")),
        ("?removed=no", lambda: ids(removed_upstream_at__isnull=True)),
        ("?status=FAILED&red_flags=1", lambda: ids(status="FAILED", red_flags__gte=1)),
        ("?created_at__year=2025&created_at__month=1", lambda: ids(created_at__year=2025, created_at__month=1)),
    ],
)
def test_filters_select_exactly_the_matching_registrations(reviewer, account, query, expected):
    want = expected()
    assert want, f"the data set should exercise {query}"
    assert listed_ids(reviewer, query) == want


def test_filters_by_project_and_removed_upstream(reviewer, account):
    project = AppRegistration.objects.first().project_id
    assert listed_ids(reviewer, f"?project={project}") == ids(project_id=project)
    AppRegistration.objects.filter(pk=AppRegistration.objects.first().pk).update(
        removed_upstream_at="2025-01-01T00:00Z"
    )
    assert listed_ids(reviewer, "?removed=yes") == ids(removed_upstream_at__isnull=False)


def test_the_stale_filter_finds_rows_nobody_confirmed_for_a_day(reviewer, account):
    assert listed_ids(reviewer, "?stale=yes") == set()
    old = AppRegistration.objects.first()
    AppRegistration.objects.filter(pk=old.pk).update(
        last_synced_at="2024-01-01T00:00Z", removed_upstream_at="2024-01-01T00:00Z"
    )
    assert listed_ids(reviewer, "?stale=yes") == {old.verifik_id}
    SyncRun.objects.update(finished_at="2024-01-02T00:00Z")  # no full sync confirmed anything for days
    AppRegistration.objects.update(last_synced_at="2024-01-01T00:00Z")
    assert listed_ids(reviewer, "?stale=yes") == ids()
    assert "stale" in reviewer.get(LIST).content.decode()


def test_an_unknown_status_gets_its_own_filter_choice(reviewer, account):
    record = {**account.records[0], "status": "ON_HOLD", "updatedAt": "2099-01-01T00:00:00Z"}
    store_detail(record)
    html = reviewer.get(LIST).content.decode()
    assert "ON_HOLD (not documented)" in html
    assert listed_ids(reviewer, "?status=ON_HOLD") == {record["_id"]}


def test_search_by_email_fragment_name_phone_and_notes(reviewer, account):
    record = account.records[10]
    assert record["_id"] in listed_ids(reviewer, f"?q={record['email'].split('@')[0]}")
    assert record["_id"] in listed_ids(reviewer, f"?q={record['phone']}")
    assert listed_ids(reviewer, "?q=Reviewer+checked") == ids(notes__icontains="Reviewer checked")


def test_an_exact_id_finds_that_registration_directly(reviewer, account):
    record = account.records[20]
    assert listed_ids(reviewer, f"?q={record['_id'].upper()}") == {record["_id"]}


def test_the_list_is_newest_created_first_by_default(reviewer, account):
    rows = listed(reviewer.get(LIST + "?all="))
    assert [r.created_at for r in rows] == sorted((r.created_at for r in rows), reverse=True)


@pytest.mark.parametrize(
    "column, key",
    [
        # Column 0 is the action checkbox: reviewers have an action (Export to CSV).
        (9, lambda r: r.updated_at),
        (2, lambda r: r.red_flags),  # "Why it's here" sorts by red flags
        (10, lambda r: r.last_synced_at),
    ],
)
def test_sorting_by_updated_red_flags_and_last_synced(reviewer, account, column, key):
    rows = listed(reviewer.get(LIST + f"?o=-{column}&all="))
    values = [key(r) for r in rows]
    assert values == sorted(values, reverse=True)
    rows = listed(reviewer.get(LIST + f"?o={column}&all="))
    assert [key(r) for r in rows] == sorted(values)


def test_the_list_page_runs_the_same_queries_for_10_or_50_rows(reviewer, verifik):
    verifik(count=10)
    run_sync(details=False)
    reviewer.get(LIST)
    with CaptureQueriesContext(connection) as small:
        reviewer.get(LIST)
    verifik(count=50, seed=99)
    run_sync(details=False)
    with CaptureQueriesContext(connection) as large:
        response = reviewer.get(LIST)
    assert len(listed(response)) == 50
    # 12, the idle-session save of every request (SESSION_SAVE_EVERY_REQUEST: an UPDATE, inside
    # a savepoint in a test's transaction), the session's second-factor device (OTPMiddleware) and the
    # page's one `list` audit event (a reviewer sees people: the chain's reserve, then the insert).
    assert len(large.captured_queries) == len(small.captured_queries) <= 12 + 3 + 1 + 2


def test_the_detail_page_shows_every_section(reviewer, account):
    record = next(
        r
        for r in account.records
        if r["redFlags"]
        and any(isinstance(i, dict) for i in r["failedDocumentValidations"] + r["failedEmailValidations"])
    )
    obj = AppRegistration.objects.get(verifik_id=record["_id"])
    AppRegistration.objects.filter(pk=obj.pk).update(notes="first line\nsecond line")
    html = reviewer.get(detail_url(obj)).content.decode()
    for section in (
        "Applicant",
        "Progress",
        "Risk",
        "Failed validations",
        "Linked records",
        "Notes",
        "Sync",
        "Raw payload",
    ):
        assert f">{section}<" in html, section
    assert "ipCountryMismatch" in html and "detected" in html, "nested red flag details are rendered"
    reason = next(
        i for i in record["failedDocumentValidations"] + record["failedEmailValidations"] if isinstance(i, dict)
    )["reason"]
    assert reason in html
    assert "first line\nsecond line" in html and "vf-notes" in html
    assert obj.populated["project"]["name"] in html and "dataProtection" in html
    assert "<details" in html and "vf-json" in html


def test_the_detail_page_lists_this_registrations_refreshes(operator, account):
    obj = AppRegistration.objects.first()
    operator.post(refresh_url(obj))
    html = operator.get(detail_url(obj)).content.decode()
    run = SyncRun.objects.get(verifik_id=obj.verifik_id)
    assert f"run #{run.pk}" in html and "Recent refreshes" in html


def test_everything_from_verifik_is_escaped(reviewer, account):
    obj = AppRegistration.objects.filter(name="<script>alert(1)</script>").first()
    assert obj is not None
    AppRegistration.objects.filter(pk=obj.pk).update(
        notes='<img src=x onerror="alert(2)">', red_flags_details={"<b>k</b>": "<i>v</i>"}
    )
    for html in (reviewer.get(LIST + "?all=").content.decode(), reviewer.get(detail_url(obj)).content.decode()):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<img src=x" not in html and "<b>k</b>" not in html


def test_the_mirror_is_read_only(client, account):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    obj = AppRegistration.objects.first()
    assert client.get(reverse("admin:registrations_appregistration_add")).status_code == 403
    assert client.get(reverse("admin:registrations_appregistration_delete", args=[obj.pk])).status_code == 403
    before = obj.name
    response = client.post(detail_url(obj), {"name": "Changed"})
    assert response.status_code == 403
    obj.refresh_from_db()
    assert obj.name == before
    html = client.get(detail_url(obj)).content.decode()
    assert 'name="_save"' not in html and "delete_selected" not in client.get(LIST).content.decode()
    assert client.get(reverse("admin:registrations_syncrun_add")).status_code == 403


def test_reviewers_see_no_refresh_controls_and_get_403(reviewer, account):
    obj = AppRegistration.objects.first()
    assert "Sync now" not in reviewer.get(LIST).content.decode()
    assert "refresh_from_verifik" not in reviewer.get(LIST).content.decode()
    assert "Refresh now" not in reviewer.get(detail_url(obj)).content.decode()
    assert reviewer.post(refresh_url(obj)).status_code == 403
    assert reviewer.post(SYNC).status_code == 403
    reviewer.post(LIST, {"action": "refresh_from_verifik", "_selected_action": [obj.pk]})
    assert not SyncRun.objects.filter(kind=SyncRun.Kind.SINGLE).exists()


def test_operators_refresh_from_the_detail_page(operator, account):
    obj = AppRegistration.objects.first()
    account.update(obj.verifik_id, status="FAILED", name="Fresh Name")
    assert "Refresh now" in operator.get(detail_url(obj)).content.decode()
    assert operator.get(refresh_url(obj)).status_code == 405, "state changes are POST only"
    response = operator.post(refresh_url(obj), follow=True)
    run = SyncRun.objects.get(kind=SyncRun.Kind.SINGLE)
    assert run.outcome == "succeeded" and run.user.username == "otto" and run.updated == 1
    html = response.content.decode()
    assert "Refresh succeeded" in html and f"run #{run.pk}" in html
    obj.refresh_from_db()
    assert (obj.status, obj.name) == ("FAILED", "Fresh Name")


def test_operators_refresh_a_selection_with_the_action(operator, account):
    chosen = list(AppRegistration.objects.all()[:3])
    response = operator.post(
        LIST, {"action": "refresh_from_verifik", "_selected_action": [o.pk for o in chosen]}, follow=True
    )
    assert "Refreshed 3 of 3 registrations" in response.content.decode()
    assert SyncRun.objects.filter(kind=SyncRun.Kind.SINGLE, outcome="succeeded").count() == 3


def test_operators_sync_now_from_the_list(operator, account):
    account.add(2)
    response = operator.post(SYNC, follow=True)
    run = SyncRun.objects.filter(kind=SyncRun.Kind.FULL).latest("pk")
    assert run.trigger == "user" and run.created == 2
    assert "Sync succeeded" in response.content.decode()


def test_a_failed_refresh_says_what_came_back(operator, account, settings):
    obj = AppRegistration.objects.first()
    settings.VERIFIK_API_TOKEN = "revoked"
    html = operator.post(refresh_url(obj), follow=True).content.decode()
    assert "Refresh failed" in html and "VERIFIK_API_TOKEN" in html and "revoked" not in html


def test_the_list_warns_when_the_last_sync_failed(reviewer, account, settings):
    settings.VERIFIK_API_TOKEN = "revoked"
    with pytest.raises(Exception):  # noqa: B017
        run_sync()
    html = reviewer.get(LIST).content.decode()
    assert "The last sync failed" in html and "vf-health-failed" in html


@pytest.mark.parametrize("object_id", ["999999", "not-a-number", "507f1f77bcf86cd799439011"])
def test_unknown_registration_urls_answer_404(reviewer, account, object_id):
    url = reverse("admin:registrations_appregistration_change", args=[object_id])
    assert reviewer.get(url).status_code == 404


def test_sync_runs_are_listed_read_only_with_filters(reviewer, account):
    response = reviewer.get(RUNS + "?outcome=succeeded&kind=full")
    assert response.status_code == 200
    rows = listed(response)
    assert rows and all(r.outcome == "succeeded" and r.kind == "full" for r in rows)
    html = response.content.decode()
    assert "Succeeded" in html and re.search(r"\d+\.\d s", html)
    run = rows[0]
    detail = reviewer.get(reverse("admin:registrations_syncrun_change", args=[run.pk])).content.decode()
    assert 'name="_save"' not in detail and "Details fetched" in detail
