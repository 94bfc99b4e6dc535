"""The review desk in the admin: decide, assign and comment over POST, permissions, the review panel,
the timeline, the dashboard, navigation, and what the list reads."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from registrations.models import AppRegistration, ReviewAssignment, ReviewComment, ReviewDecision, StatusChange
from registrations.sync import run_sync

from .support import staff

pytestmark = pytest.mark.django_db

LIST = reverse("admin:registrations_appregistration_changelist")
DASHBOARD = "/admin/registrations/dashboard/"


def url(name, obj):
    return reverse(f"admin:registrations_appregistration_{name}", args=[obj.pk])


@pytest.fixture
def account(verifik):
    account = verifik(count=40)
    run_sync(details=True)
    return account


def queued():
    return AppRegistration.objects.filter(status="NEEDS_MANUAL_VERIFICATION", deleted=False).first()


def test_operators_may_not_decide_assign_or_comment(client, account):
    client.force_login(staff("otto", "Registration operators"))
    obj = queued()
    for name, data in (("decide", {"outcome": "approved"}), ("assign", {"assignee": "me"}), ("comment", {"text": "x"})):
        assert client.post(url(name, obj), data).status_code == 403
    html = client.get(url("change", obj)).content.decode()
    assert "Review" in html and 'name="outcome"' not in html
    assert not (ReviewDecision.objects.exists() or ReviewAssignment.objects.exists() or ReviewComment.objects.exists())


def test_review_actions_are_post_only_and_need_a_login(client, account):
    obj = queued()
    assert client.post(url("decide", obj), {"outcome": "approved"}).status_code == 302  # to the login page
    staff_user = staff("rita", "Registration reviewers")
    client.force_login(staff_user)
    assert client.get(url("decide", obj)).status_code == 405
    assert client.post(reverse("admin:registrations_appregistration_decide", args=[999999])).status_code == 404
    assert not ReviewDecision.objects.exists()


def test_a_reviewer_rejects_with_a_reason_and_it_leaves_the_queue(client, rita, account):
    obj = queued()
    assert obj.verifik_id in {
        r.verifik_id for r in client.get(LIST + "?queue=needs_review&all=").context["cl"].result_list
    }
    response = client.post(url("decide", obj), {"outcome": "rejected", "reason": "Document photo is of a screen"})
    assert response.status_code == 302 and response["Location"] == url("change", obj)
    page = client.get(response["Location"]).content.decode()
    assert "Rejected." in page and "Document photo is of a screen" in page
    decision = ReviewDecision.objects.get()
    assert (decision.outcome, decision.reviewer, decision.upstream_updated_at) == ("rejected", rita, obj.updated_at)
    assert obj.verifik_id not in {
        r.verifik_id for r in client.get(LIST + "?queue=needs_review&all=").context["cl"].result_list
    }
    assert [r.verifik_id for r in client.get(LIST + "?decision=rejected").context["cl"].result_list] == [obj.verifik_id]


def test_a_missing_reason_records_nothing_and_the_page_says_why(client, rita, account):
    obj = queued()
    response = client.post(url("decide", obj), {"outcome": "escalated", "reason": "  "})
    assert response.status_code == 200
    html = response.content.decode()
    assert "A reason is required" in html and "errornote" in html
    assert not ReviewDecision.objects.exists()
    response = client.post(url("decide", obj), {"outcome": "<script>x</script>", "reason": "r"})
    assert "Unknown outcome" in response.content.decode() and "<script>x</script>" not in response.content.decode()


def test_four_eyes_through_the_admin(client, account):
    obj = AppRegistration.objects.filter(red_flags__gte=3, deleted=False).exclude(status="EXPIRED").first()
    first, second = staff("rita", "Registration reviewers"), staff("bob", "Registration reviewers")
    client.force_login(first)
    client.post(url("decide", obj), {"outcome": "approved"})
    html = client.post(url("decide", obj), {"outcome": "approved"}, follow=True).content.decode()
    assert "different reviewer" in html
    assert [r.pk for r in client.get(LIST + "?queue=awaiting_second").context["cl"].result_list] == [obj.pk]
    client.force_login(second)
    assert "Confirm approval" in client.get(url("change", obj)).content.decode()
    html = client.post(url("decide", obj), {"outcome": "approved"}, follow=True).content.decode()
    assert "Approval confirmed" in html
    decision = ReviewDecision.objects.get()
    assert decision.reviewer == first and decision.confirmed_by == second
    assert not client.get(LIST + "?queue=awaiting_second").context["cl"].result_list


def test_assign_to_me_to_someone_or_to_nobody(client, rita, account):
    obj = queued()
    bob = staff("bob", "Registration reviewers")
    client.post(url("assign", obj), {"assignee": "me"})
    assert [r.pk for r in client.get(LIST + "?queue=mine").context["cl"].result_list] == [obj.pk]
    client.post(url("assign", obj), {"assignee": str(bob.pk)})
    assert not client.get(LIST + "?queue=mine").context["cl"].result_list
    assert "bob" in client.get(LIST + "?queue=needs_review&all=").content.decode()
    for garbage in ("abc", "1e9", "-1", "99999999"):
        html = client.post(url("assign", obj), {"assignee": garbage}).content.decode()
        assert "errornote" in html
    client.post(url("assign", obj), {"assignee": ""})
    assert list(ReviewAssignment.objects.order_by("pk").values_list("assignee__username", flat=True)) == [
        "rita",
        "bob",
        None,
    ]


def test_comments_through_the_admin(client, rita, account):
    obj = queued()
    client.post(url("comment", obj), {"text": "Called the applicant <b>twice</b>"})
    html = client.get(url("change", obj)).content.decode()
    assert "Called the applicant &lt;b&gt;twice&lt;/b&gt;" in html
    assert "empty" in client.post(url("comment", obj), {"text": ""}).content.decode()
    assert "at most 5,000" in client.post(url("comment", obj), {"text": "x" * 6000}).content.decode()
    assert ReviewComment.objects.count() == 1


def test_the_detail_page_starts_with_the_review_panel_risk_and_timeline(client, rita, account):
    obj = AppRegistration.objects.exclude(red_flags_details={}).filter(populated__has_key="biometricValidation").first()
    client.post(url("comment", obj), {"text": "Looking at it"})
    html = client.get(url("change", obj)).content.decode()
    review, timeline = html.index('id="vf-review-title">Review<'), html.index('id="vf-timeline-title">Timeline<')
    applicant = html.index(">Applicant<")
    assert review < timeline < applicant
    assert "Risk summary" in html and "IP country mismatch" in html and "Liveness score" in html
    assert "Face match score" in html and "Document name match" in html
    assert "First seen as" in html and "Looking at it" in html
    assert "Assign to me" in html and 'value="rejected"' in html
    assert "Detail fetch" in html
    # The panel's forms may not sit inside the admin's change form: a browser drops a nested <form>
    # and the buttons would submit the change form instead (403 for a reviewer, nothing decided).
    change_form = html.index('id="appregistration_form"')
    assert html.rindex('class="vf-form vf-comment-form"') < timeline < change_form


def test_the_sync_section_shows_the_detail_backlog(client, rita, account):
    obj = queued()
    AppRegistration.objects.filter(pk=obj.pk).update(
        details_pending=True, details_failures=3, details_retry_at="2999-01-01T00:00Z", details_error="HTTP 503"
    )
    html = client.get(url("change", obj)).content.decode()
    assert "3 failed attempts" in html and "backing off until 2999-01-01" in html and "HTTP 503" in html


def test_the_history_button_shows_the_timeline(client, rita, account):
    obj = queued()
    client.post(url("assign", obj), {"assignee": "me"})
    html = client.get(url("history", obj)).content.decode()
    assert "Timeline" in html and "Assigned to rita" in html and "First seen as" in html
    assert "doesn’t have a change history" not in html and "doesn't have a change history" not in html


def test_the_list_reads_no_payloads(client, rita, account):
    with CaptureQueriesContext(connection) as queries:
        client.get(LIST + "?queue=needs_review")
        client.get(LIST)
    listing = [q["sql"] for q in queries.captured_queries if 'FROM "registrations_appregistration"' in q["sql"]]
    assert listing
    for sql in listing:
        for column in ("raw", "failed_email_validations", "failed_document_validations", "red_flags_details"):
            assert f'"registrations_appregistration"."{column}"' not in sql, column


def test_the_project_filter_and_column_show_names_with_the_id_as_tooltip(client, rita, account):
    obj = AppRegistration.objects.exclude(populated__project=None).first()
    name = obj.populated["project"]["name"]
    html = client.get(LIST).content.decode()
    assert f'title="Project {obj.project_id}">{name}</span>' in html


def test_the_navigation_leads_to_the_queue_and_the_dashboard(client, rita, account):
    index = client.get("/admin/").content.decode()
    assert "Needs review" in index and "Team dashboard" in index
    response = client.get(reverse("admin:registrations_reviewqueue_changelist"))
    assert response.status_code == 302 and response["Location"].endswith("?queue=needs_review")
    assert "?queue=needs_review" in client.get(LIST).content.decode()


def test_the_dashboard_draws_its_charts_and_links_them(client, rita, account):
    StatusChange.objects.update(observed_at="2020-01-01T00:00Z")
    AppRegistration.objects.update(first_synced_at="2020-01-01T00:00Z")
    obj = queued()
    client.post(url("decide", obj), {"outcome": "rejected", "reason": "Forged"})
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg class="vf-chart"') == 3 and "<table" not in html.split('id="content-main"')[1]
    assert "?queue=needs_review" in html and "?queue=overdue" in html and "?queue=awaiting_second" in html
    assert "?decision=rejected" in html and "status__in=STARTED%2CONGOING" in html
    figures = response.context["figures"]
    assert figures.decided == 1 and figures.median_to_decision.days > 1000
    assert figures.queue.value == figures.overdue.value > 0 and figures.queue.exact
    step = figures.stopped[0][0]
    listed = client.get(LIST + f"?status__in=STARTED,ONGOING&current_step={step}&all=").context["cl"].result_list
    assert len(listed) == figures.stopped[0][1]


def test_the_dashboard_needs_the_view_permission(client, account):
    client.force_login(staff("nobody"))
    assert client.get(DASHBOARD).status_code == 403
