"""The client's address, one rule for the lockout (AXES_CLIENT_IP_CALLABLE) and the audit trail."""

import ipaddress

from django.conf import settings

# Hops inside our own network: the proxy and load balancers in front of the web process.
INTERNAL_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
]


def internal(address):
    return any(address in network for network in INTERNAL_NETWORKS if network.version == address.version)


def client_ip(request):
    """REMOTE_ADDR or, behind the proxy (DJANGO_BEHIND_PROXY), the client's address in X-Forwarded-For.

    Each proxy appends the address it was reached from, so the entries are read from the right:
    hops inside our network (private, loopback, link-local) are passed over, and the first other
    address is the client's; what stands left of it came from the client and may be forged. With
    only internal hops the client is inside too: the first entry. A header that is not a list of
    addresses is ignored (REMOTE_ADDR), so garbage never reaches the database.
    """
    remote = request.META.get("REMOTE_ADDR")
    if not settings.DJANGO_BEHIND_PROXY:
        return remote
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    try:
        hops = [ipaddress.ip_address(entry.strip()) for entry in header.split(",")] if header.strip() else []
    except ValueError:
        return remote
    if not hops:
        return remote
    return str(next((hop for hop in reversed(hops) if not internal(hop)), hops[0]))
