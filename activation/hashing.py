"""Identifier normalisation and SHA-256 hashing for ad-platform customer lists.

Each platform matches on the SHA-256 (lower-case hex) of an identifier normalised its own way;
docs/activation.md lists the rules with their sources.

- Google Ads Customer Match: e-mail trimmed and lower-cased; phone in E.164 with the leading '+'
  (e.g. +819012345678); country as an unhashed ISO code (JP).
- Meta Custom Audiences: e-mail trimmed and lower-cased; phone as digits only with the country
  code and no '+' or leading zeros (819012345678); country as a lower-case ISO code (jp),
  hashed too.
"""

from __future__ import annotations

import hashlib
import re

_NON_DIGITS = re.compile(r"\D+")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalise_email(email: str | None) -> str | None:
    """Trimmed and lower-cased; None when empty or without '@'."""
    if email is None:
        return None
    email = email.strip().lower()
    return email if "@" in email else None


def normalise_phone_e164(phone: str | None, default_country_code: str = "81") -> str | None:
    """E.164 with '+': an already international number keeps its country code; a national
    Japanese number (0 then 9-10 digits) gets +81 in place of the trunk 0."""
    if phone is None:
        return None
    phone = phone.strip()
    digits = _NON_DIGITS.sub("", phone)
    if not digits:
        return None
    if phone.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):  # international call prefix
        return "+" + digits[2:]
    if digits.startswith("0"):
        return "+" + default_country_code + digits[1:]
    return "+" + digits


def google_email(email: str | None) -> str | None:
    normalised = normalise_email(email)
    return sha256_hex(normalised) if normalised else None


def google_phone(phone: str | None) -> str | None:
    normalised = normalise_phone_e164(phone)
    return sha256_hex(normalised) if normalised else None


def meta_email(email: str | None) -> str | None:
    normalised = normalise_email(email)
    return sha256_hex(normalised) if normalised else None


def meta_phone(phone: str | None) -> str | None:
    """Digits only with the country code, no '+' and no leading zeros, then hashed."""
    e164 = normalise_phone_e164(phone)
    if not e164:
        return None
    return sha256_hex(e164.lstrip("+").lstrip("0"))


def meta_country(country: str | None) -> str | None:
    return sha256_hex(country.strip().lower()) if country and country.strip() else None
