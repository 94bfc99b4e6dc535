"""Errors and notes of our own records (sync runs, webhook deliveries, refresh outcomes) as the viewer may read them.

They are free text that may quote an applicant (Verifik's error about an email, a rejected
record's reason): masked like notes (privacy.mask_text) for users without view_pii. A list
attaches the viewer's lens to each row, a detail view to its object; no lens means masked.
"""

from django.contrib.admin.views.main import ChangeList

from .. import privacy, reveals


def viewer_lens(request):
    """Our records belong to no one registration, so no reveal opens them: unmasked with view_pii only."""
    return privacy.UNMASKED if reveals.has_view_pii(request.user) else privacy.MASKED


def shown_text(request, text):
    """One error or note, for a message to this request's user."""
    return viewer_lens(request).text(text)


def shown(obj, text):
    """`text` of `obj` through the lens attached to it (masked when none was: fail closed)."""
    return getattr(obj, "pii_lens", privacy.MASKED).text(text)


class LensedChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        lens = viewer_lens(request)
        rows = list(self.result_list)
        for row in rows:
            row.pii_lens = lens
        self.result_list = rows


class MaskedTextMixin:
    """For the ModelAdmins of sync runs and webhook deliveries: every row and object carries the viewer's lens."""

    def get_changelist(self, request, **kwargs):
        return LensedChangeList

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.pii_lens = viewer_lens(request)
        return obj
