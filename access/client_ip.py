"""The client's address, as django-axes records it (AXES_CLIENT_IP_CALLABLE)."""

import ipaddress

from django.conf import settings


def client_ip(request):
    """REMOTE_ADDR, or behind the proxy (DJANGO_BEHIND_PROXY) the address it appended to X-Forwarded-For.

    Only the last entry is the proxy's own word: anything before it came from the client and can
    be forged. A value that is not an IP address is ignored (REMOTE_ADDR is used instead).
    """
    if settings.DJANGO_BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        if forwarded:
            try:
                return str(ipaddress.ip_address(forwarded))
            except ValueError:
                pass
    return request.META.get("REMOTE_ADDR")
