"""A local fake of Verifik's app-registrations API, on a real socket.

Used by `make run`, the tests and the benchmarks; production code never
imports it. The data set it serves is simulated_data.py's.

Faults are injected by request number (every Nth request), so a test that
asks for "one request in seven answers 503" gets exactly that.
"""

import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .simulated_data import DOCUMENTED_LIST_KEYS, LIST_POPULATES, REFERENCE_KEYS, iso, make_registration, populate


@dataclass
class Faults:
    """Inject failures by request number: every Nth request gets the fault (0 = never).

    `fail_first` answers the first N requests with `error_status`, for tests of
    retries that must eventually succeed.
    """

    fail_first: int = 0
    error_every: int = 0
    error_status: int = 503
    rate_limit_every: int = 0
    retry_after: float = 1
    drop_every: int = 0
    truncate_every: int = 0
    short_page_every: int = 0
    slow_every: int = 0
    slow_seconds: float = 2.0
    latency: float = 0.0
    fail_status: str = ""  # "STATUS" or "STATUS:N": listings filtered to it (from page N) answer `error_status`


@dataclass
class SimulatedVerifik:
    """The simulated account: records oldest first, listed newest first."""

    count: int = 500
    seed: int = 1
    token: str = "sim-token"
    list_keys: str = "full"
    faults: Faults = field(default_factory=Faults)
    # Keep each listed item's JSON, keyed by its version: listings are served as the same bytes, cheaply.
    # Only for accounts changed through update()/mutate() (a test that edits `records` in place would be served stale).
    cache_json: bool = False

    def __post_init__(self):
        self.lock = threading.RLock()
        self.records = [make_registration(self.seed, i) for i in range(self.count)]
        self._reindex()
        self.request_count = 0
        self.request_log = []  # time.monotonic() of each request's arrival, for rate traces
        self.rate_limited_log = []  # ... of each request answered 429
        self.list_requests = 0
        self.detail_requests = 0
        self.detail_ids = []
        self.before_list_page = None  # hook(page_number) for tests that change data mid-walk
        self.list_transform = None  # hook(body, page_number) -> body: a listing that answers oddly
        self.ignore_in_status = False  # serve every status when asked with in_status, as a careless API would
        self.failing_ids = set()  # detail GETs of these ids answer 503
        self._listed_json = {}  # (id, populates) -> ((__v, updatedAt), the item's JSON bytes), when cache_json

    def _reindex(self):
        self.by_id = {r["_id"]: r for r in self.records}
        self._filtered = {}

    # --- changes upstream ------------------------------------------------------

    def update(self, registration_id, **changes):
        """Change a registration as Verifik would: new values, later updatedAt, next __v."""
        with self.lock:
            record = self.by_id[registration_id]
            previous = datetime.fromisoformat(record["updatedAt"].replace("Z", "+00:00"))
            record.update(changes)
            record["updatedAt"] = iso(max(previous + timedelta(seconds=1), datetime.now(UTC)))
            record["__v"] = record.get("__v", 0) + 1
            self._filtered = {}
            return record

    def add(self, n=1):
        with self.lock:
            start = len(self.records) + 10_000_000
            new = [make_registration(self.seed, start + i) for i in range(n)]
            now = datetime.now(UTC)
            for offset, record in enumerate(new):
                record["createdAt"] = record["updatedAt"] = iso(now + timedelta(milliseconds=offset))
            self.records.extend(new)
            self._reindex()
            return new

    def remove(self, registration_id):
        with self.lock:
            self.records = [r for r in self.records if r["_id"] != registration_id]
            self._reindex()

    # --- serving ------------------------------------------------------------------

    def listing(self, statuses):
        key = tuple(sorted(statuses)) if statuses else ()
        with self.lock:
            if key not in self._filtered:
                rows = self.records if not key else [r for r in self.records if r["status"] in key]
                self._filtered[key] = rows[::-1]
            return self._filtered[key]

    def present(self, record, populates, allowed=None):
        item = (
            dict(record)
            if self.list_keys == "full" or allowed is None
            else {k: record[k] for k in DOCUMENTED_LIST_KEYS if k in record}
        )
        for key in populates:
            if key in REFERENCE_KEYS and isinstance(item.get(key), str) and (allowed is None or key in allowed):
                item[key] = populate(key, item[key])
        return item

    def handle(self, method, path, query, headers):
        """Answer one request: returns (status, body dict or bytes, extra headers, fault name)."""
        with self.lock:
            self.request_count += 1
            number = self.request_count
            arrived = time.monotonic()
            self.request_log.append(arrived)
        f = self.faults
        if f.latency:
            time.sleep(f.latency)
        if f.slow_every and number % f.slow_every == 0:
            time.sleep(f.slow_seconds)  # long enough to trip a client's read timeout
        if f.drop_every and number % f.drop_every == 0:
            return None, None, {}, "drop"
        if f.rate_limit_every and number % f.rate_limit_every == 0:
            with self.lock:
                self.rate_limited_log.append(arrived)
            body = {"code": "TooManyRequests", "message": "429:TooManyRequests"}
            return 429, body, {"Retry-After": f"{f.retry_after:g}"}, None
        if number <= f.fail_first or (f.error_every and number % f.error_every == 0):
            return f.error_status, b"<html><body>Service Unavailable</body></html>", {"Content-Type": "text/html"}, None
        if path.startswith("/_simulator/"):
            return self._control(method, path, parse_qs(query))
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"code": "Unauthorized", "message": "401:Unauthorized"}, {}, None
        if method != "GET":
            return 405, {"code": "MethodNotAllowed", "message": "405:MethodNotAllowed"}, {}, None
        params = parse_qs(query)
        populates = [p for v in params.get("populates[]", []) + params.get("populates", []) for p in v.split(",") if p]
        parts = [p for p in path.split("/") if p]
        if parts[:2] != ["v2", "app-registrations"] or len(parts) > 3:
            return 404, {"code": "NotFound", "message": "404:NotFound"}, {}, None
        if f.fail_status and len(parts) == 2:
            status, _, from_page = f.fail_status.partition(":")
            if status in params.get("where_status", []) and int(params.get("page", ["1"])[0]) >= int(from_page or 1):
                return f.error_status, {"code": "InternalError", "message": f"{f.error_status}:InternalError"}, {}, None
        truncate = bool(f.truncate_every and number % f.truncate_every == 0)
        if len(parts) == 3:
            status, body = self._detail(parts[2], populates)
        else:
            status, body = self._list(
                params, populates, short=bool(f.short_page_every and number % f.short_page_every == 0)
            )
        return status, body, {}, "truncate" if truncate and status == 200 else None

    def mutate(self, fraction, seed=0):
        """Change `fraction` of the registrations (status and notes), as a busy day at Verifik would."""
        rng = random.Random(seed)
        with self.lock:
            chosen = rng.sample(range(len(self.records)), round(len(self.records) * fraction))
            ids = [self.records[i]["_id"] for i in chosen]
        for n, registration_id in enumerate(ids):
            self.update(registration_id, status="NEEDS_MANUAL_VERIFICATION", notes=f"Changed upstream ({seed}/{n})")
        return ids

    def stats(self):
        return {
            "requests": self.request_count,
            "list_requests": self.list_requests,
            "detail_requests": self.detail_requests,
            "registrations": len(self.records),
        }

    def reset_stats(self):
        with self.lock:
            self.request_count = self.list_requests = self.detail_requests = 0
            self.detail_ids = []
            self.request_log, self.rate_limited_log = [], []

    def _control(self, method, path, params):
        """Unauthenticated controls for benchmarks and demos: /_simulator/stats, /_simulator/mutate?fraction=."""
        if path == "/_simulator/stats":
            return 200, self.stats(), {}, None
        if path == "/_simulator/mutate" and method == "POST":
            ids = self.mutate(float(params.get("fraction", ["0.01"])[0]), int(params.get("seed", ["0"])[0]))
            return 200, {"changed": len(ids)}, {}, None
        if path == "/_simulator/reset-stats" and method == "POST":
            self.reset_stats()
            return 200, self.stats(), {}, None
        return 404, {"code": "NotFound", "message": "404:NotFound"}, {}, None

    def _detail(self, registration_id, populates):
        with self.lock:
            self.detail_requests += 1
            self.detail_ids.append(registration_id)
            if len(registration_id) != 24:
                return 400, {"code": "InvalidParameter", "message": "400:id must be a valid ObjectId"}
            if registration_id in self.failing_ids:
                return 503, {"code": "Unavailable", "message": "503:Unavailable"}
            record = self.by_id.get(registration_id)
            if record is None:
                return 404, {"code": "AppRegistration_not_found", "message": "404:AppRegistration_not_found"}
            return 200, {"data": self.present(record, populates)}

    def _list(self, params, populates, short=False):
        try:
            page = int(params.get("page", ["1"])[0])
            limit = int(params.get("limit", params.get("perPage", ["10"]))[0])
        except ValueError:
            return 400, {"code": "InvalidParameter", "message": "400:page and limit must be integers"}
        if not 1 <= limit <= 100:
            return 409, {"code": "MissingParameter", "message": "limit must be between 1 and 100"}
        if page < 1:
            return 400, {"code": "InvalidParameter", "message": "400:page must be at least 1"}
        in_status = [] if self.ignore_in_status else [s for v in params.get("in_status", []) for s in v.split(",") if s]
        statuses = in_status + params.get("where_status", [])
        if self.before_list_page:
            self.before_list_page(page)
        cached = self.cache_json and not self.list_transform
        with self.lock:
            self.list_requests += 1
            rows = self.listing(statuses)
            total = len(rows)
            chunk = rows[(page - 1) * limit : page * limit]
            if short:
                chunk = chunk[: len(chunk) // 2]
            if cached:
                items = b", ".join(self._listed(r, populates) for r in chunk)
            else:
                items = [self.present(r, populates, LIST_POPULATES) for r in chunk]
        pages = max(1, -(-total // limit))
        if cached:  # the same bytes json.dumps would write for the whole body
            body = b'{"data": [%b], "total": %d, "limit": %d, "page": %d, "pages": %d}'
            return 200, body % (items, total, limit, page, pages)
        body = {"data": items, "total": total, "limit": limit, "page": page, "pages": pages}
        return 200, self.list_transform(body, page) if self.list_transform else body

    def _listed(self, record, populates):
        key, version = (record["_id"], tuple(populates)), (record.get("__v"), record.get("updatedAt"))
        cached = self._listed_json.get(key)
        if cached is None or cached[0] != version:
            item = self.present(record, populates, LIST_POPULATES)
            cached = self._listed_json[key] = (version, json.dumps(item, ensure_ascii=False).encode())
        return cached[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; do not wait 40 ms between them
    server_version = "VerifikSimulator/1"

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")

    def _answer(self, method):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body, headers, fault = self.server.account.handle(method, url.path, url.query, self.headers)
        if fault == "drop":
            self.close_connection = True
            self.connection.close()
            return
        payload = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        if fault == "truncate":
            payload = payload[: max(1, len(payload) // 2)]
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json; charset=utf-8"))
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, account, host="127.0.0.1", port=0):
        super().__init__((host, port), _Handler)
        self.account = account

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        """Serve from a background thread; returns self so tests can write `SimulatorServer(...).start()`."""
        self._thread = threading.Thread(target=self.serve_forever, name="verifik-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()
