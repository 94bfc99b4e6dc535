import pytest

from registrations.simulator import Faults, SimulatedVerifik, SimulatorServer

TOKEN = "test-token-5e77c0de"


@pytest.fixture
def verifik(settings):
    """Start the simulator on a real socket and point the settings at it: `account = verifik(count=...)`."""
    servers = []

    def start(count=40, seed=7, faults=None, list_keys="full", token=TOKEN):
        account = SimulatedVerifik(count=count, seed=seed, token=token, list_keys=list_keys, faults=faults or Faults())
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
