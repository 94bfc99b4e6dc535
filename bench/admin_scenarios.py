"""Scenario 6: the admin at a large account, against a stock ModelAdmin on the same data.
Scenario 7: the review desk. Scenario 10: the audit trail (the write on a detail view, the audit list)."""

import re
import statistics
import time
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from registrations import audit
from registrations.admin import registrations as registrations_admin
from registrations.models import AppRegistration, AuditEvent, ReviewDecision

from .generate import generate, generate_audit, generate_review

TABLE = "registrations_appregistration"


def logged_in(user):
    """A client with a session as the login form leaves it, second factor passed (django_otp.login():
    the device's id in the session), so each request pays the device lookup production pays."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    device = device or TOTPDevice.objects.create(user=user, name="bench", confirmed=True)
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def views():
    """(name, our URL, stock URL) for every view the targets name."""
    sample = AppRegistration.objects.order_by("-failed_validations_count").first()
    month = AppRegistration.objects.order_by("created_at").values_list("created_at", flat=True)[
        AppRegistration.objects.count() // 2
    ]
    email_fragment = "person12345@"
    ours, stock = "/admin/registrations/appregistration/", "/stock/registrations/appregistration/"
    return [
        ("default list", ours, stock),
        ("status = FAILED", ours + "?status=FAILED", stock + "?status__exact=FAILED"),
        ("red flags >= 1", ours + "?red_flags=1", stock + "?red_flags__gte=1"),
        ("failed document validations", ours + "?failed=document", stock + "?failed_document_count__gt=0"),
        ("status + red flags", ours + "?status=FAILED&red_flags=1", stock + "?status__exact=FAILED&red_flags__gte=1"),
        (
            "date hierarchy month",
            ours + f"?created_at__year={month.year}&created_at__month={month.month}",
            stock + f"?created_at__year={month.year}&created_at__month={month.month}",
        ),
        ("search email fragment", ours + f"?q={email_fragment}", stock + f"?q={email_fragment}"),
        ("search exact id", ours + f"?q={sample.verifik_id}", stock + f"?q={sample.verifik_id}"),
        # Column 0 is the action checkbox; ours sorts red flags by "Why it's here", stock by "Red flags".
        ("sort by red flags", ours + "?o=-2", stock + "?o=-6"),
        ("detail, many failed validations", ours + f"{sample.pk}/change/", stock + f"{sample.pk}/change/"),
    ]


TRANSACTION = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def measure(client, url, reps):
    client.get(url)  # warm caches and connections
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    # Statements, not transaction control: the idle-session save of every request (SESSION_SAVE_EVERY_REQUEST)
    # is one UPDATE, wrapped in BEGIN and COMMIT.
    return statistics.median(samples), [q for q in queries.captured_queries if not q["sql"].startswith(TRANSACTION)]


def seq_scans(sql):
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return f"Seq Scan on {TABLE}" in plan, plan


def admin_at_scale(count, reps, stock_reps):
    generate_seconds = None
    if AppRegistration.objects.count() != count:
        generate_seconds = generate(count)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLE}")  # the steady state autovacuum keeps: visibility map set
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="bench")
    client = logged_in(user)
    rows = []
    with override_settings(ROOT_URLCONF="bench.urls", DEBUG=False):
        for name, ours, stock in views():
            ours_median, ours_queries = measure(client, ours, reps)
            stock_median, stock_queries = measure(client, stock, stock_reps)
            measured = [q for q in ours_queries if not q["sql"].startswith(("EXPLAIN", "SET "))]
            slowest = max(measured, key=lambda q: float(q["time"]))
            scans = [q["sql"] for q in measured if seq_scans(q["sql"])[0]]
            rows.append(
                {
                    "view": name,
                    "ms": ours_median * 1000,
                    "queries": len(ours_queries),
                    "stock_ms": stock_median * 1000,
                    "stock_queries": len(stock_queries),
                    "speedup": stock_median / ours_median,
                    "full_scans": len(scans),
                    "slowest_sql": slowest["sql"],
                }
            )
    for row in sorted(rows, key=lambda r: r["ms"], reverse=True)[:3]:
        row["plan"] = seq_scans(row["slowest_sql"])[1]
    return {"count": count, "generate_seconds": generate_seconds, "views": rows}


def review_views():
    """(name, URL) for the review desk's targets: the queue views, a registration's page, the dashboard."""
    ours = "/admin/registrations/appregistration/"
    decided = ReviewDecision.objects.filter(outcome="escalated").order_by("-decided_at").first()
    return [
        ("needs review queue", ours + "?queue=needs_review"),
        ("queue=overdue", ours + "?queue=overdue"),
        ("decision=changed_since", ours + "?decision=changed_since"),
        ("detail with review history", ours + f"{decided.registration_id}/change/"),
        ("dashboard", "/admin/registrations/dashboard/"),
    ]


def review_desk_at_scale(count, decisions, reps):
    """The review desk on the generated account: `decisions` decisions and a status history for every row."""
    generate_seconds = None
    if AppRegistration.objects.count() != count:
        generate_seconds = generate(count)
    if ReviewDecision.objects.count() != decisions:
        generate_seconds = (generate_seconds or 0) + generate_review(decisions)
    with connection.cursor() as cursor:
        for table in ("registrations_appregistration", "registrations_statuschange", "registrations_reviewstate"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("SELECT count(*) FROM registrations_statuschange")
        status_changes = cursor.fetchone()[0]
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="bench")
    client = logged_in(user)
    rows = []
    with override_settings(ROOT_URLCONF="bench.urls", DEBUG=False):
        for name, url in review_views():
            median, queries = measure(client, url, reps)
            measured = [q for q in queries if not q["sql"].startswith(("EXPLAIN", "SET "))]
            slowest = max(measured, key=lambda q: float(q["time"]))
            scans = [q["sql"] for q in measured if seq_scans(q["sql"])[0]]
            rows.append(
                {
                    "view": name,
                    "ms": median * 1000,
                    "queries": len(queries),
                    "full_scans": len(scans),
                    "slowest_sql": slowest["sql"],
                    "slowest_ms": float(slowest["time"]) * 1000,
                    "plan": seq_scans(slowest["sql"])[1],
                }
            )
    return {
        "count": count,
        "decisions": decisions,
        "status_changes": status_changes,
        "generate_seconds": generate_seconds,
        "views": rows,
    }


def privacy_at_scale(count, reps, export_rows):
    """Scenario 11: masking's cost (an analyst's pages against a reviewer's) and an export's peak memory.

    Both users see the same rows; the analyst's are masked and need one more query (their
    open reveals), the reviewer's list one more too (its `list` audit event: it shows people).
    The export runs in a fresh process (bench/export_memory.py) over the HTTP view, for a filter
    matching about `export_rows` rows and one matching a tenth of that:
    flat memory means both peaks are about the same.
    """
    generate_seconds = None
    if AppRegistration.objects.count() != count:
        generate_seconds = generate(count)
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {TABLE}")
    from django.contrib.auth.models import Group

    users = {}
    for username, group in (("bench-reviewer", "Registration reviewers"), ("bench-analyst", "Registration analysts")):
        user = User.objects.filter(username=username).first() or User.objects.create_user(
            username, password="bench", is_staff=True
        )
        user.groups.add(Group.objects.get(name=group))
        users[username] = user
    sample = AppRegistration.objects.order_by("-created_at", "-id").first()
    ours = "/admin/registrations/appregistration/"
    pages = [
        ("default list", ours),
        ("search email fragment", ours + "?q=person12345@"),
        ("detail", f"{ours}{sample.pk}/change/"),
    ]
    clients = {}
    for username, user in users.items():
        clients[username] = logged_in(user)
    rows = []
    with override_settings(ROOT_URLCONF="bench.urls", DEBUG=False):
        for name, url in pages:
            samples = {username: [] for username in clients}
            queries = {}
            for username, client in clients.items():
                queries[username] = len(measure(client, url, 1)[1])
            for rep in range(reps):
                # Interleaved, the order alternating, so both users' requests meet the same load.
                for username, client in list(clients.items())[:: 1 if rep % 2 == 0 else -1]:
                    start = time.perf_counter()
                    response = client.get(url)
                    samples[username].append(time.perf_counter() - start)
                    assert response.status_code == 200, (url, response.status_code)
            reviewer, analyst = (statistics.median(samples[u]) for u in ("bench-reviewer", "bench-analyst"))
            paired = [a / r for a, r in zip(samples["bench-analyst"], samples["bench-reviewer"], strict=True)]
            rows.append(
                {
                    "view": name,
                    "reviewer_ms": reviewer * 1000,
                    "analyst_ms": analyst * 1000,
                    "ratio": analyst / reviewer,
                    "paired_ratio": statistics.median(paired),
                    "samples": reps,
                    "reviewer_queries": queries["bench-reviewer"],
                    "analyst_queries": queries["bench-analyst"],
                }
            )
    exports = [export_memory(query, n) for query, n in export_filters(export_rows)]
    return {"count": count, "generate_seconds": generate_seconds, "views": rows, "exports": exports}


def export_filters(target):
    """Query strings of the list whose matches come closest to `target` rows and to a tenth of it."""
    from django.db.models import Count

    combos = list(AppRegistration.objects.values("status", "language").annotate(n=Count("id")))
    singles = list(AppRegistration.objects.values("status").annotate(n=Count("id")))
    candidates = [(f"?status={c['status']}&language={c['language']}", c["n"]) for c in combos]
    candidates += [(f"?status={c['status']}", c["n"]) for c in singles]
    candidates.append(("", AppRegistration.objects.count()))
    return [min(candidates, key=lambda c: abs(c[1] - goal)) for goal in (target // 10, target)]


def export_memory(query, rows):
    """One export in a fresh process: its peak RSS, its RSS before the export, rows, bytes and seconds."""
    import json
    import subprocess
    import sys

    from .harness import ROOT

    out = subprocess.run(
        [sys.executable, "-m", "bench.export_memory", query],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {"query": query, "expected_rows": rows, **json.loads(out.strip().splitlines()[-1])}


def audit_views(registration):
    ours = "/admin/registrations/auditevent/"
    latest = AuditEvent.objects.order_by("-at").values_list("at", flat=True).first()
    reviewer = AuditEvent.objects.filter(actor__isnull=False).values_list("actor_id", flat=True).first()
    return [
        ("audit list", ours),
        ("action = reveal", ours + "?action=reveal"),
        ("actor", ours + f"?actor__id__exact={reviewer}"),
        ("date drill-down, a day", ours + f"?at__year={latest.year}&at__month={latest.month}&at__day={latest.day}"),
        ("past 7 days", ours + f"?at__gte={(latest - timedelta(days=7)).date().isoformat()}"),
        ("search a registration", ours + f"?q={registration.verifik_id}"),
    ]


class _NoAudit:
    """The admin's audit module with `record` a no-op: the detail view as it was before the audit trail."""

    def __getattr__(self, name):
        return getattr(audit, name)

    @staticmethod
    def record(*args, **kwargs):
        return None


