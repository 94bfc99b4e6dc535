from .registrations import AppRegistrationAdmin
from .sync_runs import SyncRunAdmin

__all__ = ["AppRegistrationAdmin", "SyncRunAdmin"]
