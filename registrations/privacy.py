"""Who sees personal data, and how it looks masked: the only place masking rules live.

Pure functions (no I/O, no settings): the admin, the CSV export, the audit trail and the
timeline call them with what they read, so a value is masked the same way everywhere.
Personal data is a registration's name, email, phone and document numbers, and inside
the raw payload and populated objects everything that is not on the allow-list
(the key sets below and the rules of `_allowed`): a key Verifik adds tomorrow is masked
until someone decides it is not personal. Free text (notes, reasons, errors) is masked
by pattern and by the registration's own values; query strings are decoded first.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

from .mapping import is_object_id, parse_timestamp

STARS = "***"
PERSONAL = "[personal]"  # a value of a key off the allow-list, whose type has no masked form

EMAIL, PHONE, NAME, DOCUMENT, OTHER = "email", "phone", "name", "document", "other"

# Key names (compared lower-case, without "_", "-" and spaces) whose values are personal, and their masked form.
# Keys of no kind listed here and not allowed below are masked too (as PERSONAL): this table only
# chooses a readable mask, and keeps a personal key off the allow-list's rules ("taxId" is no id).
PERSONAL_KEYS = {
    "email": EMAIL,
    "emailaddress": EMAIL,
    "phone": PHONE,
    "phonenumber": PHONE,
    "mobile": PHONE,
    "cellphone": PHONE,
    "name": NAME,
    "fullname": NAME,
    "firstname": NAME,
    "lastname": NAME,
    "middlename": NAME,
    "surname": NAME,
    "givenname": NAME,
    "familyname": NAME,
    "documentnumber": DOCUMENT,
    "documentid": DOCUMENT,
    "idnumber": DOCUMENT,
    "nationalid": DOCUMENT,
    "passportnumber": DOCUMENT,
    "taxid": DOCUMENT,
    "dni": DOCUMENT,
    "cedula": DOCUMENT,
    "dateofbirth": OTHER,
    "birthdate": OTHER,
    "dob": OTHER,
    # Containers whose every value is personal, whatever its key or shape ({"address": {"state": ...}}).
    "address": OTHER,
    "location": OTHER,
}

# The allow-list: keys whose values a user without view_pii sees as Verifik sent them (see `_allowed`).
# Enumerations (a short token each): statuses, steps, outcomes, kinds, the language.
# The phone's country code is an enumeration too: the masked phone shows it anyway.
# Not "state": in an address it is a place ({"address": {"state": "Antioquia"}}).
ENUM_KEYS = {"status", "outcome", "kind", "type", "currentstep", "step", "language", "countrycode"}
# Counts (integers).
COUNT_KEYS = {"v", "version", "attempts", "maxattempts", "redflags", "total", "page", "pages", "limit"}
# Reasons: shown when the value is in REASONS, masked otherwise (a reason may quote the person).
REASON_KEYS = {"reason", "reasons", "failedreason", "manualverificationreason", "failedreasons"}
# The fixed vocabulary of reasons (compared case-insensitively): Verifik's and the simulator's codes.
REASONS = {
    "expired",
    "mismatch",
    "blurry image",
    "face does not match document",
    "multiple attempts from one device",
    "document expired",
    "document tampering",
    "liveness failed",
    "too many attempts",
    "invalid code",
    "not validated",
    "timeout",
}
SCORE_WORDS = ("score", "percentage", "confidence", "similarity")
ENUM_VALUE = re.compile(r"[A-Za-z0-9_.+ -]{1,40}")

# Deeper than this, a payload's branch is replaced by TOO_DEEP when masked: hostile nesting costs
# a marker, not a RecursionError (and nothing below it is shown unmasked).
MAX_DEPTH = 64
TOO_DEEP = "[too deep to show masked]"
EMAIL_PATTERN = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+\.[A-Za-z]{2,}")
# A run of 7 digits or more in free text (a phone, a document number), not part of a word or an id.
DIGITS_PATTERN = re.compile(r"(?<![\w*])\d{7,}(?!\w)")
WORD = re.compile(r"\S+")
# Query-string parameters whose values are what a user typed to find a person: the search box, and any
# lookup on a personal column or a payload (a refused lookup is still recorded as it was asked).
SEARCH_PARAMETER = "q"
# Keys of audit details that hold a query string (the export's filter, a list page's query).
QUERY_KEYS = {"filter", "query"}
PERSONAL_COLUMNS = {
    "name",
    "email",
    "phone",
    "country_code",
    "notes",
    "raw",
    "populated",
    "red_flags_details",
    "failed_email_validations",
    "failed_phone_validations",
    "failed_biometric_validations",
    "failed_document_validations",
}


def _initial(part):
    return (part[:1] + STARS) if part else STARS


def mask_email(value):
    """john.doe@example.com -> j***@e***.com: the first letters and the top-level domain."""
    if not value:
        return value
    text = str(value).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        return _initial(text)
    host, dot, tld = domain.rpartition(".")
    if not dot or not host:
        return f"{_initial(local)}@{_initial(domain)}"
    return f"{_initial(local)}@{_initial(host)}.{tld}"


def mask_phone(value, country_code=None):
    """+57 3001234567 -> +57 ******4567: the country code and the last 4 digits (2 of a short number)."""
    if not value and not country_code:
        return value
    digits = re.sub(r"\D", "", str(value or ""))
    keep = 4 if len(digits) >= 8 else 2 if len(digits) >= 5 else 0
    masked = "*" * (len(digits) - keep) + (digits[-keep:] if keep else "")
    return " ".join(part for part in (str(country_code or "").strip(), masked) if part)


def mask_name(value):
    """John Doe -> J*** D***: the first letter of each word."""
    if not value:
        return value
    return " ".join(_initial(word) for word in WORD.findall(str(value)))


def mask_document(value):
    """123456789 -> *****6789: the last 4 characters of a long number, 3 of a short one, none of a tiny one."""
    if value is None or value == "":
        return value
    text = re.sub(r"\s", "", str(value))
    keep = 4 if len(text) >= 8 else 3 if len(text) >= 6 else 0
    return "*" * (len(text) - keep) + (text[-keep:] if keep else "")


def mask_other(value):
    """A personal value of no known type (an address, a birth date, a form answer): a marker, nothing of it."""
    return PERSONAL


MASKS = {EMAIL: mask_email, PHONE: mask_phone, NAME: mask_name, DOCUMENT: mask_document, OTHER: mask_other}


def _normal(key):
    return re.sub(r"[_\-\s]", "", str(key)).lower()


def personal_kind(key):
    """The masked form a personal key's values take (EMAIL, PHONE, NAME, DOCUMENT, OTHER), or None."""
    return PERSONAL_KEYS.get(_normal(key))


