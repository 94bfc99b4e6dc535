"""`make bench`: every scenario, printed as tables and saved to bench/results/latest.json.

python -m bench.run            full sizes (100,000 registrations synced, 1,000,000 in the admin)
python -m bench.run --quick    small sizes, a smoke run that keeps the scripts working
"""

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from .harness import RESULTS, UNBOUND_API_RATE, configure, print_table

SIZES = {
    "quick": {
        "count": 2_000,
        "naive_rows": 300,
        "reps": 1,
        "memory": (500, 2_000),
        "details": 200,
        "resync": 1_000,
        "split": (3_000, 5),
        "admin": 20_000,
        "admin_reps": 3,
        "decisions": 2_000,
        "export_rows": 10_000,
        "audit_events": 20_000,
        "chain_events": 20_000,
        "chain_reps": 1,
        "budget_seconds": 10,
        "health_seconds": 5,
        "freshness": {"count": 2_000, "seconds": 30, "every": 3, "cases": ["none"], "full_page_seconds": 0.3},
    },
    "full": {
        "count": 100_000,
        "naive_rows": 10_000,
        "reps": 3,
        "memory": (10_000, 100_000),
        "details": 2_000,
        "resync": 20_000,
        "split": (100_000, 100),
        "admin": 1_000_000,
        "admin_reps": 7,
        "decisions": 100_000,
        "export_rows": 100_000,
        "audit_events": 1_000_000,
        "chain_events": 1_000_000,
        "chain_reps": 3,
        "budget_seconds": 30,
        "health_seconds": 10,
        "freshness": {"count": 3_000, "seconds": 90, "every": 3, "cases": None, "full_page_seconds": 1.5},
    },
}

# Every scenario `make bench` runs, in order; `--only` picks some.
SCENARIOS = [
    "sync",
    "resync",
    "memory",
    "details",
    "split",
    "admin",
    "audit",
    "chain",
    "budget",
    "privacy",
    "filters",
    "health",
    "freshness",
]


