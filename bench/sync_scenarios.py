"""Scenarios 1-5: the sync against the simulator, side by side with what a user would otherwise do."""

import os
import subprocess
import sys
import tempfile
import time

from django.db import connection
from django.utils import timezone

from registrations import mapping, sync
from registrations.models import AppRegistration, SyncRun
from registrations.verifik import VerifikClient

from .harness import ROOT, TOKEN, Simulator, pointed_at, summary, table_writes, timed, truncate_mirror


def product(details=False):
    run = sync.run_sync(details=details, trigger=SyncRun.Trigger.COMMAND)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    return run


def naive(simulator, limit):
    """What most Django integrations do: one update_or_create per registration."""
    client = VerifikClient(simulator.url, TOKEN)
    done = 0
    for page in client.iter_pages(limit=100):
        for item in page.items:
            mapped = mapping.map_registration(item)
            fields = {k: v for k, v in mapped.fields.items() if k != "verifik_id"}
            now = timezone.now()
            AppRegistration.objects.update_or_create(
                verifik_id=mapped.verifik_id,
                defaults={**fields, "raw": mapped.raw, "populated": mapped.populated, "last_synced_at": now},
                create_defaults={**fields, "raw": mapped.raw, "populated": mapped.populated, "first_synced_at": now},
            )
            done += 1
            if done >= limit:
                return done
    return done


def floor(simulator):
    """The same pages fetched, parsed and mapped, then one COPY into a scratch copy of the table (same indexes).

    JSON columns are written with the product's own encoder (mapping.jsonb_text): the floor is the
    fastest way to do the same work, not a slower copy of it."""
    client = VerifikClient(simulator.url, TOKEN)
    columns = [
        *mapping.MAPPED_FIELDS,
        "raw",
        "populated",
        "listing_hash",
        "details_pending",
        "first_synced_at",
        "last_synced_at",
    ]
    json_columns = {"raw", "populated", "red_flags_details", *mapping.FAILED_LISTS.values()}
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_floor")
        cursor.execute("CREATE TABLE bench_floor (LIKE registrations_appregistration INCLUDING ALL)")
        with cursor.cursor.copy(f"COPY bench_floor ({', '.join(columns)}) FROM STDIN") as copy:
            for page in client.iter_pages(limit=100):
                for item in page.items:
                    m = mapping.map_registration(item)
                    now = timezone.now()
                    values = {
                        **m.fields,
                        "raw": m.raw,
                        "populated": m.populated,
                        "listing_hash": "",
                        "details_pending": True,
                    }
                    values.update(first_synced_at=now, last_synced_at=now)
                    copy.write_row(
                        [
                            mapping.jsonb_text(values[c]) if c in json_columns and values[c] is not None else values[c]
                            for c in columns
                        ]
                    )
        cursor.execute("DROP TABLE bench_floor")


def dlt_load(simulator, workdir):
    """dlt's rest_api source into Postgres: its own tables, merge on _id, defaults otherwise."""
    try:
        import dlt
        from dlt.sources.rest_api import rest_api_source
    except ImportError:
        return None
    source = rest_api_source(
        {
            "client": {
                "base_url": simulator.url + "/v2/",
                "auth": {"type": "bearer", "token": TOKEN},
                "paginator": {"type": "page_number", "base_page": 1, "page_param": "page", "total_path": "pages"},
            },
            "resource_defaults": {"primary_key": "_id", "write_disposition": "merge"},
            "resources": [
                {
                    "name": "app_registrations",
                    "endpoint": {"path": "app-registrations", "params": {"limit": 100}, "data_selector": "data"},
                }
            ],
        }
    )
    settings = connection.settings_dict
    password = settings["PASSWORD"] or "unused-with-trust-auth"  # dlt insists on one
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    credentials = f"postgresql://{settings['USER']}:{password}@{host}:{port}/{settings['NAME']}"
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS dlt_bench CASCADE")
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{int(time.time() * 1000)}",
        destination=dlt.destinations.postgres(credentials),
        dataset_name="dlt_bench",
        pipelines_dir=workdir,
    )
    pipeline.run(source)
    return True


def cold_sync(count, naive_rows, reps):
    """Scenario 1: cold full sync, list path, product vs naive vs COPY floor vs dlt, interleaved."""
    samples = {"product": [], "naive": [], "floor": [], "dlt": []}
    naive_done = 0
    with Simulator(count) as simulator, pointed_at(simulator), tempfile.TemporaryDirectory() as workdir:
        for _ in range(reps):
            truncate_mirror()
            samples["product"].append(timed(product)[0])
            truncate_mirror()
            seconds, naive_done = timed(naive, simulator, naive_rows)
            samples["naive"].append(seconds * count / naive_done)  # flat per-row cost: scaled to the full count
            samples["floor"].append(timed(floor, simulator)[0])
            seconds, loaded = timed(dlt_load, simulator, workdir)
            if loaded:
                samples["dlt"].append(seconds)
        truncate_mirror()
        product()  # leave a mirror behind for scenario 2
        result = {name: summary(s) for name, s in samples.items() if s}
        result["count"], result["naive_rows_measured"] = count, naive_done
        p = result["product"]["median"]
        result["ratios"] = {
            "naive_over_product": result["naive"]["median"] / p,
            "product_over_floor": p / result["floor"]["median"],
            **({"dlt_over_product": result["dlt"]["median"] / p} if "dlt" in result else {}),
        }
        result["resync"] = no_change_resync(reps, p)
        result["changed"] = one_percent_changed(simulator, count)
    return result


