"""Which columns hold personal data, and how a raw row names the person it is about.

Raw tables: the contracts' `pii: true` columns (plus any column a source added that the
contract does not know: its content is unknown). Every other schema: the columns named in
PII_COLUMNS, the names the staging models, identity and marts give personal data.
"""

from __future__ import annotations

# Personal columns of the staging, identity, intermediate, mart and snapshot tables.
PII_COLUMNS = frozenset({
    "email", "phone", "phone_e164", "customer_email", "referrer_email", "referred_email",
    "last_name", "first_name", "last_name_kana", "first_name_kana",
    "full_name", "full_name_kana", "name", "name_kana",
    "postal_code", "birth_date", "handle", "post_text", "text", "subject", "id_value",
})  # fmt: skip

# How a raw row points at a person: (identity source, column). The identity sources and their
# keys are those of crm360.identity.records (a CRM contact id, a shop account id, a ticket id,
# a social handle, a web device id).
PERSON_REFERENCES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("crm", "contacts"): (("crm", "contact_id"),),
    ("shop", "customers"): (("shop", "customer_id"), ("crm", "contact_id")),
    ("support", "tickets"): (("support", "ticket_id"), ("shop", "shop_customer_id")),
    ("web", "events"): (("web", "anonymous_id"), ("shop", "shop_customer_id")),
    ("social", "mentions"): (("social", "handle"),),
    ("social", "referrals"): (("crm", "referrer_contact_id"),),
    ("email", "events"): (("crm", "contact_id"),),
}

# The same references in every other schema's tables, by column name.
KEY_COLUMNS = {
    "contact_id": "crm",
    "referrer_contact_id": "crm",
    "shop_customer_id": "shop",
    "ticket_id": "support",
    "anonymous_id": "web",
    "handle": "social",
}


def quote(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def raw_personal(contract, column: str) -> bool:
    """Whether a raw table's column holds personal data: the contract says `pii`, or the
    contract does not know the column (its content is unknown). Load metadata is not."""
    if column.startswith("_"):
        return False
    known = contract.columns.get(column)
    return known is None or known.pii


def is_identifier(value: str) -> bool:
    """An e-mail or a phone number as written, not a name or a postal code."""
    digits = sum(ch.isdigit() for ch in value)
    return "@" in value or (digits >= 10 and digits >= len(value) * 0.6)


def identifier_kind(column: str) -> str | None:
    """'email' or 'phone' for a column that holds one, else None."""
    if "email" in column:
        return "email"
    if "phone" in column:
        return "phone"
    return None


def email_normal(expression: str) -> str:
    """SQL: an e-mail as compared for erasure (no spaces, lower case)."""
    return rf"nullif(lower(regexp_replace({expression}, '[\s\x{{3000}}]', '', 'g')), '')"


def phone_normal(expression: str) -> str:
    """SQL: a phone as compared for erasure (national digits: 090..., from +81 90... too)."""
    digits = (
        f"regexp_replace(translate({expression}, '０１２３４５６７８９', '0123456789'), "
        "'[^0-9]', '', 'g')"
    )
    return (
        f"nullif(case when {digits} like '81%' and length({digits}) >= 11 "
        f"then '0' || {digits}[3:] else {digits} end, '')"
    )


def key_normal(expression: str) -> str:
    """SQL: a record key as compared for erasure."""
    return f"nullif(trim(cast({expression} as varchar)), '')"


def normal(kind: str, expression: str) -> str:
    if kind == "email":
        return email_normal(expression)
    if kind == "phone":
        return phone_normal(expression)
    return key_normal(expression)
