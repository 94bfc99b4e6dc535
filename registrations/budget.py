"""One API budget per Verifik account, shared by every process and machine.

Verifik limits requests per account, so VERIFIK_API_RATE is a token bucket in
Redis that every worker, beat, web process and `manage.py` one-off draws from
before each HTTP request (listing pages, detail fetches, refreshes). One atomic
Lua script does the arithmetic on Redis's own clock, so machines with skewed
clocks agree. A 429 halves the shared rate at once (at most once a second,
however many in-flight requests are refused together) and pauses the whole
fleet for the Retry-After; the rate then climbs back by RECOVERY of the
configured rate each second (AIMD). Refreshes (someone is waiting) and the
active lane (the statuses reviewers work on) go before the full lane and the
detail backlog: a request of theirs that cannot have a token at once registers
as waiting, and no full-lane request takes a token while one waits.

Without Redis (no VERIFIK_BUDGET_REDIS_URL nor CELERY_BROKER_URL: eager tests,
a development shell) the same bucket lives in this process only. When Redis
fails, the budget degrades to that local bucket with a warning and tries Redis
again after REDIS_RETRY seconds: a Redis blip must not fail a user's refresh,
and Verifik's own 429s (which the local bucket backs off on) stay the backstop.

Django-free, like the client: runs.build_client passes the settings in.
"""

import hashlib
import logging
import threading
import time
import uuid
from urllib.parse import urlsplit

import redis

from .verifik import VerifikError

log = logging.getLogger(__name__)

# Priorities: a user or webhook refresh, the active lane's sync, and everything else (the full lane, details).
REFRESH, ACTIVE, SYNC = "refresh", "active", "sync"
AHEAD = frozenset({REFRESH, ACTIVE})  # the priorities that go before SYNC
BURST = 1.0  # tokens: requests are spaced evenly, so any one-second window holds at most rate + 1
DECREASE = 0.5  # a 429 multiplies the shared rate by this
CUT_COOLDOWN = 1.0  # seconds: in-flight requests refused together cut the rate once
RECOVERY = 0.05  # of VERIFIK_API_RATE, added back each second after a cut (half to full in 10 s)
FLOOR = 1 / 32  # of VERIFIK_API_RATE: the lowest a run of 429s takes the rate
WAITER_GRACE = 0.5  # seconds a waiting refresh holds syncs back past its expected wait (then it is presumed gone)
IDLE_EXPIRY = 3600  # seconds an account's state stays in Redis without a request
SLOW_WAIT = 2.0  # seconds: a longer wait for one token is logged
REDIS_RETRY = 5.0  # seconds on the local bucket after a Redis failure before trying Redis again

# KEYS: state hash, sorted set of waiting requests that go first. ARGV: op (take|cut), configured rate,
# priority, waiter id, retry-after, and the constants. Returns {granted 0/1, wait seconds, current rate,
# cut 0/1} (numbers as strings: Redis truncates Lua numbers to integers).
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local op, max_rate, priority, waiter = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local retry_after = tonumber(ARGV[5])
local burst, decrease, cooldown = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local recovery, floor, grace, expiry = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'rate', 'paused_until', 'cut_at')
local tokens = tonumber(s[1]) or burst
local ts = tonumber(s[2]) or now
local rate = math.min(tonumber(s[3]) or max_rate, max_rate)
local paused, cut_at = tonumber(s[4]) or 0, tonumber(s[5]) or -1e18
local elapsed = math.max(0, now - ts)
local grown = math.min(max_rate, rate + recovery * max_rate * elapsed)
tokens = math.min(burst, tokens + elapsed * (rate + grown) / 2)
rate = grown
local granted, wait, cut = 0, 0, 0
if op == 'cut' then
  if now - cut_at >= cooldown then
    rate = math.max(floor * max_rate, rate * decrease)
    cut_at, cut = now, 1
  end
  tokens = math.min(tokens, 0)
  paused = math.max(paused, now + retry_after)
else
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if now < paused then
    wait = paused - now
  elseif priority == 'sync' and redis.call('ZCARD', KEYS[2]) > 0 then
    wait = 1 / rate
  elseif tokens >= 1 then
    tokens, granted = tokens - 1, 1
  else
    wait = (1 - tokens) / rate
  end
  if priority ~= 'sync' then
    if granted == 1 then
      redis.call('ZREM', KEYS[2], waiter)
    else
      redis.call('ZADD', KEYS[2], now + wait + grace, waiter)
      redis.call('EXPIRE', KEYS[2], expiry)
    end
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now), 'rate', tostring(rate),
  'paused_until', tostring(paused), 'cut_at', tostring(cut_at))
redis.call('EXPIRE', KEYS[1], expiry)
return {granted, tostring(wait), tostring(rate), cut}
"""
_CONSTANTS = [BURST, DECREASE, CUT_COOLDOWN, RECOVERY, FLOOR, WAITER_GRACE, IDLE_EXPIRY]


class BudgetExhausted(VerifikError):
    """No token came within the caller's deadline; a later try may pass (the task retries)."""

    retryable = True


def account_key(base_url, token):
    """The budget's name: the API base URL and a hash of the token (the token itself is never stored)."""
    digest = hashlib.sha256((token or "").encode()).hexdigest()[:16]
    return f"verifik-budget:{base_url.rstrip('/')}:{digest}"


