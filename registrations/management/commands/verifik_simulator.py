from django.core.management.base import BaseCommand

from registrations.simulator import Faults, SimulatedVerifik, SimulatorServer


class Command(BaseCommand):
    help = "Serve a local fake of Verifik's app-registrations API (for demos, tests and benchmarks)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--count", type=int, default=500, help="Registrations in the data set.")
        parser.add_argument("--seed", type=int, default=1, help="Same seed, same data.")
        parser.add_argument("--token", default="sim-token", help="Bearer token the simulator accepts.")
        parser.add_argument("--list-keys", choices=["full", "documented"], default="full", help="Keys per list item.")
        parser.add_argument(
            "--cache-json",
            action="store_true",
            help="Keep each listed registration's JSON between requests (benchmarks: the API's own work stays small).",
        )
        faults = parser.add_argument_group("faults (every Nth request; 0 = never)")
        faults.add_argument("--fail-first", type=int, default=0, help="Answer the first N requests with 503.")
        faults.add_argument("--error-every", type=int, default=0, help="Answer 503 with an HTML body.")
        faults.add_argument("--rate-limit-every", type=int, default=0, help="Answer 429 with Retry-After.")
        faults.add_argument("--retry-after", type=float, default=1, help="Seconds sent in Retry-After.")
        faults.add_argument("--drop-every", type=int, default=0, help="Close the connection without answering.")
        faults.add_argument("--truncate-every", type=int, default=0, help="Send half the JSON body.")
        faults.add_argument("--short-page-every", type=int, default=0, help="Return half a page.")
        faults.add_argument("--latency", type=float, default=0.0, help="Seconds to wait before every answer.")

    def handle(self, *args, **o):
        fault_names = [
            "fail_first",
            "error_every",
            "rate_limit_every",
            "retry_after",
            "drop_every",
            "truncate_every",
            "short_page_every",
            "latency",
        ]
        account = SimulatedVerifik(
            count=o["count"],
            seed=o["seed"],
            token=o["token"],
            list_keys=o["list_keys"],
            cache_json=o["cache_json"],
            faults=Faults(**{name: o[name] for name in fault_names}),
        )
        server = SimulatorServer(account, o["host"], o["port"])
        self.stdout.write(
            f"Verifik simulator: {o['count']} registrations on {server.url} (token {o['token']!r})", ending="\n"
        )
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
