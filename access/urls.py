from django.contrib import admin
from django.urls import path

from . import views

app_name = "access"

urlpatterns = [
    path("", admin.site.admin_view(views.enrol), name="enrol"),
    path("backup-codes/", admin.site.admin_view(views.backup_codes), name="backup_codes"),
    # Not behind the admin's login: the link (?token=, kept out of the request log's path), with the
    # account's password, is what lets its user in.
    path("enrol/", views.enrol_link, name="enrol_link"),
]
