"""The client's address, one rule for the lockout (AXES_CLIENT_IP_CALLABLE) and the audit trail."""

import ipaddress

from django.conf import settings


def client_ip(request):
    """REMOTE_ADDR or, behind the proxy (DJANGO_BEHIND_PROXY), the entry DJANGO_TRUSTED_PROXY_COUNT hops from the right
    of X-Forwarded-For.

    Each of our proxies appends the address it was reached from, so the last N entries are theirs
    and the N-th from the right is what the outermost one saw: the client. Everything left of it
    came from the client and is never read, whatever it looks like (an internal client cannot pass
    for someone else). A header with fewer entries than N reached us through fewer proxies: its
    left-most entry, the farthest any of them saw, is taken. An entry there that is not an address
    (or no header at all) gives REMOTE_ADDR, so garbage never reaches the database.
    """
    remote = request.META.get("REMOTE_ADDR")
    if not settings.DJANGO_BEHIND_PROXY:
        return remote
    entries = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if entries == [""]:
        return remote
    chosen = entries[-min(settings.DJANGO_TRUSTED_PROXY_COUNT, len(entries))]
    try:
        address = ipaddress.ip_address(chosen)
    except ValueError:
        return remote
    return remote if getattr(address, "scope_id", None) else str(address)  # inet has no zone (fe80::1%eth0)
