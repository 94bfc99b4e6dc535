"""The review desk's rules, through the service and the list a reviewer reads: queue membership case by
case, four eyes, changed since decision, overdue, assignment, comments, the timeline, and that a sync
never touches review data."""

import itertools
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from registrations import queue, review, selectors, timeline
from registrations.models import (
    AppRegistration,
    ReviewAssignment,
    ReviewComment,
    ReviewDecision,
    ReviewState,
    StatusChange,
)
from registrations.sync import run_sync
from tests.support import wait_until

pytestmark = pytest.mark.django_db

LIST = reverse("admin:registrations_appregistration_changelist")
_ids = itertools.count(1)


def registration(status="NEEDS_MANUAL_VERIFICATION", *, seen_ago=timedelta(hours=1), **fields):
    """A mirrored registration as the sync leaves it: first sight recorded in its status history."""
    now = timezone.now()
    n = next(_ids)
    values = {
        "verifik_id": f"{0xABC000 + n:024x}",
        "status": status,
        "name": f"Applicant {n}",
        "email": f"applicant{n}@example.com",
        "red_flags": 0,
        "created_at": now - seen_ago - timedelta(minutes=5),
        "updated_at": now - seen_ago,
        "first_synced_at": now - seen_ago,
        "last_synced_at": now - seen_ago,
        "details_pending": False,
        **fields,
    }
    reg = AppRegistration.objects.create(**values)
    StatusChange.objects.create(
        registration=reg, to_status=status, upstream_updated_at=reg.updated_at, observed_at=reg.first_synced_at
    )
    return reg


def reviewer(username):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Registration reviewers"))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def in_queue(view="needs_review", user=None):
    rows = queue.with_review(AppRegistration.objects.all()).filter(queue.queue_q(view, user=user))
    return set(rows.values_list("verifik_id", flat=True))


def listed(client, query):
    response = client.get(LIST + query)
    assert response.status_code == 200, response.content[:300]
    return [r.verifik_id for r in response.context["cl"].result_list]


@pytest.fixture
def rita():
    return reviewer("rita")


@pytest.fixture
def bob():
    return reviewer("bob")


# --- who needs a person ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"status": "NEEDS_MANUAL_VERIFICATION"}, True),
        ({"status": "ONGOING", "red_flags": 3}, True),
        ({"status": "ONGOING", "red_flags": 2}, False),
        ({"status": "FAILED", "failed_biometric_count": 1}, True),
        ({"status": "COMPLETED", "failed_document_count": 2}, True),
        ({"status": "FAILED", "failed_email_count": 3, "failed_phone_count": 1}, False),
        ({"status": "COMPLETED"}, False),
        ({"status": "EXPIRED", "red_flags": 5}, False),
        ({"status": "NEEDS_MANUAL_VERIFICATION", "deleted": True}, False),
        ({"status": "NEEDS_MANUAL_VERIFICATION", "removed_upstream_at": timezone.now()}, False),
        ({"status": None, "red_flags": 4}, True),
    ],
)
def test_queue_membership_follows_what_verifik_sent(fields, expected):
    reg = registration(**fields)
    assert (reg.verifik_id in in_queue()) is expected


def test_the_red_flag_threshold_is_a_setting(settings):
    reg = registration("ONGOING", red_flags=2)
    assert reg.verifik_id not in in_queue()
    settings.VERIFIK_REVIEW_RED_FLAGS = 2
    assert reg.verifik_id in in_queue()


@pytest.mark.parametrize(
    "outcome, reason, stays",
    [
        ("approved", "", False),
        ("rejected", "Forged document", False),
        ("escalated", "Needs a senior look", True),
        ("info_requested", "Asked for a clearer photo", True),
    ],
)
def test_a_decision_closes_the_case_unless_it_hands_it_back(rita, outcome, reason, stays):
    reg = registration(red_flags=1)
    review.decide(reg, rita, outcome, reason)
    assert (reg.verifik_id in in_queue()) is stays
    state = ReviewState.objects.get(registration=reg)
    assert state.outcome == outcome and state.decision_version == reg.updated_at


def test_a_reason_is_required_to_reject_escalate_or_request_information(rita):
    reg = registration()
    for outcome in ("rejected", "escalated", "info_requested"):
        with pytest.raises(review.ReviewError, match="reason is required"):
            review.decide(reg, rita, outcome, "   ")
    with pytest.raises(review.ReviewError, match="Unknown outcome"):
        review.decide(reg, rita, "maybe", "x")
    assert not ReviewDecision.objects.exists() and reg.verifik_id in in_queue()


