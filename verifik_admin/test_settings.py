"""Settings for the test suite: the production settings, with test defaults for the environment.

Environment variables already set win, so `DATABASE_URL=... make test` points
the suite elsewhere. Tests always run on real servers: the Postgres named by
DATABASE_URL (CI: the system one, through TEST_DATABASE_URL in the Makefile) and
the Redis named by CELERY_TEST_BROKER_URL; when either is unset, an embedded
Postgres or Valkey under .data/test/ is started for this run and stopped at its
end. Child processes (real workers, subprocesses) inherit the resulting URLs.

DATABASE_URL's role (the system's or the embedded superuser) creates the test database and
runs the migrations, as the owner does in production; the application's role
(`verifik_app`, created here on either server) is what the migrations grant to, and the
tests about the two roles connect as it (tests/test_audit_chain.py).
"""

import os
from pathlib import Path

from .embedded import APP_PASSWORD, APP_ROLE, EmbeddedPostgres, EmbeddedValkey, create_app_role

TEST_DATA = Path(__file__).resolve().parent.parent / ".data" / "test"

if not os.environ.get("DATABASE_URL"):
    _postgres = EmbeddedPostgres(TEST_DATA / "postgres", fast=True).start()
    _postgres.create_database("verifik_admin")  # the suite uses test_verifik_admin, which Django creates
    os.environ["DATABASE_URL"] = _postgres.url("verifik_admin")
create_app_role(os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres")
if not os.environ.get("CELERY_TEST_BROKER_URL"):
    _valkey = EmbeddedValkey(TEST_DATA / "valkey").start()
    os.environ["CELERY_TEST_BROKER_URL"] = _valkey.url(15)

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
os.environ.setdefault("VERIFIK_API_BASE_URL", "http://127.0.0.1:9")  # tests point it at their simulator
os.environ.setdefault("VERIFIK_API_TOKEN", "test-token")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")  # the test client and live server speak plain HTTP
os.environ.setdefault("DJANGO_SECURE_COOKIES", "false")
os.environ.setdefault("VERIFIK_WEBHOOK_SECRET", "test-webhook-secret-long-enough-for-the-check")
# Most tests call tasks and read their outcome at once; the ones about real workers
# give them CELERY_BROKER_URL (a worker never runs its own tasks eagerly: verifik_admin/celery.py).
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
# The API budget is on in every test, high enough not to slow the suite; tests/test_budget.py sets its own.
os.environ.setdefault("VERIFIK_API_RATE", "1000")

from .settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
# Pages render without `collectstatic`: the hashed-name manifest is production's (tests/test_runtime.py covers it).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = True  # serve the apps' static files as in development
# The suite connects as the owner; the migrations grant the application's role, as in production.
DATABASE_APP_ROLE = APP_ROLE
TEST_APP_ROLE_PASSWORD = APP_PASSWORD
DATABASES["owner"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}  # noqa: F405
# tests/management/commands/flush.py: Django's flush between transactional tests, as the owner
# empties the audit table (its trigger disabled for that transaction only).
INSTALLED_APPS = [*INSTALLED_APPS, "tests"]  # noqa: F405
