"""For AppRegistrationAdmin: list pages and the History page leave their audit events (registrations.reads)."""

from .. import reads


class ReadsAuditedMixin:
    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if response.status_code == 200 and changelist is not None:
            reads.record_list(request, changelist.result_list, request.GET.urlencode())
        return response

    def history_view(self, request, object_id, extra_context=None):
        response = super().history_view(request, object_id, extra_context)
        shown = (getattr(response, "context_data", None) or {}).get("object")
        if response.status_code == 200 and shown is not None:  # shown: the permission check passed
            reads.record_history(request, shown)
        return response