# --- four eyes ---------------------------------------------------------------------------------------


def test_an_approval_at_the_red_flag_threshold_waits_for_a_second_reviewer(rita, bob):
    reg = registration("ONGOING", red_flags=4)
    first = review.decide(reg, rita, "approved")
    assert first.awaiting_second and reg.verifik_id in in_queue("awaiting_second")
    assert reg.verifik_id in in_queue()

    with pytest.raises(review.ReviewError, match="different reviewer"):
        review.decide(reg, rita, "approved")  # the same reviewer again confirms nothing
    decision = ReviewDecision.objects.get(registration=reg)
    assert decision.confirmed_by is None and decision.confirmed_at is None
    assert reg.verifik_id in in_queue("awaiting_second")

    second = review.decide(reg, bob, "approved")
    assert second.confirmed and second.decision.pk == decision.pk
    decision.refresh_from_db()
    assert decision.confirmed_by == bob and decision.confirmed_at is not None and decision.reviewer == rita
    assert ReviewDecision.objects.filter(registration=reg).count() == 1
    assert reg.verifik_id not in in_queue() and reg.verifik_id not in in_queue("awaiting_second")


def test_four_eyes_apply_only_at_the_threshold_and_can_be_turned_off(rita, settings):
    below = registration("NEEDS_MANUAL_VERIFICATION", red_flags=2)
    assert not review.decide(below, rita, "approved").awaiting_second
    assert below.verifik_id not in in_queue()
    settings.VERIFIK_REVIEW_FOUR_EYES = False
    flagged = registration("ONGOING", red_flags=9)
    assert not review.decide(flagged, rita, "approved").awaiting_second
    assert flagged.verifik_id not in in_queue()


# --- changed since decision and waiting time ----------------------------------------------------------


def test_a_registration_that_changes_after_its_decision_returns_to_the_queue(verifik, rita):
    account = verifik(count=30)
    run_sync(details=False)
    reg = AppRegistration.objects.filter(status="NEEDS_MANUAL_VERIFICATION").first()
    review.decide(reg, rita, "rejected", "Document expired")
    assert reg.verifik_id not in in_queue()

    account.update(reg.verifik_id, notes="Applicant uploaded a new document")
    run_sync(details=False)
    assert reg.verifik_id in in_queue()
    rows = queue.with_review(AppRegistration.objects.filter(pk=reg.pk)).get()
    assert rows.changed_since and rows.waiting_since == AppRegistration.objects.get(pk=reg.pk).updated_at
    # A new decision covers the new version and closes it again.
    review.decide(reg, rita, "rejected", "Still expired")
    assert reg.verifik_id not in in_queue()


def test_a_decision_on_an_older_version_than_stored_is_changed_since_at_once(rita):
    reg = registration()
    seen = reg.updated_at - timedelta(minutes=3)
    result = review.decide(reg, rita, "rejected", "Blurry", seen_version=seen)
    assert result.stale and result.decision.upstream_updated_at == seen
    assert reg.verifik_id in in_queue()


def test_waiting_starts_at_the_latest_status_change_or_first_sight(rita):
    reg = registration("ONGOING", red_flags=5, seen_ago=timedelta(days=3))
    annotated = queue.with_review(AppRegistration.objects.filter(pk=reg.pk))
    assert annotated.get().waiting_since == reg.first_synced_at
    moved = timezone.now() - timedelta(hours=2)
    StatusChange.objects.create(
        registration=reg, from_status="ONGOING", to_status="NEEDS_MANUAL_VERIFICATION", observed_at=moved
    )
    StatusChange.objects.create(  # a step change inside the status does not restart the clock
        registration=reg,
        from_status="NEEDS_MANUAL_VERIFICATION",
        to_status="NEEDS_MANUAL_VERIFICATION",
        from_step="Liveness",
        to_step="Review",
        observed_at=moved + timedelta(minutes=30),
    )
    assert annotated.get().waiting_since == moved
    decided = review.decide(reg, rita, "escalated", "Senior review").decision
    assert annotated.get().waiting_since == decided.decided_at
    assert decided.entered_queue_at == moved


def test_overdue_after_the_sla(settings):
    settings.VERIFIK_REVIEW_SLA_HOURS = 24
    old = registration(seen_ago=timedelta(hours=30))
    fresh = registration(seen_ago=timedelta(seconds=1))
    assert in_queue("overdue") == {old.verifik_id}
    settings.VERIFIK_REVIEW_SLA_HOURS = 0.0005  # 1.8 seconds
    wait_until(lambda: fresh.verifik_id in in_queue("overdue"), timeout=10, what="the fresh one to be overdue")


