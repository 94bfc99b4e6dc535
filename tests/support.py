"""Helpers shared by the tests: mirror assertions and bounded polling."""

import time

from registrations.mapping import parse_timestamp
from registrations.models import AppRegistration


def assert_mirrors(account, skip=()):
    """Every upstream record (but those in `skip`) is stored once, field for field."""
    stored = {r.verifik_id: r for r in AppRegistration.objects.exclude(verifik_id__in=skip)}
    assert set(stored) == set(account.by_id) - set(skip)
    for record in (r for r in account.records if r["_id"] not in skip):
        row = stored[record["_id"]]
        assert row.removed_upstream_at is None
        assert (row.name, row.email, row.phone, row.country_code) == (
            record["name"],
            record["email"],
            record["phone"],
            record["countryCode"],
        )
        assert (row.status, row.current_step, row.language, row.notes) == (
            record["status"],
            record["currentStep"],
            record["language"],
            record["notes"],
        )
        assert (row.red_flags, row.red_flags_details, row.deleted, row.version) == (
            record["redFlags"],
            record["redFlagsDetails"],
            record["deleted"],
            record["__v"],
        )
        assert row.failed_document_validations == record["failedDocumentValidations"]
        assert row.failed_email_validations == record["failedEmailValidations"]
        assert row.created_at == parse_timestamp(record["createdAt"])
        assert row.updated_at == parse_timestamp(record["updatedAt"])
        assert row.project_id == record["project"] and row.signature_id == record["signature"]


def wait_until(predicate, timeout=30.0, what="the condition", interval=0.05):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)
