import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.db import connection
from django.test import Client

from registrations.simulator import Faults, SimulatedVerifik, SimulatorServer

from .support import staff, verify_session

TOKEN = "test-token-5e77c0de"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, dropped at the end even when something still holds a connection to it.

    A worker killed mid-task, or a thread of a live server, can leave a session open;
    DROP DATABASE then fails and the database stays behind. The benchmark smoke
    test's scratch database (named after the test database) goes too.
    """
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        name = connection.settings_dict["NAME"]
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}_bench_smoke" WITH (FORCE)')


@pytest.fixture(autouse=True)
def test_logins_pass_the_second_factor(monkeypatch):
    """The test client's force_login() and login() stand for a complete login: password and code.

    With DJANGO_REQUIRE_2FA on (as in production, and so in the tests) every request needs a session
    verified by django-otp. Tests that are about the login itself use the real form with real TOTP
    codes (tests/test_access.py); support.password_only_login() makes a session that is not verified.
    """
    force_login, login = Client.force_login, Client.login

    def verified_force_login(self, user, backend=None):
        force_login(self, user, backend)
        verify_session(self, user)

    def verified_login(self, **credentials):
        if not login(self, **credentials):
            return False
        verify_session(self, get_user_model()._default_manager.get(pk=self.session[SESSION_KEY]))
        return True

    monkeypatch.setattr(Client, "force_login", verified_force_login)
    monkeypatch.setattr(Client, "login", verified_login)


@pytest.fixture
def verifik(settings):
    """Start the simulator on a real socket and point the settings at it: `account = verifik(count=...)`."""
    servers = []

    def start(count=40, seed=7, faults=None, list_keys="full", token=TOKEN, cache_json=False):
        account = SimulatedVerifik(
            count=count, seed=seed, token=token, list_keys=list_keys, faults=faults or Faults(), cache_json=cache_json
        )
        server = SimulatorServer(account).start()
        servers.append(server)
        settings.VERIFIK_API_BASE_URL = server.url
        settings.VERIFIK_API_TOKEN = token
        settings.VERIFIK_BACKOFF = 0.001
        settings.VERIFIK_RETRY_AFTER_CAP = 0.05
        settings.VERIFIK_PAGE_SIZE = 10
        account.url = server.url
        return account

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def rita(client):
    """A member of Registration reviewers, logged in on the test client (password and second factor)."""
    user = staff("rita", "Registration reviewers")
    client.force_login(user)
    return user


@pytest.fixture
def otto(client):
    """A member of Registration operators, logged in on the test client (password and second factor)."""
    user = staff("otto", "Registration operators")
    client.force_login(user)
    return user


@pytest.fixture
def reviewer(client, rita):
    """The test client, logged in as rita (Registration reviewers)."""
    return client


@pytest.fixture
def operator(client, otto):
    """The test client, logged in as otto (Registration operators)."""
    return client
