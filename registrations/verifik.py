"""HTTP client for Verifik's app-registrations API.

Knows nothing of Django: it takes its configuration as arguments and returns
plain dicts. Every failure is a typed VerifikError whose message names the URL
path and what happened, and never carries the token.
"""

import json
import logging
import random
import time
from dataclasses import dataclass
from urllib.parse import quote

import msgspec
import requests

from .mapping import is_object_id

log = logging.getLogger(__name__)

REGISTRATIONS_PATH = "/v2/app-registrations"
MAX_PAGE_SIZE = 100


class VerifikError(Exception):
    """Base of every client error. `retryable` says whether trying again later may help."""

    retryable = False

    def __init__(self, message, *, path=None, status=None):
        super().__init__(message)
        self.path = path
        self.status = status


class InvalidRegistrationId(VerifikError, ValueError):
    """Refused locally: no request is sent for an id that cannot exist."""


class AuthRejected(VerifikError):
    """401/403: the token is missing, wrong or lacks access."""


class NotFound(VerifikError):
    """404: the registration does not exist (any more)."""


class BadRequest(VerifikError):
    """400/409 and other 4xx: the request itself is wrong; retrying will not help."""


class RateLimited(VerifikError):
    retryable = True

    def __init__(self, message, *, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unavailable(VerifikError):
    """Connection errors, timeouts and 5xx answers."""

    retryable = True


class BadResponse(VerifikError):
    """A body that is not the JSON we expect (non-JSON, truncated, wrong shape)."""

    def __init__(self, message, *, retryable=False, **kwargs):
        super().__init__(message, **kwargs)
        self.retryable = retryable


@dataclass(frozen=True)
class Page:
    items: list
    page: int
    pages: int
    total: int
    limit: int
    # Each item's JSON exactly as received (aligned with `items`), or None when the body would not split:
    # fingerprinting these bytes tells an unchanged item without serialising it again.
    item_bytes: list | None = None


class _Listing(msgspec.Struct):
    data: list[msgspec.Raw]


_LISTING = msgspec.json.Decoder(_Listing)


def _item_bytes(content, count):
    """The bytes of each item under 'data' as received, or None (a body msgspec reads otherwise than json)."""
    try:
        data = _LISTING.decode(content).data
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return [bytes(raw) for raw in data] if len(data) == count else None


def validate_registration_id(registration_id):
    if not is_object_id(registration_id):
        raise InvalidRegistrationId(
            f"{str(registration_id)[:60]!r} is not a Verifik registration id (24 hexadecimal characters)"
        )
    return registration_id.lower()


class VerifikClient:
    def __init__(
        self,
        base_url,
        token,
        *,
        timeout=30.0,
        connect_timeout=5.0,
        max_retries=5,
        backoff=0.5,
        backoff_cap=30.0,
        retry_after_cap=60.0,
        session=None,
        sleep=time.sleep,
        budget=None,
    ):
        self.base_url = base_url.rstrip("/")
        # The account's API budget: `before_request()` runs before every HTTP request (it may wait, or raise
        # a VerifikError), `rate_limited(retry_after)` after every 429. None: no pacing (the client alone).
        self.budget = budget
        self._token = token or ""
        self.timeout = (connect_timeout, timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.retry_after_cap = retry_after_cap
        self._sleep = sleep
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            }
        )
        self.requests_sent = 0

    def __repr__(self):
        return f"VerifikClient({self.base_url!r})"

    # --- public API -----------------------------------------------------------

    def list_page(self, page=1, limit=MAX_PAGE_SIZE, statuses=None, project=None, populates=()):
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        params = [("page", page), ("limit", limit)]
        statuses = list(statuses or ())
        if len(statuses) == 1:
            params.append(("where_status", statuses[0]))
        elif statuses:
            # Not documented how several values are spelled; a comma list is the common convention.
            params.append(("in_status", ",".join(statuses)))
        if project:
            params.append(("where_project", project))
        params += [("populates[]", name) for name in populates]
        body, content = self._fetch(REGISTRATIONS_PATH, params, validate=lambda body: _listing_problem(body, page))
        pages, total, items = _count(body, "pages"), _count(body, "total"), body["data"]
        return Page(items, page, pages, total, limit, item_bytes=_item_bytes(content, len(items)))

    def iter_pages(self, limit=MAX_PAGE_SIZE, statuses=None, project=None, populates=(), start=1):
        """Every page from `start` to the last one the API reports, one request at a time."""
        page_number = start
        while True:
            page = self.list_page(page_number, limit, statuses, project, populates)
            yield page
            if page_number >= page.pages or not page.items:
                return
            page_number += 1

    def get(self, registration_id, populates=()):
        registration_id = validate_registration_id(registration_id)
        path = f"{REGISTRATIONS_PATH}/{quote(registration_id)}"
        body = self._get_json(path, [("populates[]", name) for name in populates])
        data = body.get("data")
        if not isinstance(data, dict):
            raise BadResponse(f"GET {path}: expected an object under 'data'", path=path)
        return data

    # --- transport --------------------------------------------------------------

    def _get_json(self, path, params, validate=None):
        return self._fetch(path, params, validate)[0]

    def _fetch(self, path, params, validate=None):
        """GET and parse, retrying what may pass; `validate(body)` names a problem that makes the body unusable.

        Returns (parsed body, the bytes received).
        """
        url = self.base_url + path
        for attempt in range(self.max_retries + 1):
            if self.budget is not None:
                self.budget.before_request()
            try:
                self.requests_sent += 1
                response = self.session.get(url, params=params, timeout=self.timeout)
            except requests.Timeout:
                error = Unavailable(f"GET {path}: timed out", path=path)
            except requests.RequestException as exc:
                error = Unavailable(f"GET {path}: connection failed ({type(exc).__name__})", path=path)
            else:
                error = self._error_for(response, path)
                if isinstance(error, RateLimited) and self.budget is not None:
                    self.budget.rate_limited(error.retry_after)
                if error is None:
                    try:
                        body = self._parse(response, path)
                        problem = validate(body) if validate else None
                        if problem is None:
                            return body, response.content
                        error = BadResponse(f"GET {path}: {problem}", path=path, status=200, retryable=True)
                    except BadResponse as bad:
                        error = bad
            if not error.retryable or attempt >= self.max_retries:
                if error.retryable:
                    error.args = (f"{error.args[0]} (gave up after {attempt + 1} attempts)",)
                raise error
            delay = self._delay(attempt, error)
            log.warning(
                "Verifik %s; retrying in %.2fs (attempt %d of %d)", error, delay, attempt + 2, self.max_retries + 1
            )
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, attempt, error):
        delay = min(self.backoff_cap, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap))
        return delay

    def _parse(self, response, path):
        try:  # msgspec reads valid JSON faster; what it refuses (NaN, lone surrogates...) the stdlib judges
            body = msgspec.json.decode(response.content)
        except (msgspec.DecodeError, RecursionError):
            body = self._parse_leniently(response, path)
        if not isinstance(body, dict):
            raise BadResponse(f"GET {path}: expected a JSON object", path=path, status=response.status_code)
        return body

    def _parse_leniently(self, response, path):
        """The standard library's reading (not requests' choice of json module): NaN and the like are kept."""
        try:
            return json.loads(response.text)
        except RecursionError:
            raise BadResponse(f"GET {path}: answered JSON nested too deep to read", path=path) from None
        except ValueError:
            kind = "truncated JSON" if response.text.lstrip().startswith(("{", "[")) else "a non-JSON body"
            raise BadResponse(
                f"GET {path}: answered {kind}", path=path, status=response.status_code, retryable=True
            ) from None

    def _error_for(self, response, path):
        status = response.status_code
        if status < 400:
            return None
        detail = self._scrub(_server_message(response))
        message = f"GET {path}: HTTP {status}" + (f" ({detail})" if detail else "")
        if status in (401, 403):
            return AuthRejected(message + "; check VERIFIK_API_TOKEN", path=path, status=status)
        if status == 404:
            return NotFound(message, path=path, status=status)
        if status == 429:
            return RateLimited(message, path=path, status=status, retry_after=_retry_after(response))
        if status >= 500:
            return Unavailable(message, path=path, status=status)
        return BadRequest(message, path=path, status=status)

    def _scrub(self, text):
        if self._token and self._token in text:
            text = text.replace(self._token, "***")
        return text


def _count(body, key):
    """A non-negative whole number sent as a number or as digits, else None."""
    value = body.get(key)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _listing_problem(body, asked_page):
    """Why a listing answer cannot be believed, or None. An unproven page never counts toward completeness."""
    if not isinstance(body.get("data"), list):
        return "listing answer has no list under 'data'"
    if _count(body, "total") is None or _count(body, "pages") is None:
        return "listing answer lacks a numeric 'total' and 'pages'"
    if "page" in body and _count(body, "page") != asked_page:
        return f"listing answered page {body['page']!r} when page {asked_page} was asked for"
    return None


def _server_message(response):
    """The server's own words, from either documented JSON shape; nothing from an HTML page."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[key]) for key in ("code", "error", "message") if body.get(key)]
    return ": ".join(dict.fromkeys(parts))[:200]


def _retry_after(response):
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None
