"""CSV export over HTTP: the "Export to CSV" action (selected rows) and the list's Export button (every match).

Both hand the changelist's own queryset (its filters, search and order) to
`registrations.export`, which records the export and yields the rows; this module only
checks the permission and streams the response.
"""

from django.contrib import messages
from django.contrib.admin import action
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse

from .. import export

EXPORT_PERMISSION = "registrations.export_appregistration"


class ExportMixin:
    """For AppRegistrationAdmin: the export action, the export view and its permission."""

    def has_export_permission(self, request, obj=None):
        return request.user.has_perm(EXPORT_PERMISSION)

    def export_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [path("export/", self.admin_site.admin_view(self.export_view), name="{}_{}_export".format(*info))]

    @action(description="Export to CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        """The selected rows (or, with "select all", every row the list matches)."""
        return self.export_response(request, queryset, source="action")

    def export_view(self, request):
        """The list's Export button: a form posting to export/ with the list's query string; every row it matches.

        POST only, with the CSRF token (the admin view checks it): a link or a cross-site form cannot
        download the CSV in a user's name. The list's rules (lookups, sorts, search) hold here too.
        """
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request) or not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            self.message_user(request, "Nothing exported: the list's filters are not valid.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:registrations_appregistration_changelist") + f"?{ERROR_FLAG}=1")
        return self.export_response(request, changelist.queryset, source="list")

    def export_response(self, request, queryset, *, source):
        started = export.begin(queryset, request.user, query=request.GET.urlencode(), source=source, request=request)
        response = StreamingHttpResponse(
            export.lines(export.rows(queryset, request.user)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{export.filename()}"'
        response["Cache-Control"] = "no-store"
        response["X-Export-Rows"] = str(started.rows)
        return response
