"""The detail backlog is queued once and backs off; small defects stay fixed; old records are pruned."""

import io
import logging
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from registrations import checks, mapping
from registrations.models import AppRegistration, SyncRun, WebhookDelivery
from registrations.sync import SYNC_LOCK_KEY, fetch_details_for, prune_history, refresh, run_sync
from registrations.tasks import prune_sync_history
from verifik_admin.logs import RedactSecretsFilter

pytestmark = pytest.mark.django_db

SECRET = "test-webhook-secret-long-enough-for-the-check"


def test_the_backlog_is_queued_once_across_three_syncs(verifik):
    account = verifik(count=25)
    queued = []
    runs = [run_sync(on_details=lambda run, ids: queued.extend(ids)) for _ in range(3)]
    assert sorted(queued) == sorted(r["_id"] for r in account.records)
    assert [r.details_queued for r in runs] == [25, 0, 0] and account.detail_requests == 0


def test_a_queued_fetch_is_queued_again_after_the_requeue_window(verifik, settings):
    verifik(count=5)
    queued = []
    run_sync(on_details=lambda run, ids: queued.extend(ids))
    AppRegistration.objects.update(details_queued_at=timezone.now() - timedelta(minutes=61))
    run_sync(on_details=lambda run, ids: queued.extend(ids))
    assert len(queued) == 10


def test_a_fetch_for_a_registration_no_longer_pending_sends_nothing(verifik):
    account = verifik(count=3)
    run = run_sync(details=False)
    verifik_id = account.records[0]["_id"]
    refresh(verifik_id)
    account.reset_stats()
    assert fetch_details_for(run.pk, verifik_id) is False
    assert account.request_count == 0


def test_a_registration_whose_details_keep_failing_backs_off(verifik, settings, admin_client):
    account = verifik(count=6)
    settings.VERIFIK_MAX_RETRIES = 0
    broken = account.records[2]["_id"]
    account.failing_ids.add(broken)
    for _ in range(settings.VERIFIK_DETAIL_MAX_FAILURES):
        run_sync()
    row = AppRegistration.objects.get(verifik_id=broken)
    assert row.details_pending and row.details_failures == settings.VERIFIK_DETAIL_MAX_FAILURES
    assert "HTTP 503" in row.details_error
    assert timedelta(minutes=59) < row.details_retry_at - timezone.now() <= timedelta(hours=1)
    assert not AppRegistration.objects.filter(details_pending=True).exclude(verifik_id=broken).exists()
    account.reset_stats()
    assert run_sync().details_queued == 0 and broken not in account.detail_ids, "backing off: not fetched"
    page = admin_client.get(reverse("admin:registrations_appregistration_change", args=[row.pk]))
    assert page.status_code == 200


def test_a_refresh_of_an_unchanged_registration_reports_unchanged(verifik):
    account = verifik(count=3)
    verifik_id = account.records[1]["_id"]
    first, second = refresh(verifik_id), refresh(verifik_id)
    assert (first.created, second.updated, second.unchanged) == (1, 0, 1)
    account.update(verifik_id, notes="now changed")
    third = refresh(verifik_id)
    assert (third.updated, third.unchanged) == (1, 0)


@pytest.mark.django_db(transaction=True)
def test_a_skipped_sync_tells_the_user_why(verifik, admin_client):
    verifik(count=3)
    other = connections.create_connection("default")  # another process's sync holds the lock
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [SYNC_LOCK_KEY])
        response = admin_client.post(reverse("admin:registrations_appregistration_sync"))
    finally:
        other.close()
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert response.status_code == 302 and any("skipped" in t and "already running" in t for t in texts), texts


def test_the_webhook_secret_never_reaches_a_log_line(client):
    """Django logs every 4xx with its path, which holds the secret: the configured handler prints it redacted."""
    handlers = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactSecretsFilter) for f in h.filters)]
    assert handlers, "the console handler carries the redaction filter"
    output = io.StringIO()
    previous = [handler.setStream(output) for handler in handlers]
    try:
        url = reverse("verifik-webhook", args=[SECRET])
        assert client.post(url, data="{}", content_type="text/plain").status_code == 415
        assert client.get(url).status_code == 405
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)
    text = output.getvalue()
    assert "Unsupported Media Type" in text and "/webhooks/verifik/***/" in text
    assert SECRET not in text


def test_a_nul_in_a_webhook_body_is_answered_without_an_error(client, verifik):
    verifik(count=2)
    body = '{"type": "onboarding_project_updated\\u0000", "object": {"_id": "' + "a" * 24 + '"}}'
    response = client.post(reverse("verifik-webhook", args=[SECRET]), data=body, content_type="application/json")
    assert response.status_code == 200 and WebhookDelivery.objects.get().event_type == "onboarding_project_updated"
    bad_id = '{"type": "onboarding_app_registration_completed", "object": {"_id": "\\u0000"}}'
    response = client.post(reverse("verifik-webhook", args=[SECRET]), data=bad_id, content_type="application/json")
    assert response.status_code == 400


def test_a_non_numeric_content_length_is_a_400(client):
    response = client.post(
        reverse("verifik-webhook", args=[SECRET]), data="{}", content_type="application/json", CONTENT_LENGTH="ten"
    )
    assert response.status_code == 400 and "Content-Length" in response.json()["error"]


def test_old_runs_and_deliveries_are_pruned_but_the_latest_full_sync_of_each_outcome_stays(settings):
    old = timezone.now() - timedelta(days=settings.VERIFIK_KEEP_RUNS_DAYS + 1)
    make = lambda **kw: SyncRun.objects.create(trigger="schedule", **kw)  # noqa: E731
    earlier_ok = make(kind="full", outcome="succeeded")
    latest_ok = make(kind="full", outcome="succeeded")
    latest_failed = make(kind="full", outcome="failed")
    old_active = make(kind="active", outcome="succeeded")
    recent = make(kind="active", outcome="succeeded")
    SyncRun.objects.exclude(pk=recent.pk).update(started_at=old)
    WebhookDelivery.objects.create(outcome="ignored")
    WebhookDelivery.objects.update(received_at=old)
    fresh = WebhookDelivery.objects.create(outcome="ignored")
    assert prune_sync_history.delay().get() == {"sync_runs": 2, "webhook_deliveries": 1}
    kept = set(SyncRun.objects.values_list("pk", flat=True))
    assert kept == {latest_ok.pk, latest_failed.pk, recent.pk} and not {earlier_ok.pk, old_active.pk} & kept
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert prune_history() == (0, 0)


def test_the_system_check_catches_a_mapping_that_drifts_from_the_model(monkeypatch):
    assert checks.mapping_matches_model() == []
    monkeypatch.setitem(mapping.REFERENCES, "newThing", "new_thing_id")
    assert [e.id for e in checks.mapping_matches_model()] == ["registrations.E002"]
