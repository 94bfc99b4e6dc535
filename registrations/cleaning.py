"""What Postgres cannot store, made storable before mapping. Pure: no I/O, no settings.

Decisions (docs/DESIGN.md, "Bad records"): NUL characters are removed from
every string and key (Postgres text and jsonb refuse them); unpaired
surrogates become U+FFFD (not valid UTF-8); NaN and infinities become null
(not JSON); containers nested deeper than MAX_DEPTH are replaced by a marker.
Everything else is kept exactly as sent. Integers and dates are judged by
the mapping, which rejects what no column can hold.
"""

import math
import re

MAX_DEPTH = 64
DEPTH_MARKER = {"_truncated": f"nested deeper than {MAX_DEPTH} levels"}
# Tokens whose presence in a payload's canonical JSON means it may need cleaning: an escaped NUL, an escaped
# surrogate (canonical JSON escapes every non-ASCII character, so a lone one shows), NaN or an infinity.
_SUSPECT = re.compile(r"\\u0000|\\ud[89a-f]|NaN|Infinity")


def needs_cleaning(json_text):
    """Cheap pre-check on a payload's canonical JSON (str) or its JSON as received (bytes).

    Most payloads skip the walk entirely. Received bytes come only from a page msgspec
    read, and msgspec refuses NaN, infinities and lone surrogates: a NUL and depth remain.
    """
    if isinstance(json_text, bytes):
        brackets = json_text.count(b"{") + json_text.count(b"[")
        return brackets > MAX_DEPTH or b"\\u0000" in json_text
    if json_text.count("{") + json_text.count("[") > MAX_DEPTH:
        return True  # could be deeper than allowed; the walk decides
    return _SUSPECT.search(json_text) is not None


def clean(payload):
    """Return (cleaned payload, number of values changed)."""
    changes = 0

    def text(value):
        nonlocal changes
        cleaned = value.replace("\x00", "") if "\x00" in value else value
        try:
            cleaned.encode("utf-8")
        except UnicodeEncodeError:
            cleaned = cleaned.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        if cleaned is not value:
            changes += 1
        return cleaned

    def walk(value, depth):
        nonlocal changes
        if isinstance(value, str):
            return text(value)
        if isinstance(value, float) and not math.isfinite(value):
            changes += 1
            return None
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                changes += 1
                return dict(DEPTH_MARKER)
            if isinstance(value, list):
                return [walk(v, depth + 1) for v in value]
            return {text(k) if isinstance(k, str) else k: walk(v, depth + 1) for k, v in value.items()}
        return value

    cleaned = walk(payload, 0)
    return cleaned, changes