def no_change_resync(reps, cold_seconds):
    """Scenario 2: the same account again: zero rows written, and how much faster than cold."""
    samples, writes = [], []
    for _ in range(reps):
        before = table_writes()
        samples.append(timed(product)[0])
        after = table_writes()
        writes.append((after[0] - before[0], after[1] - before[1]))
    result = summary(samples)
    result["rows_inserted"] = sum(w[0] for w in writes)
    result["rows_updated"] = sum(w[1] for w in writes)
    result["speedup_over_cold"] = cold_seconds / result["median"]
    return result


def one_percent_changed(simulator, count):
    """Scenario 3: 1% changed upstream: exactly those rows written; with details, exactly those fetched."""
    changed = simulator.mutate(0.01, seed=1)
    before = table_writes()
    started = timezone.now()
    seconds, run = timed(product)
    after = table_writes()
    listing = {
        "changed_upstream": changed,
        "seconds": seconds,
        "run_updated": run.updated,
        "rows_inserted": after[0] - before[0],
        "rows_updated": after[1] - before[1],
        "distinct_rows_written": AppRegistration.objects.filter(last_synced_at__gte=started).count(),
    }
    # With details on, after every registration carries its details, a second 1% change.
    AppRegistration.objects.update(details_pending=False)
    changed = simulator.mutate(0.01, seed=2)
    simulator.reset_stats()
    started = timezone.now()
    seconds, run = timed(product, details=True)
    stats = simulator.stats()
    details = {
        "changed_upstream": changed,
        "seconds": seconds,
        "detail_requests": stats["detail_requests"],
        "list_requests": stats["list_requests"],
        "distinct_rows_written": AppRegistration.objects.filter(last_synced_at__gte=started).count(),
    }
    return {"details_off": listing, "details_on": details}


def memory(small, large):
    """Scenario 4: peak RSS of a cold sync of `small` and of `large` registrations, each in a fresh process."""
    peaks = {}
    for count in (small, large):
        with Simulator(count) as simulator:
            out = subprocess.run(
                [sys.executable, "-m", "bench.memory", simulator.url],
                cwd=ROOT,
                env=os.environ.copy(),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            peaks[count] = int(out.split()[-1])
    return {"peak_rss_kb": peaks, "ratio": peaks[large] / peaks[small]}


def detail_fetches(count, latency, setups):
    """Scenario 5: detail fetches per second at `latency` per request: inline, and fanned out to Celery workers."""
    from .workers import fan_out_rate

    results = []
    with Simulator(count, latency=latency) as simulator, pointed_at(simulator):
        truncate_mirror()
        seconds, run = timed(product, details=True)
        results.append(
            {"mode": "inline (sync_registrations command)", "rate": run.details_fetched / seconds, "seconds": seconds}
        )
        for concurrency, api_rate in setups:
            truncate_mirror()
            seconds = fan_out_rate(simulator, concurrency, api_rate)
            results.append(
                {
                    "mode": f"celery, {concurrency} processes, VERIFIK_API_RATE={api_rate}",
                    "rate": count / seconds,
                    "seconds": seconds,
                }
            )
    return {"count": count, "latency": latency, "runs": results}


def resync_speedup(count, reps):
    """Scenario 2b: cold sync and no-op re-sync at another size (20,000): the no-op's speed-up over cold."""
    with Simulator(count) as simulator, pointed_at(simulator):
        colds, noops = [], []
        for _ in range(reps):
            truncate_mirror()
            colds.append(timed(product)[0])
            noops.append(timed(product)[0])
        cold, noop = summary(colds), summary(noops)
        return {"count": count, "cold": cold, "noop": noop, "speedup_over_cold": cold["median"] / noop["median"]}


def split_full_sync(count, latency, concurrency, partition_pages):
    """Scenario 8: a full sync (cold, then no-op) on 1 worker walking sequentially vs `concurrency` workers split.

    Real Celery worker processes against the simulator at `latency` seconds per request. The
    machine's CPU use is recorded with each run: `cores_allow` is the speed-up over the one
    worker that this machine's cores would allow the split run's CPU work if it kept every core
    busy (its CPU seconds over the core count); the split run cannot beat that here.
    """
    from .workers import full_sync_seconds

    cores = os.cpu_count()
    result = {"count": count, "latency": latency, "cores": cores, "runs": []}
    with Simulator(count, latency=latency) as simulator, pointed_at(simulator):
        for workers, pages in ((1, 0), (concurrency, partition_pages)):
            truncate_mirror()
            cold, partitions, cold_cpu = full_sync_seconds(simulator, workers, pages)
            noop, _, noop_cpu = full_sync_seconds(simulator, workers, pages)
            mode = "sequential walk" if not pages else f"split, {pages} pages a partition"
            result["runs"].append(
                {
                    "workers": workers,
                    "mode": mode,
                    "partitions": partitions,
                    "cold": cold,
                    "noop": noop,
                    "cold_cpu_seconds": cold_cpu.seconds,
                    "cold_cpu_busy": cold_cpu.busy_fraction,
                    "noop_cpu_seconds": noop_cpu.seconds,
                    "noop_cpu_busy": noop_cpu.busy_fraction,
                }
            )
    one, many = result["runs"]
    result["speedup"] = {"cold": one["cold"] / many["cold"], "noop": one["noop"] / many["noop"]}
    result["cores_allow"] = {phase: one[phase] / (many[f"{phase}_cpu_seconds"] / cores) for phase in ("cold", "noop")}
    return result
