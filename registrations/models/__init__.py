"""Models, one module per concern: the mirror and its history; the sync's own records."""

from .mirror import ACTIVE_STATUSES, AppRegistration, RegistrationStatus, StatusChange
from .runs import PendingRefresh, SyncRun, WebhookDelivery

__all__ = [
    "ACTIVE_STATUSES",
    "AppRegistration",
    "PendingRefresh",
    "RegistrationStatus",
    "StatusChange",
    "SyncRun",
    "WebhookDelivery",
]
