"""A large account written straight into Postgres with COPY, for the admin scenarios.

The spread follows the simulator's: every status, ~15% with red flags, failed
validations mostly on FAILED and NEEDS_MANUAL_VERIFICATION, four languages,
creation dates over two years, a handful of projects. Each registration was
first synced five minutes after Verifik created it.

`generate_review` adds the review desk's data in SQL: a first sight for every
registration and the move into NEEDS_MANUAL_VERIFICATION for each of those in it,
decisions on registrations that needed review (a few of them changed since),
assignments and comments. Choices are deterministic (hashes of the id).
"""

import json
import random
from datetime import UTC, datetime, timedelta

from django.db import connection

from registrations.simulated_data import FIRST, LAST, STATUSES

from .harness import owner_truncate

COLUMNS = [
    "verifik_id", "version", "status", "email", "country_code", "phone", "name", "current_step", "language", "notes",
    "red_flags", "red_flags_details", "failed_email_validations", "failed_phone_validations",
    "failed_biometric_validations", "failed_document_validations", "failed_validations_count", "failed_email_count",
    "failed_phone_count", "failed_biometric_count", "failed_document_count", "deleted", "created_at", "updated_at",
    "project_id", "project_flow_id", "populated", "raw", "listing_hash", "details_pending", "first_synced_at",
    "last_synced_at", "detail_hash", "details_failures", "details_error",
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
            i % 500 == 0, created, created + timedelta(hours=1), project, project, "{}", "{}", "", False,
            min(created + timedelta(minutes=5), now), now, "", 0, "",
        )  # fmt: skip


def generate(count):
    """Replace the registrations table's content with `count` generated rows; returns seconds taken."""
    start = datetime.now()
    owner_truncate("TRUNCATE registrations_appregistration, registrations_syncrun RESTART IDENTITY CASCADE")
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY registrations_appregistration ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows(count):
                copy.write_row(row)
        cursor.execute("ANALYZE registrations_appregistration")
    return (datetime.now() - start).total_seconds()


REVIEWERS = [f"bench-reviewer-{n}" for n in range(6)]

# Registrations the review rules send to a person (with the default threshold of 3 red flags).
NEEDS_REVIEW_SQL = """
    (status = 'NEEDS_MANUAL_VERIFICATION' OR red_flags >= 3 OR failed_biometric_count > 0 OR failed_document_count > 0)
    AND status <> 'EXPIRED' AND deleted IS NOT TRUE AND removed_upstream_at IS NULL
"""

REVIEW_SQL = [
    # A first sight for every registration; those now in NEEDS_MANUAL_VERIFICATION were first seen ONGOING...
    """
    INSERT INTO registrations_statuschange
        (registration_id, from_status, to_status, from_step, to_step, upstream_updated_at, observed_at)
    SELECT id, NULL, CASE WHEN status = 'NEEDS_MANUAL_VERIFICATION' THEN 'ONGOING' ELSE status END,
           NULL, current_step, created_at, first_synced_at
    FROM registrations_appregistration ORDER BY id
    """,
    # ... and moved into it between one hour and four days later (never after now).
    """
    INSERT INTO registrations_statuschange
        (registration_id, from_status, to_status, from_step, to_step, upstream_updated_at, observed_at)
    SELECT id, 'ONGOING', status, current_step, current_step, updated_at,
           LEAST(now() - interval '1 minute', first_synced_at + ((id * 7919) % 96 + 1) * interval '1 hour')
    FROM registrations_appregistration WHERE status = 'NEEDS_MANUAL_VERIFICATION' ORDER BY id
    """,
    # Decisions on registrations that needed review, from when each entered the queue.
    """
    CREATE TEMP TABLE bench_decided AS
    SELECT r.id, r.red_flags, r.updated_at, e.entered
    FROM registrations_appregistration r
    CROSS JOIN LATERAL (
        SELECT observed_at AS entered FROM registrations_statuschange s
        WHERE s.registration_id = r.id ORDER BY observed_at DESC, id DESC LIMIT 1
    ) e
    WHERE {needs_review}
    ORDER BY md5(r.id::text) LIMIT %(decisions)s
    """,
    """
    INSERT INTO registrations_reviewdecision
        (registration_id, outcome, reason, reviewer_id, decided_at, upstream_updated_at, entered_queue_at,
         confirmed_by_id, confirmed_at)
    SELECT d.id, o.outcome,
           CASE WHEN o.outcome = 'approved' THEN '' ELSE 'Document photo does not match the selfie' END,
           (%(reviewers)s::bigint[])[1 + d.id %% 6],
           o.decided_at,
           -- one in 33 changed at Verifik after the decision: the version decided on is older than the row
           CASE WHEN d.id %% 33 = 0 THEN d.updated_at - interval '1 day' ELSE d.updated_at END,
           d.entered,
           CASE WHEN o.confirmed THEN (%(reviewers)s::bigint[])[1 + (d.id + 1) %% 6] END,
           CASE WHEN o.confirmed THEN o.decided_at + interval '2 hours' END
    FROM bench_decided d
    CROSS JOIN LATERAL (
        SELECT CASE WHEN d.id %% 100 < 55 THEN 'approved' WHEN d.id %% 100 < 85 THEN 'rejected'
                    WHEN d.id %% 100 < 93 THEN 'escalated' ELSE 'info_requested' END AS outcome,
               LEAST(now() - interval '1 minute', d.entered + ((d.id * 31) %% 96 + 1) * interval '1 hour')
                   AS decided_at,
               d.red_flags >= 3 AND d.id %% 100 < 55 AND d.id %% 2 = 0 AS confirmed
    ) o
    ORDER BY o.decided_at
    """,
    """
    INSERT INTO registrations_reviewstate
        (registration_id, decision_id, outcome, decided_at, decision_version, confirmed_at, changed_at)
    SELECT d.registration_id, d.id, d.outcome, d.decided_at, d.upstream_updated_at, d.confirmed_at,
           CASE WHEN r.updated_at > d.upstream_updated_at THEN r.updated_at END
    FROM registrations_reviewdecision d JOIN registrations_appregistration r ON r.id = d.registration_id
    """,
    # The review desk has compared every version written so far (review.check_versions).
    "INSERT INTO registrations_reviewcheckpoint (name, reached) VALUES ('versions', now())",
    # A few hundred registrations still in the queue are being worked on.
    """
    CREATE TEMP TABLE bench_assigned AS
    SELECT r.id FROM registrations_appregistration r
    WHERE {needs_review} AND NOT EXISTS (SELECT 1 FROM registrations_reviewstate s WHERE s.registration_id = r.id)
    ORDER BY md5(r.id::text || 'a') LIMIT 600
    """,
    """
    INSERT INTO registrations_reviewassignment (registration_id, assignee_id, assigned_by_id, assigned_at)
    SELECT id, (%(reviewers)s::bigint[])[1 + id %% 6], (%(reviewers)s::bigint[])[1 + id %% 6], now() - interval '1 hour'
    FROM bench_assigned
    """,
    """
    INSERT INTO registrations_reviewstate (registration_id, assignee_id, assigned_at)
    SELECT registration_id, assignee_id, assigned_at FROM registrations_reviewassignment
    """,
    # Reviewers' comments on one decided registration in five.
    """
    INSERT INTO registrations_reviewcomment (registration_id, author_id, text, created_at)
    SELECT registration_id, reviewer_id, 'Checked the document against the selfie; see the decision.',
           decided_at - interval '10 minutes'
    FROM registrations_reviewdecision WHERE registration_id % 5 = 0
    """,
]
REVIEW_TABLES = [
    "registrations_reviewcheckpoint",
    "registrations_statuschange",
    "registrations_reviewdecision",
    "registrations_reviewstate",
    "registrations_reviewassignment",
    "registrations_reviewcomment",
]


