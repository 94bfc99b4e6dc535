from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """A mirror is read-only: editing Verifik's data here would lie to the user."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