class LocalBucket:
    """The Lua script's arithmetic in this process only (no Redis configured, or Redis down)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state = {}  # key -> [tokens, ts, rate, paused_until, cut_at]
        self._waiters = {}  # key -> {waiter: expires}

    def call(self, key, op, max_rate, priority, waiter, retry_after=0.0):
        with self._lock:
            now = time.monotonic()
            tokens, ts, rate, paused, cut_at = self._state.get(key, [BURST, now, max_rate, 0.0, float("-inf")])
            rate = min(rate, max_rate)
            elapsed = max(0.0, now - ts)
            grown = min(max_rate, rate + RECOVERY * max_rate * elapsed)
            tokens = min(BURST, tokens + elapsed * (rate + grown) / 2)
            rate = grown
            granted, wait, cut = False, 0.0, False
            waiting = self._waiters.setdefault(key, {})
            if op == "cut":
                if now - cut_at >= CUT_COOLDOWN:
                    rate, cut_at, cut = max(FLOOR * max_rate, rate * DECREASE), now, True
                tokens = min(tokens, 0.0)
                paused = max(paused, now + retry_after)
            else:
                for name, expires in list(waiting.items()):
                    if expires <= now:
                        del waiting[name]
                if now < paused:
                    wait = paused - now
                elif priority not in AHEAD and waiting:
                    wait = 1 / rate
                elif tokens >= 1:
                    tokens, granted = tokens - 1, True
                else:
                    wait = (1 - tokens) / rate
                if priority in AHEAD:
                    if granted:
                        waiting.pop(waiter, None)
                    else:
                        waiting[waiter] = now + wait + WAITER_GRACE
            self._state[key] = [tokens, now, rate, paused, cut_at]
            return granted, wait, rate, cut


_local = LocalBucket()
_redis_clients = {}
_redis_down_until = {}  # url -> monotonic time before which the local bucket stands in
_clients_lock = threading.Lock()
_said_local = []  # the local-only notice is logged once a process


def _redis(url):
    with _clients_lock:
        if url not in _redis_clients:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            _redis_clients[url] = (client, client.register_script(_SCRIPT))
        return _redis_clients[url]


def _where(url):
    """Host and port of a Redis URL, for messages: never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


class Budget:
    """The shared budget of one account. `acquire()` before each request, `throttled()` after a 429."""

    def __init__(self, key, rate, redis_url="", retry_after_cap=60.0):
        if not rate or rate <= 0:
            raise ValueError("VERIFIK_API_RATE must be above 0")
        self.key, self.rate, self.redis_url, self.retry_after_cap = key, float(rate), redis_url, retry_after_cap

    @property
    def shared(self):
        """True while the bucket is the fleet's (in Redis); False when it is this process's alone."""
        return bool(self.redis_url) and _redis_down_until.get(self.redis_url, 0) <= time.monotonic()

    def _call(self, op, priority=SYNC, waiter="", retry_after=0.0):
        if self.shared:
            try:
                _, script = _redis(self.redis_url)
                granted, wait, rate, cut = script(
                    keys=[self.key, self.key + ":waiting"],
                    args=[op, self.rate, priority, waiter, retry_after, *_CONSTANTS],
                )
                return bool(granted), float(wait), float(rate), bool(cut)
            except redis.RedisError as exc:
                _redis_down_until[self.redis_url] = time.monotonic() + REDIS_RETRY
                log.warning(
                    "The shared API budget in Redis (%s) failed (%s); this process paces itself alone "
                    "at VERIFIK_API_RATE for %g s, then tries Redis again",
                    _where(self.redis_url),
                    type(exc).__name__,
                    REDIS_RETRY,
                )
        elif not self.redis_url and not _said_local:
            _said_local.append(True)  # said at the first request, inside the caller's log context (its run)
            log.info(
                "No Redis for the API budget (VERIFIK_BUDGET_REDIS_URL, CELERY_BROKER_URL): VERIFIK_API_RATE "
                "is enforced in this process only"
            )
        return _local.call(self.key, op, self.rate, priority, waiter, retry_after)

    def acquire(self, priority=SYNC, deadline=None):
        """Block until this process may send one request; returns the seconds waited.

        `deadline.remaining()` (seconds, or None for no bound) bounds the wait:
        past it, BudgetExhausted names `deadline.setting`.
        """
        started = time.monotonic()
        waiter = uuid.uuid4().hex
        while True:
            granted, wait, rate, _ = self._call("take", priority, waiter)
            waited = time.monotonic() - started
            if granted:
                if waited >= SLOW_WAIT:
                    log.info(
                        "Waited %.1f s for the shared API budget (%s; %.1f/s now of VERIFIK_API_RATE %g/s)",
                        waited,
                        priority,
                        rate,
                        self.rate,
                    )
                return waited
            remaining = deadline.remaining() if deadline is not None else None
            if remaining is not None and remaining < wait:
                raise BudgetExhausted(
                    f"No API request allowed within {deadline.setting} ({deadline.seconds:g} s): waited "
                    f"{waited:.1f} s for the shared budget (VERIFIK_API_RATE {self.rate:g}/s, {rate:.1f}/s now)"
                )
            time.sleep(wait)

    def throttled(self, retry_after=None):
        """Verifik answered 429: cut the shared rate and pause the fleet for the Retry-After."""
        pause = min(retry_after or 0.0, self.retry_after_cap)
        _, _, rate, cut = self._call("cut", retry_after=pause)
        if cut:
            log.warning(
                "Verifik answered 429: the shared API rate is cut to %.1f/s (VERIFIK_API_RATE %g/s) and "
                "recovers by %.1f/s each second",
                rate,
                self.rate,
                RECOVERY * self.rate,
            )

    def caller(self, priority, deadline=None):
        """What a client calls: this budget at one priority, bounded by one deadline."""
        return Caller(self, priority, deadline)


class Caller:
    """The hooks VerifikClient takes (`budget=`): before every request, and after every 429."""

    def __init__(self, budget, priority, deadline):
        self.budget, self.priority, self.deadline = budget, priority, deadline

    def before_request(self):
        self.budget.acquire(self.priority, self.deadline)

    def rate_limited(self, retry_after):
        self.budget.throttled(retry_after)
