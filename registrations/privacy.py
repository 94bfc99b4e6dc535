"""Who sees personal data, and how it looks masked: the only place masking rules live.

Pure functions (no I/O, no settings): the admin, the CSV export and the timeline
call them with what they read, so a value is masked the same way everywhere.
Personal data is a registration's name, email, phone and document numbers; inside
the raw payload and populated objects it is found by key name, at any depth, from
the one table PERSONAL_KEYS.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

STARS = "***"

EMAIL, PHONE, NAME, DOCUMENT = "email", "phone", "name", "document"

# Key names (compared lower-case, without "_" and "-") whose values are personal, and how each is masked.
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
    "documentnumber": DOCUMENT,
    "documentid": DOCUMENT,
    "idnumber": DOCUMENT,
    "nationalid": DOCUMENT,
    "passportnumber": DOCUMENT,
    "taxid": DOCUMENT,
    "dni": DOCUMENT,
    "cedula": DOCUMENT,
}

# Deeper than this, a payload's branch is replaced by TOO_DEEP when masked: hostile nesting costs
# a marker, not a RecursionError (and nothing below it is shown unmasked).
MAX_DEPTH = 64
TOO_DEEP = "[too deep to show masked]"
EMAIL_PATTERN = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+\.[A-Za-z]{2,}")
WORD = re.compile(r"\S+")


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


MASKS = {EMAIL: mask_email, PHONE: mask_phone, NAME: mask_name, DOCUMENT: mask_document}


def personal_kind(key):
    """The kind of personal data a key holds (EMAIL, PHONE, NAME, DOCUMENT), or None."""
    return PERSONAL_KEYS.get(re.sub(r"[_\-\s]", "", str(key)).lower())


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


def mask_payload(value, known=(), depth=0):
    """A JSON value with the values of personal keys masked, recursively; a new object, the input untouched.

    Other strings go through mask_text with `known`, so a note or a reason that repeats the
    person's email or phone is masked too.
    """
    if depth > MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        masked = {}
        for key, item in value.items():
            kind = personal_kind(key)
            masked[key] = _mask_all(item, MASKS[kind], depth + 1) if kind else mask_payload(item, known, depth + 1)
        return masked
    if isinstance(value, list):
        return [mask_payload(item, known, depth + 1) for item in value]
    if isinstance(value, str):
        return mask_text(value, known)
    return value


def mask_text(text, known=()):
    """Free text (notes, errors) with email addresses and the `known` personal values masked, in any case.

    `known` is (kind, value) pairs, e.g. the registration's own name and phone, which a
    note may repeat; a pattern alone cannot tell a name or a phone from other words.
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
    return EMAIL_PATTERN.sub(lambda match: mask_email(match.group(0)), text)


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
