"""The comparison for scenario 6: a stock ModelAdmin with the same columns, filters and search, untuned."""

from django.contrib import admin

from registrations.models import AppRegistration

stock_site = admin.AdminSite(name="stock")


@admin.register(AppRegistration, site=stock_site)
class StockAppRegistrationAdmin(admin.ModelAdmin):
    list_display = [
        "name", "email", "phone", "status", "current_step", "red_flags", "failed_validations_count", "notes",
        "created_at", "updated_at", "last_synced_at",
    ]  # fmt: skip
    list_filter = [
        "status", "red_flags", "failed_email_count", "failed_phone_count", "failed_biometric_count",
        "failed_document_count", "language", "project_id", "removed_upstream_at", "last_synced_at",
    ]  # fmt: skip
    search_fields = ["name", "email", "phone", "notes"]
    date_hierarchy = "created_at"