def generate_review(decisions):
    """Write the review desk's data for the generated registrations; returns seconds taken."""
    from django.contrib.auth.models import User

    start = datetime.now()
    reviewers = [User.objects.get_or_create(username=name, defaults={"is_staff": True})[0].pk for name in REVIEWERS]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(REVIEW_TABLES)} RESTART IDENTITY")
        for statement in REVIEW_SQL:
            sql = statement.format(needs_review=NEEDS_REVIEW_SQL)
            cursor.execute(sql, {"decisions": decisions, "reviewers": reviewers} if "%(" in sql else None)
        cursor.execute("DROP TABLE bench_decided, bench_assigned")
        for table in REVIEW_TABLES:
            cursor.execute(f"ANALYZE {table}")
    return (datetime.now() - start).total_seconds()


AUDIT_ACTIONS = ["view", "view", "view", "view", "view", "reveal", "decide", "assign", "comment", "refresh", "export"]


def generate_audit(events):
    """Replace the audit trail with a chain of `events` events over the generated registrations (views mostly,
    by the review desk's reviewers, one a second back from now), hashed here as `audit_chain` hashes them and
    written with COPY, the chain's head set after; returns seconds taken."""
    from django.contrib.auth.models import User

    from registrations import audit_chain

    start = datetime.now()
    actors = [User.objects.get_or_create(username=name, defaults={"is_staff": True})[0].pk for name in REVIEWERS]
    owner_truncate("TRUNCATE registrations_auditevent RESTART IDENTITY")
    secret = audit_chain.key()
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), count(*) FROM registrations_appregistration")
        first, count = cursor.fetchone()
        # Details as Postgres prints jsonb back: the text the chain hashes.
        cursor.execute("SELECT '{}'::jsonb::text, %s::jsonb::text", [json.dumps({"reason": "Fraud check"})])
        plain, reason = cursor.fetchone()
        now = datetime.now(UTC).replace(microsecond=0)
        previous = audit_chain.GENESIS
        columns = "id, action, actor_id, registration_id, at, ip, details, chain_hash"
        with cursor.cursor.copy(f"COPY registrations_auditevent ({columns}) FROM STDIN") as copy:
            for pk in range(1, events + 1):
                i = events + 1 - pk  # seconds back from now: the oldest first
                action, actor = AUDIT_ACTIONS[i % len(AUDIT_ACTIONS)], actors[i % len(actors)]
                registration = first + (i * 7919) % count if count else None
                at, details = now - timedelta(seconds=i), reason if i % 11 == 5 else plain
                text = audit_chain.message(pk, at, actor, action, registration, "10.0.0.1", details)
                previous = audit_chain.link(secret, previous, text)
                copy.write_row((pk, action, actor, registration, at, "10.0.0.1", details, previous))
        cursor.execute("SELECT setval(pg_get_serial_sequence('registrations_auditevent', 'id'), %s)", [max(events, 1)])
        cursor.execute(
            "INSERT INTO registrations_auditchainhead (id, events, last_event_id, last_hash, mac) "
            "VALUES (%s, %s, %s, %s, %s)",
            [
                audit_chain.HEAD_ID,
                events,
                events or None,
                previous,
                audit_chain.head_mac(secret, events, events or None, previous),
            ],
        )
        cursor.execute("VACUUM ANALYZE registrations_auditevent")
    return (datetime.now() - start).total_seconds()
