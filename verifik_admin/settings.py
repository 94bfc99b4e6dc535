"""Django settings for verifik-admin.

Every value comes from the environment (or an optional `.env` file beside
manage.py) through django-environ; the README lists each variable. This is
the only module that reads the environment.
"""

import hashlib
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from registrations.mapping import ACTIVE_STATUSES  # Verifik's vocabulary: pure, imports nothing of Django

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DJANGO_DEBUG", default=False)


# A development key only when DEBUG is on: a production process without a
# real key must refuse to start rather than sign sessions with a known value.
if DEBUG:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-development-key-do-not-deploy")
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off; "
            "set it to a long random string (or set DJANGO_DEBUG=true for local development)."
        )

# The key of the audit trail's hash chain (registrations/audit_chain.py), which the database's owner
# must not have. Unset, it is derived from the secret key; set it on its own so that rotating
# DJANGO_SECRET_KEY leaves the events written before it verifiable.
AUDIT_CHAIN_KEY = (
    env("AUDIT_CHAIN_KEY", default="") or hashlib.sha256(b"verifik-audit-chain\x1f" + SECRET_KEY.encode()).hexdigest()
)

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS hardening, on by default in production; `check --deploy` is clean with these.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # load balancers probe over plain HTTP and take a redirect for a failure
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
# Behind a TLS-terminating proxy: trust its X-Forwarded-Proto, and take the client's address from the
# X-Forwarded-For entry DJANGO_TRUSTED_PROXY_COUNT hops from the right, the one the outermost of our
# proxies appended (verifik_admin/client_ip.py, for the lockout and the audit trail).
DJANGO_BEHIND_PROXY = env.bool("DJANGO_BEHIND_PROXY", default=False)
DJANGO_TRUSTED_PROXY_COUNT = env.int("DJANGO_TRUSTED_PROXY_COUNT", default=1)
if DJANGO_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if DJANGO_TRUSTED_PROXY_COUNT < 1:
        raise ImproperlyConfigured(
            f"DJANGO_TRUSTED_PROXY_COUNT must be at least 1 behind a proxy (got {DJANGO_TRUSTED_PROXY_COUNT})."
        )
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]  # preload is an opt-in commitment

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "csp",
    "access",
    "registrations",
]

MIDDLEWARE = [
    "verifik_admin.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "verifik_admin.health.AnonymousHealthMiddleware",  # a load balancer's probe needs nothing below
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "verifik_admin.middleware.RejectNulBytesMiddleware",
    "verifik_admin.middleware.StatementTimeoutMiddleware",  # DJANGO_DB_STATEMENT_TIMEOUT; static files never query
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): did this session pass the second factor
    "access.middleware.RequireVerifiedSessionMiddleware",  # with 2FA on, a session that did not is logged out
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "verifik_admin.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "verifik_admin.wsgi.application"

# Postgres only. Production names its server; with DEBUG on and no DATABASE_URL
# (`make run`, a developer's manage.py) the embedded Postgres of this checkout,
# under .data/, is started, or shared with the process that started it, with both roles.
# Two roles (README "Audit", DESIGN "Two database roles"): DATABASE_URL's is the one the web,
# workers and beat use, and owns no table; DATABASE_OWNER_URL's owns the schema and runs
# `migrate` (registrations/management/commands/migrate.py connects as it). Unset, one role does both and
# `check --deploy` warns.
DATABASE_URL = env("DATABASE_URL", default="")
DATABASE_OWNER_URL = env("DATABASE_OWNER_URL", default="")
if not DATABASE_URL:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set. It is required when DJANGO_DEBUG is off, "
            "e.g. postgres://user:password@host:5432/verifik_admin."
        )
    from .embedded import EmbeddedPostgres

    EMBEDDED_POSTGRES = EmbeddedPostgres(BASE_DIR / ".data" / "postgres").start()
    EMBEDDED_POSTGRES.create_database("verifik_admin")
    DATABASE_URL = EMBEDDED_POSTGRES.url("verifik_admin", app=True)
    DATABASE_OWNER_URL = DATABASE_OWNER_URL or EMBEDDED_POSTGRES.url("verifik_admin")
