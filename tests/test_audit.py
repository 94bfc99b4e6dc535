"""The audit trail: one event per action, append-only down to the database, a read-only admin, the timeline."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from registrations import audit, audit_chain, review, timeline
from registrations.models import AppendOnly, AppRegistration, AuditAction, AuditEvent, ReviewDecision
from registrations.sync import run_sync
from tests.support import staff

pytestmark = pytest.mark.django_db

AUDIT_LIST = reverse("admin:registrations_auditevent_changelist")
REGISTRATIONS = reverse("admin:registrations_appregistration_changelist")


def page(name, obj):
    return reverse(f"admin:registrations_appregistration_{name}", args=[obj.pk])


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("at", "id"))


@pytest.fixture
def account(verifik):
    account = verifik(count=12)
    run_sync(details=True)
    return account


def registration(verifik_id="a" * 24, **fields):
    return AppRegistration.objects.create(verifik_id=verifik_id, **fields)


def test_record_stores_actor_action_registration_ip_and_details():
    user = staff("ana")
    reg = registration()
    request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.7")
    request.user = user
    event = audit.record("view", registration=reg, request=request, details={"reason": "check"})
    stored = AuditEvent.objects.get()
    assert stored == event
    assert (stored.actor, stored.action, stored.registration, stored.ip) == (user, "view", reg, "198.51.100.7")
    assert stored.details == {"reason": "check"}


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError):
        audit.record("delete_everything")
    assert not AuditEvent.objects.exists()


def test_details_never_keep_secrets(settings):
    event = audit.record(
        AuditAction.EXPORT,
        details={
            "password": "hunter2",
            "nested": {"api_token": "x", "otp_token": "123456", "filter": "q=1"},
            "query": f"status=FAILED&t={settings.VERIFIK_API_TOKEN}",
            "big": "x" * 100_000,
        },
    )
    event.refresh_from_db()
    text = str(event.details)
    assert "hunter2" not in text and "123456" not in text and settings.VERIFIK_API_TOKEN not in text
    assert event.details["nested"]["filter"] == "q=1"
    assert len(event.details["big"]) <= audit.MAX_STRING + 1


@pytest.mark.parametrize("behind_proxy, expected", [(False, "10.0.0.1"), (True, "203.0.113.9")])
def test_ip_comes_from_x_forwarded_for_only_behind_the_proxy(settings, behind_proxy, expected):
    settings.DJANGO_BEHIND_PROXY = behind_proxy
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    assert audit.record("login_failed", request=request).ip == expected


def test_a_forged_address_is_not_stored(settings):
    settings.DJANGO_BEHIND_PROXY = True
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="<script>")
    assert audit.record("login_failed", request=request).ip == "10.0.0.1"


def test_the_model_refuses_updates_and_deletes():
    event = audit.record("sync")
    event.details = {"changed": True}
    with pytest.raises(AppendOnly):
        event.save()
    with pytest.raises(AppendOnly):
        event.delete()
    with pytest.raises(AppendOnly):
        AuditEvent.objects.all().update(action="view")
    with pytest.raises(AppendOnly):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().details == {}


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE registrations_auditevent SET action = 'view'",
        "DELETE FROM registrations_auditevent",
        "UPDATE registrations_auditevent SET details = '{}' WHERE false",
    ],
)
def test_the_database_refuses_update_and_delete(sql):
    audit.record("sync")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert AuditEvent.objects.get().action == "sync"


@pytest.mark.parametrize("setting", ["", "SET LOCAL verifik.allow_audit_truncate = on"])
def test_the_database_refuses_truncate_to_every_session(setting):
    """No session setting opens a way past the trigger (the maintenance setting that once did is gone)."""
    audit.record("sync")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred foreign-key check left to block TRUNCATE
        if setting:
            cursor.execute(setting)
        cursor.execute("TRUNCATE registrations_auditevent CASCADE")
    assert AuditEvent.objects.count() == 1


# --- one event per action ----------------------------------------------------------------------


def test_opening_a_registration_writes_one_view_event(client, rita, account):
    obj = AppRegistration.objects.first()
    assert client.get(page("change", obj), REMOTE_ADDR="192.0.2.10").status_code == 200
    [event] = events("view")
    assert (event.actor, event.registration, event.ip, event.details) == (rita, obj, "192.0.2.10", {})
    client.get(REGISTRATIONS)
    assert len(events("view")) == 1, "the list is not a detail view"


def test_a_refused_detail_view_writes_nothing(client, account):
    client.force_login(staff("nobody"))  # staff without any permission
    obj = AppRegistration.objects.first()
    assert client.get(page("change", obj)).status_code == 403
    assert not events("view")


def test_decisions_assignments_and_comments_write_one_event_each(client, rita, account):
    obj = AppRegistration.objects.filter(red_flags__lt=3).first()
    client.post(page("decide", obj), {"outcome": "rejected", "reason": "Blurry document"}, REMOTE_ADDR="192.0.2.11")
    client.post(page("assign", obj), {"assignee": "me"})
    client.post(page("comment", obj), {"text": "Asked for a new photo"})
    [decided] = events("decide")
    decision = ReviewDecision.objects.get()
    assert (decided.actor, decided.registration, decided.ip) == (rita, obj, "192.0.2.11")
    assert decided.details == {"outcome": "rejected", "decision": decision.pk, "reason": "Blurry document"}
    [assigned] = events("assign")
    assert (assigned.actor, assigned.registration, assigned.details) == (rita, obj, {"assignee": "rita"})
    [commented] = events("comment")
    assert (commented.actor, commented.registration) == (rita, obj)
    assert commented.details["comment"] == obj.comments.get().pk


def test_a_refused_decision_writes_no_decide_event(client, rita, account):
    obj = AppRegistration.objects.first()
    client.post(page("decide", obj), {"outcome": "rejected", "reason": ""})
    assert not events("decide") and not ReviewDecision.objects.exists()


def test_a_second_reviewers_confirmation_is_audited(account, settings):
    obj = AppRegistration.objects.first()
    obj.red_flags = settings.VERIFIK_REVIEW_RED_FLAGS  # mirrored data set directly: the test's own fixture
    AppRegistration.objects.filter(pk=obj.pk).update(red_flags=obj.red_flags)
    first, second = staff("rita", "Registration reviewers"), staff("bob", "Registration reviewers")
    review.decide(obj, first, "approved")
    review.decide(obj, second, "approved")
    confirmed = events("decide")[-1]
    assert confirmed.actor == second and confirmed.details["confirmed"] is True
    assert confirmed.details["first_reviewer"] == "rita"


def test_the_event_commits_with_the_action_or_not_at_all(account, monkeypatch):
    obj = AppRegistration.objects.first()
    user = staff("rita", "Registration reviewers")

    def broken(*args, **kwargs):
        raise RuntimeError("the audit table is unavailable")

    monkeypatch.setattr(audit, "record", broken)
    for action in (
        lambda: review.decide(obj, user, "rejected", "reason"),
        lambda: review.assign(obj, user, user),
        lambda: review.comment(obj, user, "text"),
    ):
        with pytest.raises(RuntimeError):
            action()
    assert not ReviewDecision.objects.exists()
    assert not obj.assignments.exists() and not obj.comments.exists()


def test_refresh_and_sync_requests_are_audited_with_their_outcome(client, otto, account):
    obj = AppRegistration.objects.first()
    client.post(page("refresh", obj))
    [refreshed] = events("refresh")
    assert (refreshed.actor, refreshed.registration, refreshed.details["queued"]) == (otto, obj, False)
    assert refreshed.details["run"] is not None, "in eager mode the refresh ran: its SyncRun"
    client.post(reverse("admin:registrations_appregistration_sync"))
    [synced] = events("sync")
    assert (synced.actor, synced.registration) == (otto, None) and synced.details["run"] is not None
    chosen = list(AppRegistration.objects.order_by("pk")[:3])
    client.post(REGISTRATIONS, {"action": "refresh_from_verifik", "_selected_action": [o.pk for o in chosen]})
    bulk = [e for e in events("refresh") if e.details.get("bulk")]
    assert {e.registration for e in bulk} == set(chosen) and {e.actor for e in bulk} == {otto}


def test_a_refused_refresh_writes_nothing(client, rita, account):
    obj = AppRegistration.objects.first()
    assert client.post(page("refresh", obj)).status_code == 403
    assert client.post(reverse("admin:registrations_appregistration_sync")).status_code == 403
    assert not events("refresh") and not events("sync")


def test_a_login_is_audited(client):
    user = staff("rita")
    client.force_login(user)  # Django's login(): whatever checked the credentials, this signals the login
    [login] = events("login")
    assert (login.actor, login.registration, login.details) == (user, None, {})


def test_a_failed_login_is_audited_with_the_username_and_address_never_the_password(client):
    staff("rita")
    response = client.post(
        reverse("admin:login"), {"username": "rita", "password": "not-her-password"}, REMOTE_ADDR="192.0.2.66"
    )
    assert response.status_code == 200 and not events("login")
    [failed] = events("login_failed")
    assert (failed.actor, failed.ip, failed.details) == (None, "192.0.2.66", {"username": "rita"})
    assert "not-her-password" not in str(failed.details)


def test_a_failed_login_under_a_name_nobody_has_keeps_no_typed_text(client):
    """A password typed into the username box must not land in the trail."""
    staff("rita")
    client.post(reverse("admin:login"), {"username": "Hunter2-secret!", "password": "x"}, REMOTE_ADDR="192.0.2.66")
    [failed] = events("login_failed")
    assert failed.details == {"username": None, "unknown_username": True}


# --- the audit admin -------------------------------------------------------------------------


@pytest.fixture
def superuser(client):
    user = User.objects.create_superuser("root", password="pw")
    client.force_login(user)
    return user


def test_the_audit_admin_is_read_only_even_for_superusers(client, superuser, account):
    obj = AppRegistration.objects.first()
    event = audit.record("comment", actor=superuser, registration=obj, details={"comment": 1})
    listing = client.get(AUDIT_LIST)
    assert listing.status_code == 200
    html = listing.content.decode()
    assert obj.verifik_id in html and "Add audit event" not in html
    assert listing.context["cl"].model_admin.get_actions(listing.wsgi_request) == {}
    change = reverse("admin:registrations_auditevent_change", args=[event.pk])
    assert client.get(change).status_code == 200
    assert 'name="_save"' not in client.get(change).content.decode()
    assert client.post(change, {"action": "view", "details": "{}"}).status_code == 403
    assert client.get(reverse("admin:registrations_auditevent_add")).status_code == 403
    assert client.post(reverse("admin:registrations_auditevent_add"), {"action": "view"}).status_code == 403
    delete = reverse("admin:registrations_auditevent_delete", args=[event.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    client.post(AUDIT_LIST, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    event.refresh_from_db()
    assert event.action == "comment" and AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_audit_admin_needs_the_view_permission(client, rita):
    assert client.get(AUDIT_LIST).status_code == 403


def test_the_audit_admin_filters_by_action_actor_and_date_and_finds_a_registration(client, superuser, account):
    first, second = AppRegistration.objects.order_by("pk")[:2]
    rita = staff("rita", "Registration reviewers")
    audit.record("view", actor=rita, registration=first)
    long_ago = timezone.now() - timedelta(days=400)
    audit_chain.append([AuditEvent(action="view", actor=rita, registration=first, at=long_ago)])
    audit.record("decide", actor=rita, registration=second, details={"reason": "x"})
    audit.record("login_failed", details={"username": "mallory"})

    def listed(query):
        response = client.get(AUDIT_LIST + query)
        assert response.status_code == 200, response.content[:300]
        return [(e.action, e.registration_id) for e in response.context["cl"].result_list]

    assert listed("?action=decide") == [("decide", second.pk)]
    assert ("login_failed", None) not in listed(f"?actor__id__exact={rita.pk}")
    assert listed("?actor__isnull=True") == [("login_failed", None)]
    then = timezone.localtime(long_ago)
    assert listed(f"?at__year={then.year}&at__month={then.month}&at__day={then.day}") == [("view", first.pk)]
    since = timezone.now() - timedelta(days=7)
    in_week = client.get(AUDIT_LIST, {"at__gte": since.isoformat()}).context["cl"].result_list
    assert len(in_week) == AuditEvent.objects.filter(at__gte=since).count() and len(in_week) >= 3
    assert listed(f"?q={first.verifik_id}") == [("view", first.pk)] * 2
    assert listed(f"?q={first.verifik_id.upper()}") == [("view", first.pk)] * 2
    assert listed(f"?q={first.pk}") == [("view", first.pk)] * 2
    assert listed(f"?q={first.verifik_id[:10]}") == [], "the id must match exactly"
    assert listed("?q=' OR 1=1 --") == []


def test_the_audit_admin_masks_personal_data_in_details_for_users_without_view_pii(client, account):
    """Reasons and an export's filter quote people: an auditor without view_pii reads them masked."""
    registration = AppRegistration.objects.exclude(email=None).exclude(name=None).order_by("pk").first()
    rita = staff("rita", "Registration reviewers")
    reason = f"Spoke to {registration.name} at {registration.email}"
    event = audit.record("decide", actor=rita, registration=registration, details={"reason": reason})
    audit.record("export", actor=rita, details={"filter": "q=someone.else@example.org", "rows": 1})
    auditor = staff("audrey", "Registration analysts")
    auditor.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client.force_login(auditor)
    for url in [AUDIT_LIST, reverse("admin:registrations_auditevent_change", args=[event.pk])]:
        html = client.get(url).content.decode()
        assert registration.email not in html and registration.name not in html
        assert "someone.else@example.org" not in html
    client.force_login(rita)  # reviewers hold view_pii: they read the reason as written
    rita.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    assert registration.email in client.get(AUDIT_LIST).content.decode()


