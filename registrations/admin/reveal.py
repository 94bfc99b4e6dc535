"""The Reveal button on a registration's page: POST <pk>/reveal/ with a reason (registrations.reveals decides)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone

from .. import privacy, reveals
from . import rendering
from .per_request import open_reveals


class RevealMixin:
    """For AppRegistrationAdmin: the reveal view and what the page says about masking."""

    def reveal_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/reveal/",
                self.admin_site.admin_view(self.reveal_view),
                name="{}_{}_reveal".format(*info),
            )
        ]

    def reveal_view(self, request, object_id):
        """POST: show this registration unmasked to this user for a while; the reason is required and audited."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        view_pii = reveals.has_view_pii(request.user)
        if not view_pii and not reveals.can_reveal(request.user):
            raise PermissionDenied  # operators, and anyone else not given reveal_pii
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No registration with this id.")
        back = HttpResponseRedirect(reverse("admin:registrations_appregistration_change", args=[obj.pk]))
        if view_pii:
            self.message_user(request, "You see this registration's personal data already.", messages.INFO)
            return back
        try:
            revealed = reveals.reveal(obj, request.user, request.POST.get("reason", ""), request=request)
        except reveals.RevealError as error:
            self.message_user(request, str(error), messages.ERROR)
            return back
        if revealed.again:
            self.message_user(
                request,
                f"Personal data is already revealed to you until {rendering.when(revealed.until)}; "
                "revealing it again does not extend that.",
                messages.INFO,
            )
            return back
        self.message_user(
            request,
            f"Personal data revealed to you until {rendering.when(revealed.until)}; the reveal is in the audit "
            "trail with your reason.",
            messages.SUCCESS,
        )
        return back

    def privacy_context(self, request, obj):
        """Whether the page is masked, the reveal form, and the page's subtitle (never the unmasked name)."""
        lens = getattr(obj, "pii_lens", privacy.MASKED)
        view_pii = reveals.has_view_pii(request.user)
        revealed_until = None
        if lens.unmasked and not view_pii:
            opened = open_reveals(request).get(obj.pk)
            revealed_until = opened and privacy.reveal_ends(opened, settings.VERIFIK_REVEAL_MINUTES)
        return {
            "subtitle": lens.name(obj.name) or obj.verifik_id,
            "pii_masked": not lens.unmasked,
            "revealed_until": revealed_until and timezone.localtime(revealed_until),
            "reveal_minutes": settings.VERIFIK_REVEAL_MINUTES,
            "reveal_reason_max": reveals.REASON_MAX_LENGTH,
            "reveal_reason_min": reveals.REASON_MIN_LENGTH,
            "can_reveal": reveals.can_reveal(request.user),
        }