def test_the_overdue_count_is_the_queue_less_its_recent_rows(rita):
    """Every way into the queue, once long ago and once recently: counted, capped and listed alike."""
    now = timezone.now()
    ago = lambda hours: now - timedelta(hours=hours)  # noqa: E731
    for hours in (50, 3):  # undecided, first sight
        registration(seen_ago=timedelta(hours=hours))
    for hours in (30, 2):  # undecided, its status moved
        moved = registration("ONGOING", red_flags=3, seen_ago=timedelta(hours=80))
        StatusChange.objects.create(
            registration=moved, from_status="ONGOING", to_status="FAILED", observed_at=ago(hours)
        )
        AppRegistration.objects.filter(pk=moved.pk).update(status="FAILED")
    for hours in (26, 1):  # escalated
        review.decide(registration(seen_ago=timedelta(hours=70)), rita, "escalated", "Senior", now=ago(hours))
    for hours in (40, 4):  # an approval waiting for its second reviewer
        review.decide(
            registration("ONGOING", red_flags=6, seen_ago=timedelta(hours=90)), rita, "approved", now=ago(hours)
        )
    for hours, synced in ((28, ago(28)), (5, ago(5)), (27, now)):  # changed at Verifik after its rejection
        changed = registration(seen_ago=timedelta(hours=60))
        review.decide(changed, rita, "rejected", "No", now=ago(59))
        AppRegistration.objects.filter(pk=changed.pk).update(updated_at=ago(hours), last_synced_at=synced)
    review.decide(registration(seen_ago=timedelta(hours=100)), rita, "rejected", "Fraud")  # closed
    registration("COMPLETED", seen_ago=timedelta(hours=100))  # not for review

    base = AppRegistration.objects.all()
    over = selectors.Count
    for _ in ("live", "stored"):  # versions compared live, then two of the three from the stored copy
        at = {"reached": queue.checkpoint()}
        assert len(in_queue("overdue")) == 6 and len(in_queue("needs_review")) == 11
        assert queue.size(base, "overdue", **at) == over(6)
        assert queue.queue_and_overdue(base, **at) == (over(11), over(6))
        # Capped: the queue past the cap, not the overdue rows; both past it; the recent rows past it.
        assert queue.queue_and_overdue(base, **at, cap=6) == (over(6, exact=False), over(6))
        assert queue.queue_and_overdue(base, **at, cap=5) == (over(5, exact=False),) * 2
        assert queue.queue_and_overdue(base, **at, cap=4) == (over(4, exact=False),) * 2
        assert queue.size(base, "overdue", **at, cap=4) == over(4, exact=False)
        # The changed-since legs are disjoint: each counted once, together up to the cap.
        assert queue.size(base, decision="changed_since", **at) == over(3)
        assert queue.size(base, decision="changed_since", **at, cap=2) == over(2, exact=False)
        review.check_versions()
    assert queue.checkpoint() is not None


def test_overdue_and_the_dashboard_over_a_filter_that_matches_nothing(client, rita):
    """An empty search makes the base an empty set (`pk__in=[]`): the queue views and counts say 0."""
    registration(seen_ago=timedelta(hours=50))
    client.force_login(rita)
    for view in ("overdue", "needs_review"):
        response = client.get(LIST + f"?queue={view}&q=nobody-matches-this")
        assert response.status_code == 200 and list(response.context["cl"].result_list) == []
        assert response.context["cl"].result_count == 0
    nothing = AppRegistration.objects.filter(pk__in=[])
    assert queue.queue_and_overdue(nothing) == (selectors.Count(0), selectors.Count(0))


def test_review_desk_reads_run_serial_and_other_lists_reset_it(client, rita):
    """Queue views and the dashboard turn parallel workers off for their reads; any other list turns
    them back on, as the connection is shared between requests."""
    from django.db import connection

    def workers():
        with connection.cursor() as cursor:
            cursor.execute("SHOW max_parallel_workers_per_gather")
            return cursor.fetchone()[0]

    default = workers()
    client.force_login(rita)
    assert client.get(LIST + "?queue=overdue").status_code == 200 and workers() == "0"
    assert client.get(LIST + "?status=COMPLETED").status_code == 200 and workers() == default
    assert client.get("/admin/registrations/dashboard/").status_code == 200
    assert workers() == "0"
    assert client.get(LIST).status_code == 200 and workers() == default != "0"


