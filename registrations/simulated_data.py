"""The simulator's data set: deterministic for a seed, and covering what a reviewer meets.

Every status, red flags with nested details, failed validations as ids and as
objects, populated references, unicode, very long names and notes, phones with
leading zeros, and a `<script>` name. simulator.py serves it; bench/generate.py
borrows its names and statuses for the generated admin account.
"""

import hashlib
import random
from datetime import UTC, datetime, timedelta

from .mapping import REFERENCES

STATUSES = [
    ("STARTED", 14),
    ("ONGOING", 16),
    ("NEEDS_MANUAL_VERIFICATION", 10),
    ("COMPLETED", 36),
    ("COMPLETED_WITHOUT_KYC", 6),
    ("FAILED", 12),
    ("EXPIRED", 6),
]
STEPS = ["Email Verification", "Phone Verification", "Document Verification", "Liveness", "Review", "Done"]
FIRST = ["John", "María", "José", "Zoë", "Ana", "李", "Ngozi", "Søren", "Émilie", "Mohammed", "Aiyana", "Олег", "Priya"]
LAST = ["Doe", "Núñez", "García", "Smith", "小龙", "Okafor", "Kierkegaard", "Dubois", "Al-Farsi", "Иванов", "Patel"]
LANGUAGES = ["en", "es", "pt", "fr"]
COUNTRY_CODES = ["+1", "+57", "+52", "+44", "+34", "+91"]
REFERENCE_KEYS = list(REFERENCES)  # every reference a registration carries, in API order
LIST_POPULATES = {
    "project",
    "projectFlow",
    "emailValidation",
    "phoneValidation",
    "biometricValidation",
    "documentValidation",
    "informationValidation",
    "person",
}
# The keys the documentation's list example shows; `list_keys="documented"` serves only these.
DOCUMENTED_LIST_KEYS = [
    "_id",
    "client",
    "project",
    "projectFlow",
    "status",
    "email",
    "phone",
    "countryCode",
    "currentStep",
    "language",
    "createdAt",
    "updatedAt",
]
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def object_id(*parts):
    return hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def make_registration(seed, index):
    """The registration at `index` (0 = oldest) of the data set for `seed`."""
    rng = random.Random(f"{seed}:{index}")
    created = EPOCH + timedelta(minutes=7 * index, seconds=rng.randrange(60), milliseconds=rng.randrange(1000))
    status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name = f"{first} {last}"
    if index % 97 == 13:
        name = "<script>alert(1)</script>"
    elif index % 211 == 7:
        name = ("Wolfeschlegelsteinhausenbergerdorff " * 9)[:300]
    elif index % 53 == 5:
        name += " 😀"
    email = f"user{index}.{rng.randrange(10**6)}@example.{rng.choice(['com', 'co', 'io'])}"
    phone = ("0" if index % 5 == 0 else "") + str(rng.randrange(10**8, 10**10))
    red_flags = 0
    details = {}
    if rng.random() < (0.5 if status in ("FAILED", "NEEDS_MANUAL_VERIFICATION") else 0.12):
        red_flags = rng.choice([1, 1, 2, 3, 4, 6])
        details = {
            "ipCountryMismatch": {"expected": "CO", "detected": rng.choice(["RU", "NG", "US"]), "score": 0.82},
            "documentTampering": rng.random() < 0.5,
            "reasons": ["Face does not match document", "Multiple attempts from one device"][: 1 + index % 2],
        }
    failed = {}
    for key in (
        "failedEmailValidations",
        "failedPhoneValidations",
        "failedBiometricValidations",
        "failedDocumentValidations",
    ):
        items = []
        if status in ("FAILED", "NEEDS_MANUAL_VERIFICATION") or rng.random() < 0.08:
            for n in range(rng.choice([0, 1, 1, 2, 3])):
                ref = object_id(seed, index, key, n)
                if rng.random() < 0.5:
                    items.append(ref)
                else:
                    items.append(
                        {
                            "_id": ref,
                            "reason": rng.choice(["expired", "mismatch", "blurry image"]),
                            "createdAt": iso(created + timedelta(minutes=n + 1)),
                        }
                    )
        failed[key] = items
    notes = None
    if rng.random() < 0.3:
        notes = rng.choice(
            [
                "Additional verification required.",
                "Called applicant.\nWaiting for a clearer photo.",
                "Manual review: ok",
            ]
        )
    if index % 401 == 11:
        notes = "Long review log.\n" + ("Reviewer checked the document again. " * 560)[:20000]
    record = {
        "__v": rng.randrange(3),
        "_id": object_id(seed, "registration", index),
        "status": status,
        "email": email,
        "countryCode": rng.choice(COUNTRY_CODES),
        "phone": phone,
        "name": name,
        "currentStep": STEPS[min(len(STEPS) - 1, rng.randrange(len(STEPS)))],
        "redFlags": red_flags,
        "redFlagsDetails": details,
        "language": rng.choice(LANGUAGES),
        "notes": notes,
        "deleted": index % 89 == 3,
        "createdAt": iso(created),
        "updatedAt": iso(created + timedelta(minutes=rng.randrange(1, 600))),
        **failed,
    }
    for key in REFERENCE_KEYS:
        record[key] = object_id(seed, key, index // (50 if key in ("client", "project", "projectFlow") else 1))
    return record


def populate(key, ref_id):
    """A plausible populated object for a reference, stable for its id."""
    rng = random.Random(ref_id)
    obj = {"_id": ref_id, "createdAt": iso(EPOCH + timedelta(days=rng.randrange(365)))}
    if key == "project":
        obj.update(
            name=f"Onboarding {ref_id[:4]}",
            dataProtection={"name": "Data Officer", "email": "dpo@example.com", "address": "1 Main St"},
            branding={"bgColor": "#ffffff", "txtColor": "#111111", "logo": "https://cdn.example.com/logo.png"},
        )
    elif key == "emailValidation":
        obj.update(
            status=rng.choice(["new", "sent", "validated", "expired", "failed"]),
            attempts=rng.randrange(3),
            maxAttempts=3,
        )
    elif key == "phoneValidation":
        obj.update(status=rng.choice(["new", "sent", "validated", "failed"]))
    elif key == "documentValidation":
        obj.update(
            status=rng.choice(["new", "pending", "completed", "failed", "NEEDS_MANUAL_VERIFICATION"]),
            OCRExtraction={"documentNumber": str(rng.randrange(10**9)), "expirationDate": "2030-01-01"},
            fullNameMatchPercentage=rng.randrange(40, 101),
            manualVerificationReason=None,
            failedReason=None,
        )
    elif key == "biometricValidation":
        obj.update(status=rng.choice(["new", "validated", "failed"]), livenessScore=round(rng.random(), 3))
    elif key == "compareFaceVerification":
        score = round(rng.random(), 3)
        obj.update(result={"score": score, "passed": score >= 0.6, "compare_min_score": 0.6})
    else:
        obj.update(kind=key)
    return obj
