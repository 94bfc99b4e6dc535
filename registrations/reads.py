"""Reads of personal data on record: the audit events of pages that show people.

A registration's page writes `view` (the admin's change view); its History page writes
`view` too, with `{"page": "history"}`. A list page or a search that shows at least one row
unmasked (to a holder of view_pii, or rows under the user's open reveals) writes one `list`
event for the page: the query string decoded and masked (privacy.mask_query), the rows shown
and how many of them were unmasked. A page that showed every row masked writes nothing: it
showed no one's data. The admin calls these after the page was built; logic stays here.
"""

from . import audit, privacy
from .models import AuditAction


def record_list(request, rows, query):
    """One `list` event for a page of `rows` (each carrying its `pii_lens`), if any was shown unmasked."""
    rows = list(rows)
    unmasked = sum(1 for row in rows if getattr(row, "pii_lens", privacy.MASKED).unmasked)
    if not unmasked:
        return None
    details = {"query": privacy.mask_query(query), "rows": len(rows), "unmasked": unmasked}
    return audit.record(AuditAction.LIST, request=request, details=details)


def record_history(request, registration):
    """The `view` event of a registration's History page (its whole timeline)."""
    return audit.record(AuditAction.VIEW, registration=registration, request=request, details={"page": "history"})
