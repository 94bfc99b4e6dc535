"""Verifik's webhook: authenticate, validate, record, enqueue a refresh.

Deliveries carry no signature, so a body is never trusted: it only names a
registration, which is then fetched from the API (fetch-on-notify). A forged
body can at most cause a refresh.
"""

import hmac
import json
import logging

from django.conf import settings
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import dispatch
from .mapping import is_object_id
from .models import SyncRun, WebhookDelivery

log = logging.getLogger(__name__)

REGISTRATION_EVENT = "_app_registration_"
VALIDATION_EVENTS = ("_email_validation_", "_phone_validation_", "_document_validation_", "_biometric_validation_")


class Rejected(ValueError):
    """A delivery that cannot be acted on; the message is safe to answer with."""

    def __init__(self, message, status=400, event_type=""):
        super().__init__(message)
        self.status, self.event_type = status, event_type


def registration_id(event):
    """The registration a delivery names: `(event type, id or None when the type is not ours)`."""
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise Rejected("expected a JSON object with a 'type'")
    # NUL cannot be stored in a text column, and no event type of Verifik's has one.
    event_type, obj = event["type"][:200].replace("\x00", ""), event.get("object")
    marker = f"_{event_type}"
    if REGISTRATION_EVENT in marker:
        candidate = obj.get("_id") if isinstance(obj, dict) else None
    elif any(kind in marker for kind in VALIDATION_EVENTS):
        candidate = obj.get("appRegistration") if isinstance(obj, dict) else None
        if isinstance(candidate, dict):
            candidate = candidate.get("_id")
        if candidate is None:
            return event_type, None
    else:
        return event_type, None
    if not is_object_id(candidate):
        raise Rejected("the delivery names no valid registration id", event_type=event_type)
    return event_type, candidate.lower()


def receive(body):
    """Record one delivery and act on it; returns the WebhookDelivery."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Rejected("malformed JSON") from None
    try:
        event_type, verifik_id = registration_id(event)
    except Rejected as exc:
        WebhookDelivery.objects.create(
            event_type=exc.event_type, outcome=WebhookDelivery.Outcome.REJECTED, detail=str(exc)
        )
        raise
    if verifik_id is None:
        return WebhookDelivery.objects.create(
            event_type=event_type,
            outcome=WebhookDelivery.Outcome.IGNORED,
            detail="No registration to refresh for this event.",
        )
    delivery = WebhookDelivery.objects.create(
        event_type=event_type, verifik_id=verifik_id, outcome=WebhookDelivery.Outcome.QUEUED
    )
    result = dispatch.request_refresh(
        verifik_id,
        trigger=SyncRun.Trigger.WEBHOOK,
        kind=SyncRun.Kind.WEBHOOK,
        countdown=settings.VERIFIK_WEBHOOK_DEBOUNCE_SECONDS,
    )
    if result.joined:
        WebhookDelivery.objects.filter(pk=delivery.pk, sync_run__isnull=True).update(
            outcome=WebhookDelivery.Outcome.COLLAPSED,
            detail="Joined the refresh already pending for this registration; its outcome is recorded here.",
        )
    # The refresh records its outcome on every delivery it served (already, when it ran inline).
    delivery.refresh_from_db()
    return delivery


def _secret_matches(given):
    expected = settings.VERIFIK_WEBHOOK_SECRET
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@csrf_exempt
def verifik_webhook(request, secret):
    if not _secret_matches(secret):
        raise Http404
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if request.content_type != "application/json":
        return JsonResponse({"error": "expected Content-Type: application/json"}, status=415)
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return JsonResponse({"error": "Content-Length is not a number"}, status=400)
    if length > settings.VERIFIK_WEBHOOK_MAX_BYTES:
        return JsonResponse({"error": f"body larger than {settings.VERIFIK_WEBHOOK_MAX_BYTES} bytes"}, status=413)
    body = request.read(settings.VERIFIK_WEBHOOK_MAX_BYTES + 1)
    if len(body) > settings.VERIFIK_WEBHOOK_MAX_BYTES:
        return JsonResponse({"error": f"body larger than {settings.VERIFIK_WEBHOOK_MAX_BYTES} bytes"}, status=413)
    try:
        delivery = receive(body)
    except Rejected as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse({"delivery": delivery.pk, "outcome": delivery.outcome})