# --- assignment and comments ------------------------------------------------------------------


def test_assignment_per_user_and_unassigned(rita, bob):
    a, b, c = registration(), registration(), registration()
    assert review.assign(a, rita, rita) and review.assign(b, rita, bob)
    assert not review.assign(a, rita, rita), "assigning again changes nothing"
    assert in_queue("mine", rita) == {a.verifik_id}
    assert in_queue("mine", bob) == {b.verifik_id}
    assert in_queue("unassigned") == {c.verifik_id}
    review.assign(a, bob, None)
    assert in_queue("mine", rita) == set() and in_queue("unassigned") == {a.verifik_id, c.verifik_id}
    assert list(ReviewAssignment.objects.filter(registration=a).values_list("assignee__username", flat=True)) == [
        None,
        "rita",
    ]


def test_only_reviewers_can_be_assigned(rita):
    operator = User.objects.create_user("otto", is_staff=True)
    operator.groups.add(Group.objects.get(name="Registration operators"))
    with pytest.raises(review.ReviewError, match="cannot review"):
        review.assign(registration(), rita, User.objects.get(pk=operator.pk))
    assert not ReviewAssignment.objects.exists()


def test_comments_are_trimmed_and_bounded(rita):
    reg = registration()
    review.comment(reg, rita, "  Called the applicant.\nWaiting for a photo.  ")
    assert ReviewComment.objects.get().text == "Called the applicant.\nWaiting for a photo."
    with pytest.raises(review.ReviewError, match="empty"):
        review.comment(reg, rita, " \n ")
    with pytest.raises(review.ReviewError, match="at most 5,000"):
        review.comment(reg, rita, "x" * 5001)
    review.comment(reg, rita, "y" * 5000)
    assert ReviewComment.objects.count() == 2


# --- the timeline ---------------------------------------------------------------------------------


def test_the_timeline_lists_everything_newest_first_with_who_and_when(rita, bob):
    reg = registration("ONGOING", red_flags=4, seen_ago=timedelta(hours=5))
    t0 = timezone.now() - timedelta(hours=4)
    StatusChange.objects.create(registration=reg, from_status="ONGOING", to_status="FAILED", observed_at=t0)
    review.assign(reg, rita, rita, now=t0 + timedelta(minutes=1))
    review.comment(reg, rita, "Looks fine to me", now=t0 + timedelta(minutes=2))
    review.decide(reg, rita, "approved", now=t0 + timedelta(minutes=3))
    review.decide(reg, bob, "approved", now=t0 + timedelta(minutes=4))
    events = timeline.events(reg)
    assert [(e.event, e.actor) for e in events] == [
        ("confirmation", "bob"),
        ("decision", "rita"),
        ("comment", "rita"),
        ("assignment", "rita"),
        ("status", None),
        ("status", None),
    ]
    assert events[0].a == "rita" and events[2].a == "Looks fine to me" and events[3].a == "rita"
    assert (events[4].a, events[4].b) == ("ONGOING", "FAILED") and events[5].a is None
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)


# --- the sync never touches review data ---------------------------------------------------------------


def test_no_sync_touches_decisions_assignments_or_comments(verifik, rita, bob):
    account = verifik(count=25)
    run_sync(details=True)
    regs = list(AppRegistration.objects.order_by("pk")[:3])
    review.decide(regs[0], rita, "rejected", "Forged")
    review.decide(regs[1], rita, "escalated", "Unsure")
    review.assign(regs[2], rita, bob)
    review.comment(regs[2], bob, "Taking this one")

    def snapshot():
        return (
            list(ReviewDecision.objects.order_by("pk").values()),
            list(ReviewAssignment.objects.order_by("pk").values()),
            list(ReviewComment.objects.order_by("pk").values()),
            list(ReviewState.objects.order_by("pk").values()),
        )

    before = snapshot()
    for reg in regs:
        account.update(reg.verifik_id, status="FAILED", notes="changed upstream")
    run_sync(details=True)
    run_sync(details=True)  # and a no-change re-sync
    assert snapshot() == before
    assert AppRegistration.objects.get(pk=regs[0].pk).status == "FAILED"


# --- the queue in waiting order ---------------------------------------------------------------------


