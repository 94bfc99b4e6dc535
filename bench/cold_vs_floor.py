"""The cold sync against the COPY floor only (scenario 1 without the naive mirror and dlt), interleaved.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/verifik_bench_scale \\
        .venv/bin/python -m bench.cold_vs_floor 100000 2

Prints each pair and the ratio of the medians: a quicker check than `make bench` while working
on the sync's speed.
"""

import statistics
import sys

from .harness import Simulator, configure, pointed_at, timed, truncate_mirror

if __name__ == "__main__":
    configure()
    from django.core.management import call_command

    from .sync_scenarios import floor, product

    call_command("migrate", verbosity=0)
    count, reps = int(sys.argv[1]), int(sys.argv[2])
    products, floors = [], []
    with Simulator(count) as simulator, pointed_at(simulator):
        for _ in range(reps):
            truncate_mirror()
            products.append(timed(product)[0])
            floors.append(timed(floor, simulator)[0])
            print(f"product {products[-1]:.2f} s, floor {floors[-1]:.2f} s", flush=True)
    p, f = statistics.median(products), statistics.median(floors)
    print(f"median product {p:.2f} s, floor {f:.2f} s, product/floor {p / f:.2f}x")
