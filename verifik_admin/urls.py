from django.contrib import admin
from django.urls import path

from registrations.webhooks import verifik_webhook

admin.site.site_header = "verifik-admin"
admin.site.site_title = "verifik-admin"
admin.site.index_title = "Back office"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/verifik/<str:secret>/", verifik_webhook, name="verifik-webhook"),
]