def ensure_database():
    import psycopg

    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/verifik_bench")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def machine():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    with open("/proc/meminfo") as meminfo:
        memory_kb = int(meminfo.read().split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "postgres": postgres,
        "python": platform.python_version(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, help="run only these")
    parser.add_argument("--output", default=str(RESULTS / "latest.json"), help="where the JSON report goes")
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    ensure_database()
    configure()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from . import admin_scenarios, audit_chain, budget, freshness, health_load, sync_scenarios

    only = set(args.only or SCENARIOS)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every scenario, so an interrupted run keeps what it measured
        output.write_text(json.dumps(results, indent=2, default=str))

    results = {
        "started": datetime.now(UTC).isoformat(),
        "size": "quick" if args.quick else "full",
        "machine": machine(),
        "sizes": size,
    }
    if "sync" in only:
        results["sync"] = sync_scenarios.cold_sync(size["count"], size["naive_rows"], size["reps"])
        report_sync(results["sync"])
        save()
    if "resync" in only:
        results["resync"] = sync_scenarios.resync_speedup(size["resync"], size["reps"])
        r = results["resync"]
        print_table(
            f"2b. Cold and no-op re-sync at {r['count']}",
            ["cold s", "no-op s", "faster than cold"],
            [
                [
                    f"{r['cold']['median']:.2f}",
                    f"{r['noop']['median']:.2f}",
                    f"{r['speedup_over_cold']:.1f}x (target >= 4)",
                ]
            ],
        )
        save()
    if "split" in only:
        count, pages = size["split"]
        results["split"] = sync_scenarios.split_full_sync(count, 0.02, 4, pages)
        r = results["split"]
        print_table(
            f"8. Full sync of {r['count']} across Celery workers, {r['latency'] * 1000:.0f} ms per request",
            ["workers", "mode", "partitions", "cold s", "cores busy", "no-op s", "cores busy"],
            [
                [
                    x["workers"],
                    x["mode"],
                    x["partitions"],
                    f"{x['cold']:.1f}",
                    f"{x['cold_cpu_busy']:.0%}",
                    f"{x['noop']:.1f}",
                    f"{x['noop_cpu_busy']:.0%}",
                ]
                for x in r["runs"]
            ],
        )
        allow = r["cores_allow"]
        print(f"   4 vs 1: cold {r['speedup']['cold']:.1f}x, no-op {r['speedup']['noop']:.1f}x (target >= 3)")
        cores = f"   {r['cores']} cores allow the split runs' CPU work"
        print(f"{cores}: cold {allow['cold']:.1f}x, no-op {allow['noop']:.1f}x")
        save()
    if "memory" in only:
        results["memory"] = sync_scenarios.memory(*size["memory"])
        m = results["memory"]
        print_table(
            "4. Peak RSS of a cold sync",
            ["registrations", "peak RSS (MB)"],
            [[k, f"{v / 1024:.0f}"] for k, v in m["peak_rss_kb"].items()],
        )
        print(f"   ratio {m['ratio']:.2f} (target <= 1.1)")
        save()
    if "details" in only:
        setups = [(1, UNBOUND_API_RATE), (4, UNBOUND_API_RATE), (8, UNBOUND_API_RATE), (4, "10")]
        results["details"] = sync_scenarios.detail_fetches(size["details"], 0.02, setups)
        d = results["details"]
        print_table(
            f"5. Detail fetches, {d['count']} registrations, 20 ms per request",
            ["mode", "per second", "seconds"],
            [[r["mode"], f"{r['rate']:.0f}", f"{r['seconds']:.1f}"] for r in d["runs"]],
        )
        save()
    if "admin" in only:
        results["admin"] = admin_scenarios.admin_at_scale(
            size["admin"], size["admin_reps"], max(3, size["admin_reps"] // 2)
        )
        report_admin(results["admin"])
        save()
        results["review"] = admin_scenarios.review_desk_at_scale(size["admin"], size["decisions"], size["admin_reps"])
        report_review(results["review"])
        save()
    if "audit" in only:
        results["audit"] = admin_scenarios.audit_at_scale(size["admin"], size["audit_events"], size["admin_reps"])
        report_audit(results["audit"])
        save()
    if "chain" in only:
        results["chain"] = audit_chain.chain_at_scale(size["chain_events"], size["chain_reps"])
        report_chain(results["chain"])
        save()
    if "budget" in only:
        results["budget"] = budget.budget_trace(seconds=size["budget_seconds"])
        report_budget(results["budget"])
        save()
    if "privacy" in only:
        results["privacy"] = admin_scenarios.privacy_at_scale(
            size["admin"], 4 * size["admin_reps"], size["export_rows"]
        )
        report_privacy(results["privacy"])
    if "filters" in only:
        results["filters"] = admin_scenarios.filters_at_scale(size["admin"], size["admin_reps"])
        report_filters(results["filters"])
        save()
    if "health" in only:
        results["health"] = health_load.health_under_load(seconds=size["health_seconds"])
        report_health(results["health"])
        save()
    if "freshness" in only:
        f = size["freshness"]
        results["freshness"] = freshness.freshness(**{**f, "cases": f["cases"] or freshness.FAULTS})
        report_freshness(results["freshness"])
        save()
    results["targets"] = targets(results)
    if results["targets"]:
        print_table(
            "Issue #13's targets, this run",
            ["target", "measured", "goal", ""],
            [[t["target"], t["measured"], t["goal"], "met" if t["met"] else "MISSED"] for t in results["targets"]],
        )
    save()
    print(f"\nwritten to {output}")


def targets(results):
    """Each of issue #13's measured targets this run covered: what it is, the figure, the goal, met or not."""
    rows = []

    def add(target, value, goal, met, fmt="{:.2f}x"):
        rows.append({"target": target, "measured": fmt.format(value), "goal": goal, "met": bool(met)})

    if "sync" in results:
        s = results["sync"]
        floor, noop = s["ratios"]["product_over_floor"], s["resync"]["speedup_over_cold"]
        add(f"cold sync / COPY floor at {s['count']}", floor, "<= 2x", floor <= 2)
        add(f"no-op re-sync faster than cold at {s['count']}", noop, ">= 4x", noop >= 4)
    if "resync" in results:
        r = results["resync"]
        add(
            f"no-op re-sync faster than cold at {r['count']}",
            r["speedup_over_cold"],
            ">= 4x",
            r["speedup_over_cold"] >= 4,
        )
    if "split" in results:
        sp = results["split"]["speedup"]
        add("full sync, 4 workers vs 1, cold (20 ms latency)", sp["cold"], ">= 3x", sp["cold"] >= 3)
        add("full sync, 4 workers vs 1, no-op (20 ms latency)", sp["noop"], ">= 3x", sp["noop"] >= 3)
    if "memory" in results:
        m = results["memory"]
        add("peak RSS of a cold sync, 100k / 10k", m["ratio"], "<= 1.1", m["ratio"] <= 1.1, "{:.3f}")
    if "budget" in results:
        b = results["budget"]
        met = b["busiest_second"] <= b["ceiling"] and b["after_429"] < b["before_429"]
        add(
            "busiest second under the shared budget (and slower after 429s)",
            b["busiest_second"],
            f"<= {b['ceiling']:g}",
            met,
            "{}",
        )
    if "health" in results:
        h = results["health"]
        add(
            f"login page median beside {h['clients']} anonymous /health/ clients / idle",
            h["ratio"],
            "<= 2x",
            h["ratio"] <= 2,
        )
    if "freshness" in results:
        for c in results["freshness"]["cases"]:
            add(
                f"freshness, max lag to the mirror, fault: {c['fault']}",
                c["max"],
                f"<= {c['goal']:.1f} s",
                c["met"],
                "{:.1f} s",
            )
    if "audit" in results:
        a = results["audit"]
        add(
            f"audit write (hash-chained) added to a detail view at {a['count']}, paired median",
            a["audit_adds_ms_paired"],
            "<= 5 ms",
            a["audit_adds_ms_paired"] <= 5,
            "{:+.1f} ms",
        )
    if "chain" in results:
        c = results["chain"]
        seconds = c["verify"]["median"]
        add(f"verify_audit_trail over {c['events']} events", seconds, "< 60 s", seconds < 60, "{:.1f} s")
    if "filters" in results:
        views = results["filters"]["views"]
        met = sum(v["met"] for v in views)
        add(
            "admin filters, pairs and deep pages within target",
            met,
            f"{len(views)} of {len(views)}",
            met == len(views),
            "{}",
        )
    return rows


def report_sync(s):
    rows = [
        [
            name,
            f"{s[name]['median']:.2f}",
            f"{s[name]['min']:.2f}..{s[name]['max']:.2f}",
            f"{s['count'] / s[name]['median']:.0f}",
        ]
        for name in ("product", "naive", "floor", "dlt")
        if name in s
    ]
    print_table(
        f"1. Cold full sync, {s['count']} registrations, list path "
        f"(naive measured on {s['naive_rows_measured']} and scaled)",
        ["contender", "median s", "spread", "rows/s"],
        rows,
    )
    r = s["ratios"]
    print(
        f"   naive/product {r['naive_over_product']:.1f}x (target >= 10), "
        f"product/floor {r['product_over_floor']:.2f}x (target <= 2)"
        + (
            f", dlt/product {r['dlt_over_product']:.1f}x (target > 1)"
            if "dlt_over_product" in r
            else ", dlt not installed"
        )
    )
    z = s["resync"]
    print_table(
        "2. No-change re-sync",
        ["median s", "rows inserted", "rows updated", "faster than cold"],
        [[f"{z['median']:.2f}", z["rows_inserted"], z["rows_updated"], f"{z['speedup_over_cold']:.1f}x (target >= 4)"]],
    )
    c = s["changed"]
    off, on = c["details_off"], c["details_on"]
    print_table(
        "3. 1% changed upstream",
        ["details", "changed", "rows written", "tuples ins/upd", "detail requests", "seconds"],
        [
            [
                "off",
                off["changed_upstream"],
                off["distinct_rows_written"],
                f"{off['rows_inserted']}/{off['rows_updated']}",
                "-",
                f"{off['seconds']:.2f}",
            ],
            [
                "on",
                on["changed_upstream"],
                on["distinct_rows_written"],
                "-",
                on["detail_requests"],
                f"{on['seconds']:.2f}",
            ],
        ],
    )


def report_budget(b):
    throttled = [int(t) for t in b["rate_limited_at"]]
    print_table(
        f"9. API requests per second under the shared budget: VERIFIK_API_RATE={b['rate']}, "
        f"2 workers of {b['concurrency']} processes "
        f"and 1 refreshing process, {b['latency'] * 1000:.0f} ms a request, 429s injected",
        ["second", "requests", "429s", ""],
        [[n, count, throttled.count(n) or "", "#" * count] for n, count in enumerate(b["per_second"])],
    )
    print(
        f"   busiest one-second window {b['busiest_second']} (ceiling {b['ceiling']:g}); "
        f"{b['before_429']:.1f}/s in the 5 s before the 429s, {b['after_429']:.1f}/s in the 3 s after"
    )


def report_admin(a):
    rows = [
        [
            v["view"],
            f"{v['ms']:.0f}",
            v["queries"],
            f"{v['stock_ms']:.0f}",
            v["stock_queries"],
            f"{v['speedup']:.1f}x",
            v["full_scans"],
        ]
        for v in a["views"]
    ]
    print_table(
        f"6. Admin at {a['count']} registrations (median server time)",
        ["view", "ms", "queries", "stock ms", "stock queries", "faster", "full scans"],
        rows,
    )
    for v in sorted(a["views"], key=lambda v: v["ms"], reverse=True)[:3]:
        print(
            f"\n   EXPLAIN, slowest query of '{v['view']}':\n"
            + "\n".join("     " + line for line in v["plan"].splitlines())
        )


def report_review(r):
    print_table(
        f"7. Review desk at {r['count']} registrations, {r['decisions']} decisions, "
        f"{r['status_changes']} status changes (median server time)",
        ["view", "ms", "queries", "full scans", "slowest query ms"],
        [[v["view"], f"{v['ms']:.0f}", v["queries"], v["full_scans"], f"{v['slowest_ms']:.0f}"] for v in r["views"]],
    )
    for v in sorted(r["views"], key=lambda v: v["ms"], reverse=True)[:2]:
        print(
            f"\n   EXPLAIN, slowest query of '{v['view']}':\n"
            + "\n".join("     " + line for line in v["plan"].splitlines())
        )


def report_audit(a):
    print_table(
        f"10. Audit trail at {a['count']} registrations, {a['events']} audit events (median server time)",
        ["view", "ms", "queries", "full scans", "slowest query ms"],
        [[v["view"], f"{v['ms']:.0f}", v["queries"], v["full_scans"], f"{v['slowest_ms']:.0f}"] for v in a["views"]],
    )
    print(
        f"   detail view: {a['detail_ms_with_audit']:.1f} ms with its audit write, "
        f"{a['detail_ms_without_audit']:.1f} ms without ({a['audit_adds_ms']:+.1f} ms; median of paired "
        f"differences {a['audit_adds_ms_paired']:+.1f} ms; target <= 5; {a['samples']} interleaved samples each); "
        f"the chained write alone {a['insert_ms_median']:.2f} ms, the same INSERT unchained "
        f"{a['plain_insert_ms_median']:.2f} ms"
    )


def report_chain(c):
    v = c["verify"]
    print_table(
        f"13. verify_audit_trail over {c['events']} hash-chained audit events",
        ["median s", "spread", "events/s", "runs"],
        [[f"{v['median']:.1f}", f"{v['min']:.1f}..{v['max']:.1f}", f"{c['events_per_second']:,.0f}", v["n"]]],
    )
    print(f"   {c['said']} (target < 60 s at 1,000,000)")


def report_privacy(p):
    print_table(
        f"11. Masking at {p['count']} registrations: an analyst's pages against a reviewer's (median server time)",
        ["view", "reviewer ms", "analyst ms", "analyst / reviewer", "paired", "queries (reviewer, analyst)"],
        [
            [
                v["view"],
                f"{v['reviewer_ms']:.0f}",
                f"{v['analyst_ms']:.0f}",
                f"{v['ratio']:.2f}",
                f"{v['paired_ratio']:.2f}",
                f"{v['reviewer_queries']}, {v['analyst_queries']}",
            ]
            for v in p["views"]
        ],
    )
    print(
        "   target: analyst's default list page within 10% of the reviewer's (ratio <= 1.10); "
        "paired: median of each adjacent pair's ratio"
    )
    print_table(
        "   CSV export, one fresh process each (peak RSS; flat memory: about the same peak for 10x the rows)",
        ["filter", "rows", "MB of CSV", "seconds", "RSS before (MB)", "peak RSS (MB)"],
        [
            [
                e["query"] or "(none)",
                e["rows"],
                e["megabytes"],
                e["seconds"],
                f"{e['rss_before_kb'] / 1024:.0f}",
                f"{e['peak_rss_kb'] / 1024:.0f}",
            ]
            for e in p["exports"]
        ],
    )


def report_filters(f):
    views = f["views"]
    print_table(
        f"12. Every filter and filter pair, and deep pages, at {f['count']} registrations (median server time)",
        ["view", "ms", "queries", "shown", "rows", "slowest query ms", "target"],
        [
            [
                v["view"],
                f"{v['ms']:.0f}",
                v["queries"],
                v["shown"] + (" (refused)" if v["refused"] else ""),
                v["rows"],
                f"{v['slowest_ms']:.0f}",
                "met" if v["met"] else f"MISSED (<= {f['target_ms']})",
            ]
            for v in views
        ],
    )
    print(f"   {sum(v['met'] for v in views)} of {len(views)} within {f['target_ms']} ms")


def report_health(h):
    g = h["health"]
    print_table(
        f"14. The login page beside {h['clients']} anonymous clients looping on /health/ for {h['seconds']:g} s, "
        f"gunicorn with {h['workers']} workers",
        ["", "login median ms", "login p90 ms", "requests"],
        [
            ["idle", f"{h['login_idle_ms']:.1f}", "", h["login_samples"]["idle"]],
            [
                "under load",
                f"{h['login_loaded_ms']:.1f}",
                f"{h['login_loaded_p90_ms']:.1f}",
                h["login_samples"]["loaded"],
            ],
        ],
    )
    print(
        f"   {h['ratio']:.2f}x the idle median (target <= 2); /health/: {g['requests']} requests "
        f"({g['per_second']:.0f}/s, median {g['median_ms']:.1f} ms, statuses {g['statuses']})"
    )
    f = h["floor"]
    print(
        f"   floor, the same clients on the smallest WSGI app: {f['per_second']:.0f}/s, median {f['median_ms']:.1f} ms "
        f"(a request queued behind {h['clients']} waits ~{h['clients'] / f['per_second'] * 1000:.0f} ms there)"
    )


def report_freshness(f):
    def seconds(value):
        return "-" if value is None else f"{value:.1f}"

    print_table(
        f"15. Freshness on real workers and beat: {f['count']} registrations ({f['active']} active), an active sync "
        f"every {f['active_interval_s']:g} s, one change every {f['every']:g} s for {f['seconds']:g} s, "
        f"a split full sync meanwhile ({f['full_page_seconds']:g} s a page)",
        [
            "fault",
            "changes",
            "p50 s",
            "p99 s",
            "max s",
            "goal s",
            "active walk s",
            "full sync",
            "after fault s",
            "walked again / resent",
            "left running",
            "",
        ],
        [
            [
                c["fault"],
                f"{c['seen']}/{c['changes']}",
                f"{c['p50']:.1f}",
                f"{c['p99']:.1f}",
                f"{c['max']:.1f}",
                f"{c['goal']:.1f}",
                f"{c['active_walk_median']:.1f} (max {c['active_walk_max']:.1f})",
                f"{c['full_outcome']} in {seconds(c['full_seconds'])} s",
                seconds(c["full_ended_after_fault"]),
                f"{c['partitions_walked_again']} / {c['partitions_resent']} of {c['partitions']}",
                ", ".join(c["left_running"]) or "none",
                "met" if c["met"] else "MISSED",
            ]
            for c in f["cases"]
        ],
    )
    print("   goal: max lag <= 2 x the active interval + one active walk (the median active SyncRun's duration)")


if __name__ == "__main__":
    sys.exit(main())