def _plain_inserts(user, registration, n):
    """The same event as a plain committed INSERT, without the chain, into a copy of the audit table (its
    columns and indexes, no trigger): what the write cost before the chain, measured alongside."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_audit_plain")
        cursor.execute("CREATE TABLE bench_audit_plain (LIKE registrations_auditevent INCLUDING ALL)")
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            cursor.execute(
                "INSERT INTO bench_audit_plain (id, action, actor_id, registration_id, at, details, chain_hash) "
                "VALUES (nextval(pg_get_serial_sequence('registrations_auditevent', 'id')), 'view', %s, %s, now(), "
                "'{}', %s)",
                [user.pk, registration.pk, bytes(32)],
            )
            samples.append(time.perf_counter() - start)
        cursor.execute("DROP TABLE bench_audit_plain")
    return samples


def audit_at_scale(count, events, reps):
    """The detail view with and without its audit write, interleaved, at `events` audit events; the audit list."""
    generate_seconds = None
    if AppRegistration.objects.count() != count:
        generate_seconds = generate(count)
    if AuditEvent.objects.count() < events:
        generate_seconds = (generate_seconds or 0) + generate_audit(events)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE registrations_appregistration")
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="bench")
    client = logged_in(user)
    sample = AppRegistration.objects.order_by("-failed_validations_count").first()
    detail = f"/admin/registrations/appregistration/{sample.pk}/change/"
    with_audit, without_audit, inserts = [], [], []
    with override_settings(ROOT_URLCONF="bench.urls", DEBUG=False):
        client.get(detail)
        for n in range(reps * 6):
            pair = [(with_audit, audit), (without_audit, _NoAudit())]
            for samples, module in pair if n % 2 else pair[::-1]:  # alternate which goes first
                registrations_admin.audit = module
                try:
                    start = time.perf_counter()
                    assert client.get(detail).status_code == 200
                    samples.append(time.perf_counter() - start)
                finally:
                    registrations_admin.audit = audit
        plain = _plain_inserts(user, sample, reps * 10)
        for _ in range(reps * 10):  # the write alone, as the view makes it
            start = time.perf_counter()
            audit.record("view", actor=user, registration=sample)
            inserts.append(time.perf_counter() - start)
        rows = []
        for name, url in audit_views(sample):
            median, queries = measure(client, url, reps)
            measured = [q for q in queries if not q["sql"].startswith("EXPLAIN")]  # the planner's estimates
            slowest = max(measured, key=lambda q: float(q["time"]))
            scans = [q["sql"] for q in measured if "Seq Scan on registrations_auditevent" in seq_scans(q["sql"])[1]]
            rows.append(
                {
                    "view": name,
                    "ms": median * 1000,
                    "queries": len(queries),
                    "full_scans": len(scans),
                    "slowest_ms": float(slowest["time"]) * 1000,
                    "plan": seq_scans(slowest["sql"])[1],
                }
            )
    detail_with, detail_without = statistics.median(with_audit) * 1000, statistics.median(without_audit) * 1000
    return {
        "count": count,
        "events": AuditEvent.objects.count(),
        "generate_seconds": generate_seconds,
        "detail_ms_with_audit": detail_with,
        "detail_ms_without_audit": detail_without,
        "audit_adds_ms": detail_with - detail_without,
        # Each "with" sample against its "without" neighbour (taken just before or after): less exposed to drift.
        "audit_adds_ms_paired": statistics.median(w - wo for w, wo in zip(with_audit, without_audit, strict=True))
        * 1000,
        "insert_ms_median": statistics.median(inserts) * 1000,
        "plain_insert_ms_median": statistics.median(plain) * 1000,
        "samples": len(with_audit),
        "views": rows,
    }


# --- issue #13: every filter and filter pair, and deep pages ------------------------------------

FILTER_TARGET_MS = 150


def filter_views(count, per_page=50):
    """(name, URL) for every single filter of status, red flags and failed validations, every pair of
    them, and the deep pages (the deepest listed, page 10,000 and the last of the whole table)."""
    from registrations.admin.filters import FailedValidationsFilter, RedFlagsFilter
    from registrations.models import RegistrationStatus
    from registrations.selectors import COUNT_CAP

    ours = "/admin/registrations/appregistration/"
    statuses = [("status", s.value) for s in RegistrationStatus]
    red_flags = [("red_flags", v) for v in RedFlagsFilter.options]
    failed = [("failed", v) for v in FailedValidationsFilter.options]
    singles = [[choice] for choice in statuses + red_flags + failed]
    pairs = [
        [a, b]
        for group_a, group_b in ((statuses, red_flags), (statuses, failed), (red_flags, failed))
        for a in group_a
        for b in group_b
    ]
    views = [(" & ".join(f"{k}={v}" for k, v in combo), ours + "?" + "&".join(f"{k}={v}" for k, v in combo))
             for combo in singles + pairs]  # fmt: skip
    deepest = COUNT_CAP // per_page
    last = -(-count // per_page)
    completed = AppRegistration.objects.filter(status="COMPLETED")[: COUNT_CAP + 1].count()
    completed_page = min(deepest, -(-completed // per_page))
    views += [
        (f"page {deepest} (deepest listed)", ours + f"?p={deepest}"),
        ("page 10000", ours + "?p=10000"),
        (f"page {last} (last)", ours + f"?p={last}"),
        (f"status=COMPLETED page {completed_page}", ours + f"?status=COMPLETED&p={completed_page}"),
        (f"needs review queue page {deepest}", ours + f"?queue=needs_review&p={deepest}"),
        ("needs review queue page 10000", ours + "?queue=needs_review&p=10000"),
    ]
    if completed > COUNT_CAP:  # a smaller list's page 10,000 is an invalid page, as in Django
        views.append(("status=COMPLETED page 10000", ours + "?status=COMPLETED&p=10000"))
    return views


def filters_at_scale(count, reps):
    """Scenario 12: every filter and pair of the status, red-flags and failed-validation filters, and deep pages."""
    if AppRegistration.objects.count() != count:
        generate(count)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="bench")
    client = logged_in(user)
    rows = []
    with override_settings(ROOT_URLCONF="bench.urls", DEBUG=False):
        for name, url in filter_views(count):
            median, queries = measure(client, url, reps)
            html = client.get(url).content.decode()
            shown = re.search(r'<span class="vf-count">([^<]*?) registrations?</span>', html)
            measured = [q for q in queries if not q["sql"].startswith(("EXPLAIN", "SET "))]
            slowest = max(measured, key=lambda q: float(q["time"]))
            rows.append(
                {
                    "view": name,
                    "url": url,
                    "ms": median * 1000,
                    "queries": len(queries),
                    "shown": shown.group(1) if shown else "?",
                    "rows": html.count('<input type="checkbox" name="_selected_action"'),
                    "refused": "Only the first" in html,
                    "slowest_ms": float(slowest["time"]) * 1000,
                    "slowest_sql": slowest["sql"],
                    "met": median * 1000 <= FILTER_TARGET_MS,
                }
            )
    return {"count": count, "target_ms": FILTER_TARGET_MS, "views": rows}