DATABASES = {"default": env.db_url_config(DATABASE_URL), "owner": env.db_url_config(DATABASE_OWNER_URL or DATABASE_URL)}
for _alias, _config in DATABASES.items():
    if _config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            f"{'DATABASE_URL' if _alias == 'default' else 'DATABASE_OWNER_URL'} must point at Postgres "
            "(postgres://...); other databases, SQLite included, are not supported."
        )
    _config.setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
if DATABASES["owner"]["NAME"] != DATABASES["default"]["NAME"]:
    raise ImproperlyConfigured("DATABASE_OWNER_URL must name the same database as DATABASE_URL.")
# The role migrations grant to (registrations/db_roles.py): the one the application connects as.
DATABASE_APP_ROLE = DATABASES["default"]["USER"]
# Every statement of a web request stops after this many seconds (0: never), and the user is asked to
# narrow the filter (verifik_admin/middleware.py). Workers and beat never get it: the sync has its own,
# VERIFIK_SYNC_STATEMENT_TIMEOUT.
DJANGO_DB_STATEMENT_TIMEOUT = env.float("DJANGO_DB_STATEMENT_TIMEOUT", default=10.0)
if DJANGO_DB_STATEMENT_TIMEOUT < 0:
    raise ImproperlyConfigured(
        f"DJANGO_DB_STATEMENT_TIMEOUT must be 0 (none) or more (got {DJANGO_DB_STATEMENT_TIMEOUT:g})."
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Access control (README "Access control", DESIGN "Access control") ----------

# The admin login form asks for a TOTP code (or a backup code) when this is on; read at request time.
DJANGO_REQUIRE_2FA = env.bool("DJANGO_REQUIRE_2FA", default=not DEBUG)
OTP_TOTP_ISSUER = "verifik-admin"  # the name authenticator apps show beside the account
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the devices' admin never shows a key, a QR code or backup codes

# Lockout (django-axes): after DJANGO_LOGIN_FAILURE_LIMIT failed logins for a username, every login
# of that username is refused until DJANGO_LOGIN_LOCKOUT_MINUTES after the last failure.
DJANGO_LOGIN_FAILURE_LIMIT = env.int("DJANGO_LOGIN_FAILURE_LIMIT", default=5)
DJANGO_LOGIN_LOCKOUT_MINUTES = env.float("DJANGO_LOGIN_LOCKOUT_MINUTES", default=15)
if DJANGO_LOGIN_FAILURE_LIMIT < 1 or DJANGO_LOGIN_LOCKOUT_MINUTES <= 0:
    raise ImproperlyConfigured(
        "DJANGO_LOGIN_FAILURE_LIMIT must be at least 1 and DJANGO_LOGIN_LOCKOUT_MINUTES above 0."
    )
AUTHENTICATION_BACKENDS = [
    "access.backends.LockoutBackend",  # refuses locked-out usernames before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
# The two DJANGO_LOGIN_* settings above, read per request (so override_settings reaches them too).
AXES_FAILURE_LIMIT = "access.lockout.failure_limit"
AXES_COOLOFF_TIME = "access.lockout.cool_off"
# Per username, wherever the attempts come from (DESIGN "Access control": per address, one office
# behind NAT, or every client behind a misconfigured proxy, would lock each other out). Axes warns
# about any list without the address (axes.W006, silenced below): rotating user agents or cookies
# buys nothing here, since the failures of a username are summed over all of them.
AXES_LOCKOUT_PARAMETERS = ["username"]
SILENCED_SYSTEM_CHECKS += ["axes.W006"]
AXES_RESET_ON_SUCCESS = True  # a complete login (password and second factor) clears the count
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the end time the lockout page shows stays true
AXES_LOCKOUT_CALLABLE = "access.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "verifik_admin.client_ip.client_ip"
AXES_VERBOSE = False  # no start-up banner in every process's log; failures and lockouts are still logged
# "token": an enrolment link's (access/enrolment_links.py), in the query string of its page.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token", "csrfmiddlewaretoken", "token"]

# Sessions end after DJANGO_SESSION_IDLE_MINUTES without a request, and when the browser closes.
DJANGO_SESSION_IDLE_MINUTES = env.float("DJANGO_SESSION_IDLE_MINUTES", default=30)
if DJANGO_SESSION_IDLE_MINUTES <= 0:
    raise ImproperlyConfigured("DJANGO_SESSION_IDLE_MINUTES must be above 0.")
SESSION_COOKIE_AGE = int(DJANGO_SESSION_IDLE_MINUTES * 60)
SESSION_SAVE_EVERY_REQUEST = True  # every request pushes the expiry forward: an idle timeout, not an absolute one
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Content-Security-Policy (django-csp 4): nothing inline, nothing from elsewhere, never framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# Dates in the admin carry their time zone (verifik_admin/formats/).
FORMAT_MODULE_PATH = ["verifik_admin.formats"]

# WhiteNoise serves the collected files (`collectstatic`, the Procfile's release step):
# compressed (gzip, brotli) and with content hashes in their names, so browsers cache them forever.
STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Verifik -----------------------------------------------------------------

# Every populate the detail endpoint documents; the list endpoint accepts a subset.
VERIFIK_ALL_POPULATES = [
    "project",
    "projectFlow",
    "emailValidation",
    "phoneValidation",
    "biometricValidation",
    "documentValidation",
    "informationValidation",
    "person",
    "face",
    "documentFace",
    "compareFaceVerification",
    "cryptoValidation",
    "formSubmission",
    "signature",
    "accessControlLog",
]

VERIFIK_API_BASE_URL = env("VERIFIK_API_BASE_URL", default="https://api.verifik.co")
VERIFIK_API_TOKEN = env("VERIFIK_API_TOKEN", default="")
VERIFIK_TIMEOUT = env.float("VERIFIK_TIMEOUT", default=30.0)
VERIFIK_MAX_RETRIES = env.int("VERIFIK_MAX_RETRIES", default=5)
VERIFIK_BACKOFF = env.float("VERIFIK_BACKOFF", default=0.5)  # first retry delay, doubled each time
VERIFIK_RETRY_AFTER_CAP = env.float("VERIFIK_RETRY_AFTER_CAP", default=60.0)
VERIFIK_PAGE_SIZE = env.int("VERIFIK_PAGE_SIZE", default=100)
if not 1 <= VERIFIK_PAGE_SIZE <= 100:
    raise ImproperlyConfigured(f"VERIFIK_PAGE_SIZE must be between 1 and 100 (got {VERIFIK_PAGE_SIZE}).")
VERIFIK_POPULATES = env.list("VERIFIK_POPULATES", default=VERIFIK_ALL_POPULATES)
VERIFIK_SYNC_DETAILS = env.bool("VERIFIK_SYNC_DETAILS", default=True)
# A full sync of more pages than this is split across workers: one walk per status, statuses longer than
# this cut into page ranges of this many pages. 0 = never split (one sequential walk).
VERIFIK_SYNC_PARTITION_PAGES = env.int("VERIFIK_SYNC_PARTITION_PAGES", default=100)
if VERIFIK_SYNC_PARTITION_PAGES < 0:
    raise ImproperlyConfigured(f"VERIFIK_SYNC_PARTITION_PAGES must be 0 or more (got {VERIFIK_SYNC_PARTITION_PAGES}).")
# A webhook's refresh waits this long in the queue, so a burst of deliveries for one registration costs one GET.
VERIFIK_WEBHOOK_DEBOUNCE_SECONDS = env.float("VERIFIK_WEBHOOK_DEBOUNCE_SECONDS", default=1.0)
# A full sync refuses to mark more than this fraction of the stored registrations removed upstream at once.
VERIFIK_REMOVAL_MAX_FRACTION = env.float("VERIFIK_REMOVAL_MAX_FRACTION", default=0.05)
# The detail backlog: a queued fetch is not queued again for this long; after this many failures in a row
# a registration backs off (1 h, doubling, at most a day).
VERIFIK_DETAIL_REQUEUE_MINUTES = env.float("VERIFIK_DETAIL_REQUEUE_MINUTES", default=60)
VERIFIK_DETAIL_MAX_FAILURES = env.int("VERIFIK_DETAIL_MAX_FAILURES", default=5)
# Deadlines: a listing sync stops after VERIFIK_SYNC_TIME_LIMIT seconds (its Celery task has soft and hard
# limits just past it); refresh and detail tasks after VERIFIK_TASK_TIME_LIMIT; any one statement of a
# sync after VERIFIK_SYNC_STATEMENT_TIMEOUT. A run that hits one fails with that reason and frees the lock.
VERIFIK_SYNC_TIME_LIMIT = env.float("VERIFIK_SYNC_TIME_LIMIT", default=2 * 3600)
VERIFIK_TASK_TIME_LIMIT = env.float("VERIFIK_TASK_TIME_LIMIT", default=120)
VERIFIK_SYNC_STATEMENT_TIMEOUT = env.float("VERIFIK_SYNC_STATEMENT_TIMEOUT", default=300)
# SyncRuns and webhook deliveries older than this are pruned daily (the latest full sync of each outcome stays).
VERIFIK_KEEP_RUNS_DAYS = env.int("VERIFIK_KEEP_RUNS_DAYS", default=90)
# Keys dropped, at any depth, from `raw` and `populated` before they are stored (bulky or sensitive content).
VERIFIK_RAW_REDACT = env.list("VERIFIK_RAW_REDACT", default=[])
# Largest stored part of a payload (one top-level key of `raw`, one populated object), in bytes of JSON.
VERIFIK_RAW_MAX_PART_BYTES = env.int("VERIFIK_RAW_MAX_PART_BYTES", default=64 * 1024)
# Webhooks: POST /webhooks/verifik/<secret>/ (the route answers 404 while this is empty).
VERIFIK_WEBHOOK_SECRET = env("VERIFIK_WEBHOOK_SECRET", default="")
VERIFIK_WEBHOOK_MAX_BYTES = env.int("VERIFIK_WEBHOOK_MAX_BYTES", default=256 * 1024)
# Personal data: how long a reveal (with a reason, audited) shows one registration unmasked to a user without view_pii.
# At most VERIFIK_REVEAL_DAILY_LIMIT reveals per user in any 24 hours; past it a reveal is refused (and audited).
VERIFIK_REVEAL_MINUTES = env.int("VERIFIK_REVEAL_MINUTES", default=15)
if not 1 <= VERIFIK_REVEAL_MINUTES <= 60:
    raise ImproperlyConfigured(f"VERIFIK_REVEAL_MINUTES must be between 1 and 60 (got {VERIFIK_REVEAL_MINUTES}).")
VERIFIK_REVEAL_DAILY_LIMIT = env.int("VERIFIK_REVEAL_DAILY_LIMIT", default=20)
if VERIFIK_REVEAL_DAILY_LIMIT < 1:
    raise ImproperlyConfigured(f"VERIFIK_REVEAL_DAILY_LIMIT must be 1 or more (got {VERIFIK_REVEAL_DAILY_LIMIT}).")
# Review desk: what sends a registration to the queue, four eyes on risky approvals, how long one may wait.
VERIFIK_REVIEW_RED_FLAGS = env.int("VERIFIK_REVIEW_RED_FLAGS", default=3)
VERIFIK_REVIEW_FOUR_EYES = env.bool("VERIFIK_REVIEW_FOUR_EYES", default=True)
VERIFIK_REVIEW_SLA_HOURS = env.float("VERIFIK_REVIEW_SLA_HOURS", default=24.0)
if VERIFIK_REVIEW_RED_FLAGS < 1 or VERIFIK_REVIEW_SLA_HOURS <= 0:
    raise ImproperlyConfigured("VERIFIK_REVIEW_RED_FLAGS must be at least 1 and VERIFIK_REVIEW_SLA_HOURS above 0.")
# Retention: personal data of registrations removed upstream longer ago than this is erased daily (0: never).
VERIFIK_PURGE_REMOVED_AFTER_DAYS = env.int("VERIFIK_PURGE_REMOVED_AFTER_DAYS", default=0)
if VERIFIK_PURGE_REMOVED_AFTER_DAYS < 0:
    raise ImproperlyConfigured(
        f"VERIFIK_PURGE_REMOVED_AFTER_DAYS must be 0 (never) or more (got {VERIFIK_PURGE_REMOVED_AFTER_DAYS})."
    )

# --- Logging -------------------------------------------------------------------

# One line per record, JSON (for the log store) or plain text (for a terminal).
# Every line carries the bound context (run_id, task_id, request_id) and passes
# the redaction of secrets (the webhook secret sits in request paths Django logs),
# in the message and, through the formatter, in every other field.
LOG_FORMAT = env("DJANGO_LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"DJANGO_LOG_FORMAT must be json or plain (got {LOG_FORMAT!r}).")
LOG_SECRETS = [VERIFIK_WEBHOOK_SECRET, VERIFIK_API_TOKEN, env("AUDIT_CHAIN_KEY", default="")]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "verifik_admin.logs.ContextFilter"},
        "redact": {"()": "verifik_admin.logs.RedactSecretsFilter", "secrets": LOG_SECRETS},
    },
    "formatters": {
        "plain": {"()": "verifik_admin.logs.PlainFormatter", "secrets": LOG_SECRETS},
        "json": {"()": "verifik_admin.logs.JsonFormatter", "secrets": LOG_SECRETS},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context", "redact"]}
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    # The request line comes from RequestIdMiddleware (with the request id); runserver's own is noise.
    "loggers": {"django.server": {"level": "WARNING"}, "embedded_postgres": {"level": "WARNING"}},
}

# --- Celery --------------------------------------------------------------------

# Tasks go through a broker (Redis; `make run` starts an embedded Valkey) to the
# workers. Eager mode (a task runs inside its caller) is never a fallback: only
# CELERY_TASK_ALWAYS_EAGER=true turns it on, for tests and debugging. With DEBUG
# on and neither, everything that needs no task still works; enqueueing says
# that no broker is configured (verifik_admin/celery.py).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
if not CELERY_BROKER_URL and not CELERY_TASK_ALWAYS_EAGER and not DEBUG:
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL is not set. It is required when DJANGO_DEBUG is off, e.g. redis://127.0.0.1:6379/0 "
        "(or set CELERY_TASK_ALWAYS_EAGER=true to run tasks inline, for tests and debugging only)."
    )
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a task lost with its worker runs again; every task is idempotent
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3 * 3600)}
if CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= VERIFIK_SYNC_TIME_LIMIT + 300:
    # Redis would hand a still-running sync (acks_late) to a second worker.
    raise ImproperlyConfigured(
        "VERIFIK_SYNC_TIME_LIMIT plus 300 s must stay below CELERY_VISIBILITY_TIMEOUT "
        f"({VERIFIK_SYNC_TIME_LIMIT:g} + 300 >= {CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout']})."
    )
CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # workers and beat log through LOGGING above
# Beat answers pings (as celerybeat@host) only while its last tick is recent: under
# 2x its loop interval, and at least 60 s. The health check counts on both.
CELERY_BEAT_ENABLE_REMOTE_CONTROL = True
CELERY_BEAT_MAX_LOOP_INTERVAL = 30

VERIFIK_ACTIVE_SYNC_MINUTES = env.float("VERIFIK_ACTIVE_SYNC_MINUTES", default=5)
VERIFIK_FULL_SYNC_HOURS = env.float("VERIFIK_FULL_SYNC_HOURS", default=24)
VERIFIK_TASK_MAX_RETRIES = env.int("VERIFIK_TASK_MAX_RETRIES", default=5)
VERIFIK_TASK_RETRY_BACKOFF = env.int("VERIFIK_TASK_RETRY_BACKOFF", default=30)  # whole seconds, doubled per retry
# Leases (registrations/sync/leases.py): a listing run or partition holds an advisory lock and beats a heartbeat
# every page; the reaper (every VERIFIK_REAPER_SECONDS) fails one whose lock is free or heartbeat older than
# VERIFIK_RUN_LEASE_SECONDS, and walks a partition again from its last committed page, up to
# VERIFIK_PARTITION_ATTEMPTS attempts in all.
VERIFIK_REAPER_SECONDS = env.float("VERIFIK_REAPER_SECONDS", default=30)
VERIFIK_RUN_LEASE_SECONDS = env.float("VERIFIK_RUN_LEASE_SECONDS", default=120)
VERIFIK_PARTITION_ATTEMPTS = env.int("VERIFIK_PARTITION_ATTEMPTS", default=3)
if VERIFIK_REAPER_SECONDS <= 0 or VERIFIK_RUN_LEASE_SECONDS <= 0 or VERIFIK_PARTITION_ATTEMPTS < 1:
    raise ImproperlyConfigured(
        "VERIFIK_REAPER_SECONDS and VERIFIK_RUN_LEASE_SECONDS must be above 0, VERIFIK_PARTITION_ATTEMPTS at least 1."
    )


