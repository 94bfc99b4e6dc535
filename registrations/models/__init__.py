"""Models, one module per concern: the mirror and its history; the sync's own records; the review desk's data;
the audit trail."""

from .audit import AppendOnly, AuditAction, AuditChainHead, AuditEvent
from .mirror import ACTIVE_STATUSES, AppRegistration, RegistrationStatus, StatusChange, failed_q, red_flags_q
from .review import (
    COMMENT_MAX_LENGTH,
    REASON_REQUIRED,
    REQUEUEING_OUTCOMES,
    Dashboard,
    ReviewAssignment,
    ReviewCheckpoint,
    ReviewComment,
    ReviewDecision,
    ReviewOutcome,
    ReviewQueue,
    ReviewState,
)
from .runs import LISTING_KINDS, PendingRefresh, SyncRun, WebhookDelivery

__all__ = [
    "ACTIVE_STATUSES",
    "COMMENT_MAX_LENGTH",
    "REASON_REQUIRED",
    "REQUEUEING_OUTCOMES",
    "AppendOnly",
    "AppRegistration",
    "AuditAction",
    "AuditChainHead",
    "AuditEvent",
    "Dashboard",
    "LISTING_KINDS",
    "PendingRefresh",
    "RegistrationStatus",
    "ReviewAssignment",
    "ReviewCheckpoint",
    "ReviewComment",
    "ReviewDecision",
    "ReviewOutcome",
    "ReviewQueue",
    "ReviewState",
    "StatusChange",
    "SyncRun",
    "WebhookDelivery",
    "failed_q",
    "red_flags_q",
]
