"""Settings for the test suite: the production settings, with test defaults for the environment.

Environment variables already set win, so `DATABASE_URL=... make test` points
the suite elsewhere.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/verifik_admin")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
os.environ.setdefault("VERIFIK_API_BASE_URL", "http://127.0.0.1:9")  # tests point it at their simulator
os.environ.setdefault("VERIFIK_API_TOKEN", "test-token")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")  # the test client and live server speak plain HTTP
os.environ.setdefault("DJANGO_SECURE_COOKIES", "false")
os.environ.setdefault("VERIFIK_WEBHOOK_SECRET", "test-webhook-secret")

from .settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
