from .audit import AuditEventAdmin
from .dashboard import DashboardAdmin, ReviewQueueAdmin
from .registrations import AppRegistrationAdmin
from .sync_runs import SyncRunAdmin
from .webhook_deliveries import WebhookDeliveryAdmin

__all__ = [
    "AppRegistrationAdmin",
    "AuditEventAdmin",
    "DashboardAdmin",
    "ReviewQueueAdmin",
    "SyncRunAdmin",
    "WebhookDeliveryAdmin",
]
