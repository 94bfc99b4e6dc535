"""A large account written straight into Postgres with COPY, for the admin scenarios.

The spread follows the simulator's: every status, ~15% with red flags, failed
validations mostly on FAILED and NEEDS_MANUAL_VERIFICATION, four languages,
creation dates over two years, a handful of projects.
"""

import json
import random
from datetime import UTC, datetime, timedelta

from django.db import connection

from registrations.simulator import FIRST, LAST, STATUSES

COLUMNS = [
    "verifik_id", "version", "status", "email", "country_code", "phone", "name", "current_step", "language", "notes",
    "red_flags", "red_flags_details", "failed_email_validations", "failed_phone_validations",
    "failed_biometric_validations", "failed_document_validations", "failed_validations_count", "failed_email_count",
    "failed_phone_count", "failed_biometric_count", "failed_document_count", "deleted", "created_at", "updated_at",
    "project_id", "project_flow_id", "populated", "raw", "listing_hash", "details_pending", "first_synced_at",
    "last_synced_at",
]  # fmt: skip
START = datetime(2024, 1, 1, tzinfo=UTC)
PROJECTS = [f"{n:024x}" for n in range(0xA0, 0xA8)]


def rows(count, seed=5):
    rng = random.Random(seed)
    statuses, weights = [s for s, _ in STATUSES], [w for _, w in STATUSES]
    now = datetime.now(UTC)
    span = (now - START).total_seconds()
    for i in range(count):
        status = rng.choices(statuses, weights)[0]
        troubled = status in ("FAILED", "NEEDS_MANUAL_VERIFICATION")
        red_flags = rng.choice([1, 1, 2, 3, 5]) if rng.random() < (0.5 if troubled else 0.1) else 0
        failed = [
            [
                f"{rng.getrandbits(96):024x}"
                for _ in range(rng.choice([0, 1, 2]) if troubled or rng.random() < 0.05 else 0)
            ]
            for _kind in range(4)
        ]
        created = START + timedelta(seconds=span * i / count)
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        project = PROJECTS[i % len(PROJECTS)]
        yield (
            f"{i:08x}{rng.getrandbits(64):016x}", 0, status, f"person{i}@example{i % 97}.com", "+57",
            f"{rng.randrange(10**9, 10**10)}", name, "Review", rng.choice(["en", "es", "pt", "fr"]),
            "Manual review requested" if rng.random() < 0.1 else None, red_flags,
            json.dumps({"ipCountryMismatch": {"detected": "RU"}} if red_flags else {}),
            *(json.dumps(f) for f in failed), sum(map(len, failed)), *(len(f) for f in failed),
            i % 500 == 0, created, created + timedelta(hours=1), project, project, "{}", "{}", "", False, now, now,
        )  # fmt: skip


def generate(count):
    """Replace the registrations table's content with `count` generated rows; returns seconds taken."""
    start = datetime.now()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE registrations_appregistration, registrations_syncrun RESTART IDENTITY CASCADE")
        with cursor.cursor.copy(f"COPY registrations_appregistration ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows(count):
                copy.write_row(row)
        cursor.execute("ANALYZE registrations_appregistration")
    return (datetime.now() - start).total_seconds()
