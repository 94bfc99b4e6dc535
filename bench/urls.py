from django.contrib import admin
from django.urls import path

from .stock_admin import stock_site

urlpatterns = [path("admin/", admin.site.urls), path("stock/", stock_site.urls)]
