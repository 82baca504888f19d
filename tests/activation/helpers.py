"""A small `marts.audience_base` with every documented column, built from rows given as dicts."""

from __future__ import annotations

import pytest

from activation.audiences import known_columns, load_audience
from crm360.warehouse import connect

# a contactable buyer: every suppression flag clear, no recent contact
DEFAULTS = {
    "email": None,
    "phone_e164": None,
    "full_name": "山田 太郎",
    "is_email_opted_in": True,
    "has_unsubscribed": False,
    "is_do_not_contact": False,
    "is_deletion_requested": False,
    "has_hard_bounced": False,
    "has_valid_email": True,
    "is_email_contactable": True,
    "is_dormant": True,
    "order_count": 2,
    "total_revenue": 10000.0,
    "send_count_7d": 0,
    "send_count_30d": 0,
    "rfm_segment": "At risk",
    "lifecycle_stage": "dormant",
    "as_of_date": "2026-11-01",
}
TYPES = {
    "is_email_opted_in": "boolean", "has_unsubscribed": "boolean", "is_do_not_contact": "boolean",
    "is_deletion_requested": "boolean", "has_hard_bounced": "boolean",
    "has_valid_email": "boolean", "is_email_contactable": "boolean", "is_dormant": "boolean",
    "order_count": "integer", "total_revenue": "double", "send_count_7d": "integer",
    "send_count_30d": "integer", "as_of_date": "date",
}  # fmt: skip


def write_base(con, rows: list[dict]) -> None:
    """Replace marts.audience_base by these customers (other columns null)."""
    columns = sorted(known_columns())
    con.execute("create schema if not exists marts")
    defs = ", ".join(f"{c} {TYPES.get(c, 'varchar')}" for c in columns)
    con.execute(f"create or replace table marts.audience_base ({defs})")
    for row in rows:
        values = {**DEFAULTS, "email": f"{row['customer_id']}@example.com", **row}
        con.execute(
            f"insert into marts.audience_base ({', '.join(columns)}) "
            f"values ({', '.join('?' * len(columns))})",
            [values.get(c) for c in columns],
        )


@pytest.fixture
def warehouse(settings):
    con = connect(settings.warehouse)
    write_base(
        con,
        [
            {"customer_id": "cus_a"},
            {"customer_id": "cus_b", "is_email_opted_in": False},  # opted out: suppressed
            {"customer_id": "cus_c", "is_dormant": False},  # not selected
            {"customer_id": "cus_d", "phone_e164": "+819012345678"},
        ],
    )
    yield con
    con.close()


def write_definition(folder, name: str, body: str):
    path = folder / f"{name}.yml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def audience(tmp_path):
    path = write_definition(
        tmp_path,
        "dormant",
        "name: dormant\ndescription: test\nowner: me\nchannel: email\nwhere: is_dormant\n"
        "columns: [customer_id, email, full_name]\n"
        "destinations:\n  - {name: esp, format: csv}\n",
    )
    return load_audience(path)
