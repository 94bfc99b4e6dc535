"""Scenario 6: the admin at a large account, against a stock ModelAdmin on the same data."""

import re
import statistics
import time

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from registrations.models import AppRegistration, ReviewDecision

from .generate import generate, generate_review

TABLE = "registrations_appregistration"


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
    return statistics.median(samples), list(queries.captured_queries)


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
    client = Client()
    client.force_login(user)
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
    client = Client()
    client.force_login(user)
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
    """Scenario 8: every filter and pair of the status, red-flags and failed-validation filters, and deep pages."""
    if AppRegistration.objects.count() != count:
        generate(count)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="bench")
    client = Client()
    client.force_login(user)
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