def _is_timestamp(value):
    try:
        return isinstance(value, str) and parse_timestamp(value) is not None
    except ValueError:
        return False


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def _allowed(key, value):
    """Whether a scalar under `key` is on the allow-list (docs/DESIGN.md, "Why an allow-list").

    By key and by shape: an id is a Verifik object id (24 hex characters) under any key, a date
    is an ISO timestamp under a key ending in "at" (createdAt, validatedAt), a count an integer,
    a score a number, a status a short token, a reason one of REASONS; booleans are flags.
    """
    if value is None or value == "" or isinstance(value, bool):
        return True
    if is_object_id(value):
        return True
    name = _normal(key)
    if name.endswith("at") and _is_timestamp(value):
        return True
    if isinstance(value, int) and not isinstance(value, bool) and (name in COUNT_KEYS or name.endswith("count")):
        return True
    if _is_number(value) and any(word in name for word in SCORE_WORDS):
        return True
    if name in ENUM_KEYS and isinstance(value, str) and ENUM_VALUE.fullmatch(value):
        return True
    return name in REASON_KEYS and isinstance(value, str) and value.strip().casefold() in REASONS


def _mask_all(value, mask, depth=0):
    """Every scalar under a personal key: {"name": {"first": "Ana"}} is as personal as {"name": "Ana"}."""
    if depth > MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {k: _mask_all(v, mask, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_all(v, mask, depth + 1) for v in value]
    if value is None or isinstance(value, bool):
        return value
    return mask(value)


def mask_payload(value, known=(), depth=0, key=""):
    """A JSON value from Verifik (`raw`, populated objects, red flags, failed validations) as a user without
    view_pii sees it: allowed values as sent, personal keys in their masked form, anything else PERSONAL.

    A new object; the input is untouched. Objects and lists are walked whatever their key, each
    value judged by its own key (a list's items by the list's); `known` (the registration's own
    values) is masked out of the allowed strings too.
    """
    if depth > MAX_DEPTH:
        return TOO_DEEP
    kind = personal_kind(key)
    if kind:
        return _mask_all(value, MASKS[kind], depth)
    if isinstance(value, dict):
        return {k: mask_payload(item, known, depth + 1, k) for k, item in value.items()}
    if isinstance(value, list):
        return [mask_payload(item, known, depth + 1, key) for item in value]
    if not _allowed(key, value):
        return PERSONAL
    return mask_text(value, known) if isinstance(value, str) else value


def mask_details(value, known=(), depth=0):
    """Our own records about a registration (audit details): their strings are free text, masked as such,
    their query strings decoded and masked (mask_query), personal keys in their masked form."""
    if depth > MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        masked = {}
        for key, item in value.items():
            kind = personal_kind(key)
            if kind:
                masked[key] = _mask_all(item, MASKS[kind], depth + 1)
            elif key in QUERY_KEYS and isinstance(item, str):
                masked[key] = mask_query(item)
            else:
                masked[key] = mask_details(item, known, depth + 1)
        return masked
    if isinstance(value, list):
        return [mask_details(item, known, depth + 1) for item in value]
    if isinstance(value, str):
        return mask_text(value, known)
    return value


def mask_text(text, known=()):
    """Free text (notes, errors) with email addresses, long digit runs and the `known` personal values masked,
    in any case.

    `known` is (kind, value) pairs, e.g. the registration's own name and phone, which a
    note may repeat; a pattern alone cannot tell a name from other words.
    """
    if not text:
        return text
    text = str(text)
    pairs = [(kind, str(value)) for kind, value in known if value]
    # A name is also quoted a word at a time ("John", "DOE"): each word of three letters or more.
    pairs += [(kind, word) for kind, value in pairs if kind == NAME for word in value.split()]
    kinds = {value.casefold(): kind for kind, value in pairs if len(value) >= 3}
    if kinds:
        pattern = re.compile("|".join(re.escape(value) for value in sorted(kinds, key=len, reverse=True)), re.I)
        text = pattern.sub(lambda match: MASKS[kinds.get(match.group(0).casefold(), NAME)](match.group(0)), text)
    text = EMAIL_PATTERN.sub(lambda match: mask_email(match.group(0)), text)
    return DIGITS_PATTERN.sub(lambda match: mask_document(match.group(0)), text)


ERASED = "[erased]"


def erase_text(text, known):
    """Free text about a registration whose personal data is erased: its own values (`known`, a name also word
    by word), any email address and long digit runs replaced by ERASED, nothing of them kept."""
    if not text:
        return text
    text = str(text)
    values = [str(value) for _, value in known if value]
    values += [word for kind, value in known if kind == NAME and value for word in str(value).split()]
    values = sorted({value for value in values if len(value) >= 3}, key=len, reverse=True)
    if values:
        text = re.compile("|".join(re.escape(value) for value in values), re.I).sub(ERASED, text)
    return DIGITS_PATTERN.sub(ERASED, EMAIL_PATTERN.sub(ERASED, text))


def mask_search(term):
    """A search term or a lookup's value, typed to find a person: masked by what it looks like.

    An email as an email, digits as a document (its last 4), a Verifik id as it is (it names
    no one), anything else as a name (first letters).
    """
    term = (term or "").strip()
    if not term or is_object_id(term):
        return term
    if "@" in term:
        return mask_email(term)
    if not re.search(r"[^\d\s+().-]", term):
        return mask_document(term)
    return mask_name(term)


def mask_query(query):
    """A URL query string, decoded ("%40" is "@") and masked: what was searched for, as a list page or an
    export asked it, without the person. Returned decoded ("q=u***@e***.io&status=FAILED")."""
    parts = []
    for key, value in parse_qsl(str(query or "").lstrip("?"), keep_blank_values=True):
        column = key.split("__", 1)[0]
        if key == SEARCH_PARAMETER or column in PERSONAL_COLUMNS or personal_kind(column):
            value = mask_search(value)
        else:
            value = mask_text(value)
        parts.append(f"{mask_text(key)}={value}")  # a hostile key may carry an email too
    return "&".join(parts)


def with_queries_masked(details):
    """Audit details with their query strings decoded and masked, whoever reads them: events written before
    queries were masked on the way in read like the ones written since."""
    if not isinstance(details, dict):
        return details
    return {key: mask_query(v) if key in QUERY_KEYS and isinstance(v, str) else v for key, v in details.items()}


def can_see_pii(has_view_pii, revealed_at, now, minutes):
    """Unmasked for holders of `view_pii`, and for others within `minutes` of their latest reveal."""
    if has_view_pii:
        return True
    return revealed_at is not None and now < reveal_ends(revealed_at, minutes)


def reveal_ends(revealed_at, minutes):
    return revealed_at + timedelta(minutes=minutes)


def reveal_cutoff(now: datetime, minutes):
    """Reveals at or after this moment are still open at `now`."""
    return now - timedelta(minutes=minutes)


@dataclass(frozen=True)
class Lens:
    """A registration's personal fields as one viewer may see them: as stored when `unmasked`, masked otherwise."""

    unmasked: bool

    def name(self, value):
        return value if self.unmasked else mask_name(value)

    def email(self, value):
        return value if self.unmasked else mask_email(value)

    def phone(self, value, country_code=None):
        if self.unmasked:
            return " ".join(filter(None, [country_code, value]))
        return mask_phone(value, country_code)

    def document(self, value):
        return value if self.unmasked else mask_document(value)

    def payload(self, value, registration=None):
        if self.unmasked:
            return value
        return mask_payload(value, known_values(registration) if registration is not None else ())

    def details(self, value, registration=None):
        """An audit event's details (reasons, an export's filter) about `registration`, as this viewer sees them."""
        if self.unmasked:
            return value
        return mask_details(value, known_values(registration) if registration is not None else ())

    def text(self, value, registration=None):
        """Free text about `registration` (its notes): its own personal values and any email masked."""
        if self.unmasked or not value:
            return value
        return mask_text(value, known_values(registration) if registration is not None else ())

    def record(self, values):
        """A dict of a registration's columns (an export row) with name, email, phone and notes as shown."""
        if self.unmasked:
            return values
        known = [(NAME, values.get("name")), (EMAIL, values.get("email")), (PHONE, values.get("phone"))]
        return {
            **values,
            "name": mask_name(values.get("name")),
            "email": mask_email(values.get("email")),
            "phone": mask_phone(values.get("phone")),
            "notes": mask_text(values.get("notes"), known),
        }


def known_values(registration):
    """(kind, value) of a registration's own personal fields, for mask_text."""
    return [
        (NAME, getattr(registration, "name", None)),
        (EMAIL, getattr(registration, "email", None)),
        (PHONE, getattr(registration, "phone", None)),
    ]


UNMASKED = Lens(unmasked=True)
MASKED = Lens(unmasked=False)
