from django.contrib import admin
from django.urls import path

admin.site.site_header = "verifik-admin"
admin.site.site_title = "verifik-admin"
admin.site.index_title = "Back office"

urlpatterns = [
    path("admin/", admin.site.urls),
]
