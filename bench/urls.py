"""The product's URLs, plus the stock admin the bench compares against (/stock/)."""

from django.urls import path

from verifik_admin.urls import urlpatterns as product

from .stock_admin import stock_site

urlpatterns = [*product, path("stock/", stock_site.urls)]
