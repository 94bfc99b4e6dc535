"""One cold full sync and one no-op re-sync of any checkout of this project, in a fresh process.

For before/after comparisons of the sync against an older commit: the script only uses what
every version has (bench.harness and sync.run_sync), so it runs against another worktree:

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/verifik_bench_old \\
        .venv/bin/python bench/pair.py --root /work/bench-old 20000

Prints one JSON line: {"root", "count", "cold", "noop"} in seconds. Alternate old and new runs
and compare medians: the machine is shared.
"""

import argparse
import json
import os
import sys
import time

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int)
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--noop", type=int, default=1, help="no-op re-syncs after the cold one")
    args = parser.parse_args()
    os.chdir(args.root)
    sys.path.insert(0, args.root)
    from bench import harness

    harness.configure()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from registrations import sync

    result = {"root": args.root, "count": args.count, "noop": []}
    with harness.Simulator(args.count) as simulator, harness.pointed_at(simulator):
        harness.truncate_mirror()
        start = time.perf_counter()
        run = sync.run_sync(details=False)
        result["cold"] = time.perf_counter() - start
        assert run.outcome == "succeeded", run.error
        for _ in range(args.noop):
            start = time.perf_counter()
            sync.run_sync(details=False)
            result["noop"].append(time.perf_counter() - start)
    print(json.dumps(result))