# --- the registration's timeline --------------------------------------------------------------


def test_the_timeline_shows_audit_events_only_with_the_permission(client, account):
    obj = AppRegistration.objects.first()
    audit.record("reveal", actor=staff("ana"), registration=obj, details={"reason": "Fraud check 881"})
    viewer = staff("rita", "Registration reviewers")
    client.force_login(viewer)
    assert "Fraud check 881" not in client.get(page("change", obj)).content.decode()
    assert "Fraud check 881" not in client.get(page("history", obj)).content.decode()
    viewer.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client.force_login(User.objects.get(pk=viewer.pk))
    html = client.get(page("change", obj)).content.decode()
    assert "Fraud check 881" in html and "Revealed personal data" in html
    assert "Fraud check 881" in client.get(page("history", obj)).content.decode()


def test_page_views_stay_out_of_the_panel_but_not_out_of_the_whole_timeline(account):
    obj = AppRegistration.objects.first()
    rita = staff("rita", "Registration reviewers")
    for _ in range(15):
        audit.record("view", actor=rita, registration=obj)
    audit.record("reveal", actor=rita, registration=obj, details={"reason": "check"})
    panel = timeline.events(obj, limit=12, audit=True, views=False)
    assert [e.a for e in panel if e.event == "audit"] == ["reveal"]
    assert any(e.event == "status" for e in panel), "status changes must not be pushed out by page views"
    whole = timeline.events(obj, audit=True)
    assert sum(e.a == "view" for e in whole if e.event == "audit") == 15