def test_the_merged_queue_matches_the_rules_and_lists_the_oldest_waiting_first(client, rita, bob):
    """The index-ordered legs (default order) and the ordinary query (show all) agree, row for row."""
    client.force_login(rita)
    undecided = [registration(seen_ago=timedelta(hours=h)) for h in (50, 3, 30)]
    moved = registration("ONGOING", red_flags=3, seen_ago=timedelta(hours=80))
    StatusChange.objects.create(
        registration=moved, from_status="ONGOING", to_status="FAILED", observed_at=timezone.now() - timedelta(hours=10)
    )
    AppRegistration.objects.filter(pk=moved.pk).update(status="FAILED")
    escalated = registration(seen_ago=timedelta(hours=70))
    review.decide(escalated, rita, "escalated", "Senior", now=timezone.now() - timedelta(hours=20))
    pending = registration("ONGOING", red_flags=6, seen_ago=timedelta(hours=90))
    review.decide(pending, rita, "approved", now=timezone.now() - timedelta(hours=40))
    changed = registration(seen_ago=timedelta(hours=60))
    review.decide(changed, rita, "rejected", "No", now=timezone.now() - timedelta(hours=59))
    AppRegistration.objects.filter(pk=changed.pk).update(
        updated_at=timezone.now() - timedelta(hours=5), last_synced_at=timezone.now() - timedelta(hours=5)
    )
    closed = registration(seen_ago=timedelta(hours=100))
    review.decide(closed, rita, "rejected", "Fraud")
    registration("COMPLETED")  # not for review

    expected = [
        undecided[0].verifik_id,  # 50 h
        pending.verifik_id,  # 40 h (approval waiting)
        undecided[2].verifik_id,  # 30 h
        escalated.verifik_id,  # 20 h (escalation)
        moved.verifik_id,  # 10 h (status change)
        changed.verifik_id,  # 5 h (changed after the decision)
        undecided[1].verifik_id,  # 3 h
    ]
    assert listed(client, "?queue=needs_review") == expected
    assert listed(client, "?queue=needs_review&all=") == expected
    review.check_versions()  # the stored copy of versions gives the same answer
    assert listed(client, "?queue=needs_review") == expected
    assert listed(client, "?decision=changed_since") == [changed.verifik_id]
    assert listed(client, "?queue=overdue") == expected[:3]  # waiting longer than 24 h
    html = client.get(LIST + "?queue=needs_review").content.decode()
    assert "changed since decision" in html and "awaiting second approval" in html and "vf-overdue" in html


def test_changed_since_in_waiting_order_lists_every_row_the_rule_matches(client, rita):
    """Closed and still-open decisions whose registration changed since: the same rows in waiting order as sorted."""
    client.force_login(rita)
    now = timezone.now()
    closed = registration(seen_ago=timedelta(hours=60))
    review.decide(closed, rita, "rejected", "No", now=now - timedelta(hours=59))
    escalated = registration(seen_ago=timedelta(hours=70))
    review.decide(escalated, rita, "escalated", "Senior", now=now - timedelta(hours=20))
    unchanged = registration(seen_ago=timedelta(hours=80))
    review.decide(unchanged, rita, "escalated", "Later")
    for reg, ago in ((closed, 5), (escalated, 3)):
        AppRegistration.objects.filter(pk=reg.pk).update(
            updated_at=now - timedelta(hours=ago), last_synced_at=now - timedelta(hours=ago)
        )
    expected = [closed.verifik_id, escalated.verifik_id]
    matching = AppRegistration.objects.filter(queue.decision_q("changed_since")).values_list("verifik_id", flat=True)
    assert sorted(matching) == sorted(expected)
    base = AppRegistration.objects.all()
    for _ in range(2):  # live, then from the stored copy of versions (a closed one waits from when it was noticed)
        merged = queue.ordered_page(queue.legs(base, decision="changed_since", reached=queue.checkpoint()), 0, 50)
        assert sorted(AppRegistration.objects.get(pk=pk).verifik_id for pk in merged) == sorted(expected)
        assert sorted(listed(client, "?decision=changed_since")) == sorted(expected)
        review.check_versions()


def test_the_queue_pages_through_the_legs(client, rita, settings):
    client.force_login(rita)
    regs = [registration(seen_ago=timedelta(hours=200 - i)) for i in range(120)]
    first = listed(client, "?queue=needs_review")
    second = listed(client, "?queue=needs_review&p=2")
    third = listed(client, "?queue=needs_review&p=3")
    assert first + second + third == [r.verifik_id for r in regs]
    assert client.get(LIST + "?queue=needs_review&p=9").status_code in (200, 302)