def _per_second(rate):
    """`10/s`, `600/m`, `36000/h` or a bare number as requests per second (0 or empty: none)."""
    number, _, unit = str(rate).strip().partition("/")
    try:
        return float(number or 0) / {"": 1, "s": 1, "m": 60, "h": 3600}[unit.strip()]
    except (KeyError, ValueError):
        raise ImproperlyConfigured(f"Cannot read the rate {rate!r}: write 10/s, 600/m or 36000/h.") from None


# One API budget per Verifik account (registrations/budget.py): requests per second for every process and
# machine together, in a token bucket in Redis (this one, else the broker's; neither: in each process alone).
# VERIFIK_DETAIL_RATE (per worker process: 10/s, 600/m) is its deprecated name, honoured for one release.
VERIFIK_DETAIL_RATE = env("VERIFIK_DETAIL_RATE", default="")
VERIFIK_API_RATE = env.float("VERIFIK_API_RATE", default=_per_second(VERIFIK_DETAIL_RATE) or 10.0)
if VERIFIK_API_RATE <= 0:
    raise ImproperlyConfigured(f"VERIFIK_API_RATE must be above 0 requests per second (got {VERIFIK_API_RATE:g}).")
# The broker's Redis by default; a broker that is not Redis (amqp://) lends nothing: set this one then.
_BROKER_IS_REDIS = CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://"))
VERIFIK_BUDGET_REDIS_URL = env("VERIFIK_BUDGET_REDIS_URL", default=CELERY_BROKER_URL if _BROKER_IS_REDIS else "")


