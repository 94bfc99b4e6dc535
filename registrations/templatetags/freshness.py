"""`{% lane_freshness as freshness %}`: the lanes' "current as of" times, for the list and the admin index."""

from django import template

from ..sync.freshness import lane_freshness as _lane_freshness

register = template.Library()


@register.simple_tag
def lane_freshness():
    return _lane_freshness()
