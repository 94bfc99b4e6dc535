"""Models, one module per concern: the mirror and its history; the sync's own records."""

from .mirror import ACTIVE_STATUSES, AppRegistration, RegistrationStatus, StatusChange
from .runs import LISTING_KINDS, PendingRefresh, SyncRun, WebhookDelivery

__all__ = [
    "ACTIVE_STATUSES",
    "AppRegistration",
    "LISTING_KINDS",
    "PendingRefresh",
    "RegistrationStatus",
    "StatusChange",
    "SyncRun",
    "WebhookDelivery",
]
