"""Partial indexes on (status, -created_at, -id) for the red-flag and failed-validation subsets the list filters,
and the status index with red_flags included.

Any pair of the status, red-flag and failed filters becomes one index range in the list's order, and its capped
count reads only matching entries (docs/DESIGN.md, "Counts and deep pages").
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built without locking out the sync's writes on a large table.
    atomic = False

    dependencies = [
        ("registrations", "0013_sync_partitions"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="appregistration",
            index=models.Index(
                condition=models.Q(("failed_validations_count__gt", 0)),
                fields=["status", "-created_at", "-id"],
                include=("red_flags",),
                name="reg_st_failed_any_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="appregistration",
            index=models.Index(
                condition=models.Q(("failed_email_count__gt", 0)),
                fields=["status", "-created_at", "-id"],
                include=("red_flags",),
                name="reg_st_failed_email_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="appregistration",
            index=models.Index(
                condition=models.Q(("failed_phone_count__gt", 0)),
                fields=["status", "-created_at", "-id"],
                include=("red_flags",),
                name="reg_st_failed_phone_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="appregistration",
            index=models.Index(
                condition=models.Q(("failed_biometric_count__gt", 0)),
                fields=["status", "-created_at", "-id"],
                include=("red_flags",),
                name="reg_st_failed_biometric_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="appregistration",
            index=models.Index(
                condition=models.Q(("failed_document_count__gt", 0)),
                fields=["status", "-created_at", "-id"],
                include=("red_flags",),
                name="reg_st_failed_document_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="appregistration",
            index=models.Index(
                condition=models.Q(("red_flags__gte", 1)),
                fields=["status", "-created_at", "-id"],
                include=("deleted", "removed_upstream_at"),
                name="reg_st_red_flags_1_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="appregistration",
            index=models.Index(
                condition=models.Q(("red_flags__gte", 3)),
                fields=["status", "-created_at", "-id"],
                include=("deleted", "removed_upstream_at"),
                name="reg_st_red_flags_3_idx",
            ),
        ),
        # The status index, now in the list's full order and carrying red_flags: built before the old one goes.
        AddIndexConcurrently(
            model_name="appregistration",
            index=models.Index(
                fields=["status", "-created_at", "-id"], include=("red_flags",), name="reg_status_rf_idx"
            ),
        ),
        RemoveIndexConcurrently(model_name="appregistration", name="reg_status_idx"),
    ]
