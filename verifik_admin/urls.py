from django.contrib import admin
from django.urls import include, path

from access import views as access_views
from access.forms import LoginForm
from registrations import selectors
from registrations.webhooks import verifik_webhook

from . import health

admin.site.site_header = "verifik-admin"
admin.site.site_title = "verifik-admin"
admin.site.index_title = "Back office"
admin.site.login_form = LoginForm  # the second factor, when DJANGO_REQUIRE_2FA is on


def admin_index(request):
    """The admin's own index, with the service health (templates/admin/index.html) for staff."""
    context = {"health_checks": health.results_for_page(), "sync_health": selectors.sync_health()}
    return admin.site.index(request, extra_context=context)


urlpatterns = [
    path("health/", health.HealthView.as_view(), name="health"),
    path("admin/", admin.site.admin_view(admin_index)),  # before admin.site.urls, whose index it replaces
    path("admin/two-factor/", include("access.urls")),  # before admin.site.urls, whose catch-all would take it
    # The admin's own URL (admin:password_change reverses to it), under the lockout: access/views.py.
    path("admin/password_change/", admin.site.admin_view(access_views.password_change)),
    path("admin/", admin.site.urls),
    path("webhooks/verifik/<str:secret>/", verifik_webhook, name="verifik-webhook"),
]