CELERY_BEAT_SCHEDULE = {
    "sync-active-registrations": {
        "task": "registrations.tasks.sync_registrations",
        "schedule": timedelta(minutes=VERIFIK_ACTIVE_SYNC_MINUTES),
        "kwargs": {"statuses": list(ACTIVE_STATUSES), "trigger": "schedule"},
    },
    "sync-all-registrations": {
        "task": "registrations.tasks.sync_registrations",
        "schedule": timedelta(hours=VERIFIK_FULL_SYNC_HOURS),
        "kwargs": {"trigger": "schedule"},
    },
    "prune-sync-history": {
        "task": "registrations.tasks.prune_sync_history",
        "schedule": timedelta(days=1),
    },
    "purge-removed-registrations": {  # does nothing while VERIFIK_PURGE_REMOVED_AFTER_DAYS is 0
        "task": "registrations.tasks.purge_removed_registrations",
        "schedule": timedelta(days=1),
    },
    "reap-stalled-work": {
        "task": "registrations.tasks.reap_stalled_work",
        "schedule": timedelta(seconds=VERIFIK_REAPER_SECONDS),
    },
}

# --- Health (GET /health/ and the admin index) --------------------------------

HEALTH_FULL_SYNC_MAX_AGE = timedelta(hours=2 * VERIFIK_FULL_SYNC_HOURS)  # two full-sync intervals
HEALTH_ACTIVE_SYNC_MAX_AGE = timedelta(minutes=3 * VERIFIK_ACTIVE_SYNC_MINUTES)  # three active-sync intervals
HEALTH_PING_TIMEOUT = timedelta(seconds=1)  # how long workers and beat get to answer a ping
# Anonymous callers get the last report, refreshed in the background at most once per HEALTH_CACHE_SECONDS
# for every process together; a staff session or `Authorization: Bearer HEALTH_TOKEN` gets a fresh one.
HEALTH_CACHE_SECONDS = env.float("HEALTH_CACHE_SECONDS", default=10.0)
if HEALTH_CACHE_SECONDS <= 0:
    raise ImproperlyConfigured(f"HEALTH_CACHE_SECONDS must be above 0 (got {HEALTH_CACHE_SECONDS:g}).")
HEALTH_TOKEN = env("HEALTH_TOKEN", default="")
# The shared report lives in the broker's Redis (no service of its own); without one, in each process alone.
# "health-local" is where a process keeps its own while that Redis cannot be reached.
_LOCAL_CACHE = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
CACHES = {
    "default": _LOCAL_CACHE,
    "health": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CELERY_BROKER_URL,
        "KEY_PREFIX": "verifik-admin-health",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
    if _BROKER_IS_REDIS
    else {**_LOCAL_CACHE, "LOCATION": "health"},
    "health-local": {**_LOCAL_CACHE, "LOCATION": "health-local"},
}
