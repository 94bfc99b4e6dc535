"""Verifik's webhook: deliveries are unauthenticated hints that only ever trigger a refresh from the API."""

import json

import pytest
from django.urls import reverse

from registrations.models import AppRegistration, SyncRun, WebhookDelivery
from registrations.sync import run_sync

pytestmark = pytest.mark.django_db

SECRET = "test-webhook-secret-long-enough-for-the-check"


def url(secret=SECRET):
    return reverse("verifik-webhook", args=[secret])


def post(client, body, secret=SECRET, content_type="application/json"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(url(secret), data=data, content_type=content_type)


@pytest.fixture
def account(verifik):
    account = verifik(count=10)
    run_sync(details=False)
    account.reset_stats()
    return account


def test_a_wrong_or_missing_secret_answers_404(client, account, settings):
    assert post(client, {"type": "x"}, secret="wrong").status_code == 404
    settings.VERIFIK_WEBHOOK_SECRET = ""
    assert client.post("/webhooks/verifik/anything/", "{}", content_type="application/json").status_code == 404
    assert client.post("/webhooks/verifik//", "{}", content_type="application/json").status_code == 404
    assert not WebhookDelivery.objects.exists()


def test_a_forged_body_changes_nothing_but_triggers_a_refresh_from_the_api(client, account):
    record = account.records[3]
    forged = {
        **record,
        "status": "COMPLETED",
        "name": "Forged Name",
        "redFlags": 0,
        "updatedAt": "2099-01-01T00:00:00Z",
    }
    response = post(client, {"type": "onboarding_app_registration_completed", "object": forged})
    assert response.status_code == 200 and response.json()["outcome"] == "refreshed"
    row = AppRegistration.objects.get(verifik_id=record["_id"])
    assert row.name == record["name"] and row.status == record["status"], "the stored data is what the API says"
    assert account.detail_ids == [record["_id"]]
    delivery = WebhookDelivery.objects.get()
    assert delivery.sync_run.kind == SyncRun.Kind.WEBHOOK and delivery.sync_run.trigger == SyncRun.Trigger.WEBHOOK


def test_a_change_upstream_arrives_through_the_webhook(client, account):
    record = account.records[5]
    account.update(record["_id"], status="FAILED")
    post(client, {"type": "onboarding_app_registration_failed", "object": {"_id": record["_id"]}})
    assert AppRegistration.objects.get(verifik_id=record["_id"]).status == "FAILED"


def test_validation_events_refresh_the_registration_they_reference(client, account):
    record = account.records[2]
    for reference in (record["_id"], {"_id": record["_id"]}):
        WebhookDelivery.objects.all().delete()
        SyncRun.objects.filter(kind=SyncRun.Kind.WEBHOOK).delete()
        body = {
            "type": "onboarding_email_validation_validated",
            "object": {"_id": "f" * 24, "appRegistration": reference},
        }
        assert post(client, body).json()["outcome"] == "refreshed"
        assert WebhookDelivery.objects.get().verifik_id == record["_id"]


def test_each_delivery_records_the_refresh_that_served_it(client, account):
    """Inline (no broker) each delivery is served at once; with a worker, bursts collapse (test_tasks)."""
    record = account.records[1]
    body = {"type": "onboarding_app_registration_ongoing", "object": {"_id": record["_id"]}}
    outcomes = [post(client, body).json()["outcome"] for _ in range(3)]
    assert outcomes == ["refreshed"] * 3
    deliveries = WebhookDelivery.objects.order_by("pk")
    assert [d.sync_run.outcome for d in deliveries] == ["succeeded"] * 3
    assert len({d.sync_run_id for d in deliveries}) == 3 and account.detail_requests == 3


def test_unknown_event_types_are_recorded_as_ignored(client, account):
    response = post(client, {"type": "onboarding_project_updated", "object": {"_id": "a" * 24}})
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    assert WebhookDelivery.objects.get().outcome == "ignored" and account.request_count == 0


@pytest.mark.parametrize(
    "body, status",
    [
        ("{not json", 400),
        ('["a list"]', 400),
        ({"type": "onboarding_app_registration_completed", "object": {"_id": "../../etc"}}, 400),
        ({"type": "onboarding_app_registration_completed"}, 400),
    ],
)
def test_malformed_deliveries_are_refused_and_send_nothing(client, account, body, status):
    assert post(client, body).status_code == status
    assert account.request_count == 0


def test_only_json_posts_are_accepted(client, account):
    assert client.get(url()).status_code == 405
    assert post(client, "type=x", content_type="application/x-www-form-urlencoded").status_code == 415


def test_oversized_bodies_are_refused(client, account, settings):
    settings.VERIFIK_WEBHOOK_MAX_BYTES = 1000
    body = {"type": "onboarding_app_registration_completed", "object": {"_id": "a" * 24, "pad": "x" * 2000}}
    assert post(client, body).status_code == 413
    assert account.request_count == 0


def test_deliveries_are_listed_read_only_in_the_admin(admin_client, client, account):
    post(client, {"type": "onboarding_app_registration_created", "object": {"_id": account.records[0]["_id"]}})
    response = admin_client.get(reverse("admin:registrations_webhookdelivery_changelist"))
    assert response.status_code == 200 and "onboarding_app_registration_created" in response.content.decode()
    assert admin_client.get(reverse("admin:registrations_webhookdelivery_add")).status_code == 403
