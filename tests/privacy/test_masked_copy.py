"""The analysts' copy: personal columns masked by default, the same value the same hash in every
table, everything else as in the warehouse; unmasked only by setting; exports read a private
copy of the same state."""

from __future__ import annotations

import dataclasses
import re
import shutil

import pytest

from crm360 import pipeline
from crm360.settings import SettingError
from crm360.warehouse import connect
from tests.privacy.scan import find_values


@pytest.fixture
def published(mart_warehouse, tmp_path, monkeypatch):
    """The shared demo warehouse, copied, then published as the pipeline publishes it."""
    monkeypatch.delenv("CRM360_PUBLISHED_PII", raising=False)
    monkeypatch.delenv("CRM360_ACTIVATION_WAREHOUSE", raising=False)
    warehouse = tmp_path / "warehouse" / "crm360.duckdb"
    warehouse.parent.mkdir()
    shutil.copyfile(mart_warehouse.warehouse, warehouse)
    settings = dataclasses.replace(
        mart_warehouse,
        warehouse=warehouse,
        published_warehouse=tmp_path / "warehouse" / "published" / "crm360.duckdb",
    )
    return settings


def _contacts(settings, limit=60):
    with connect(settings.warehouse, read_only=True) as con:
        return con.execute(
            "select email, phone, last_name || first_name from raw.crm_contacts "
            "where email is not null and phone is not null order by contact_id limit ?",
            [limit],
        ).fetchall()


def test_no_contact_value_is_in_the_analysts_copy(published):
    result = pipeline.publish_marts(published)
    assert result["personal_data"] == "masked"
    values = {v for row in _contacts(published) for v in row}
    hits = find_values(published.published_warehouse.parent, values)
    assert hits == {}
    # the exports' copy is the unmasked state, private to the pipeline
    assert published.activation_warehouse.stat().st_mode & 0o777 == 0o600
    with connect(published.activation_warehouse, read_only=True) as con:
        emails = {r[0] for r in con.execute("select email from raw.crm_contacts").fetchall()}
    assert {email for email, *_ in _contacts(published)} <= emails


def test_a_value_is_the_same_hash_in_every_table_and_the_rest_is_unchanged(published):
    pipeline.publish_marts(published)
    with connect(published.published_warehouse, read_only=True) as con:
        pairs = con.execute(
            "select c.email, a.email, c.full_name, c.birth_date from marts.customer_360 as c "
            "join marts.audience_base as a using (customer_id) where c.email is not null"
        ).fetchall()
        masked = con.execute(
            "select sum(total_revenue), count(*), count(distinct email) from marts.customer_360"
        ).fetchone()
        tables = con.execute(
            "select schema_name, table_name, estimated_size from duckdb_tables() "
            "where schema_name <> 'privacy' order by all"
        ).fetchall()
    with connect(published.warehouse, read_only=True) as con:
        plain = con.execute(
            "select sum(total_revenue), count(*), count(distinct email) from marts.customer_360"
        ).fetchone()
        counts = {
            (s, t): con.execute(f'select count(*) from "{s}"."{t}"').fetchone()[0]
            for s, t, _ in tables
        }
    assert pairs and all(c == a for c, a, _, _ in pairs)
    assert all(re.fullmatch(r"h:[0-9a-f]{16}", c) for c, *_ in pairs)
    assert all(name is None or name.startswith("h:") for *_, name, _ in pairs)
    assert all(birth is None for *_, birth in pairs)
    assert masked == plain  # revenue, rows and distinct e-mails survive masking
    with connect(published.published_warehouse, read_only=True) as con:
        for (schema, table), count in counts.items():
            assert con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0] == count


def test_plain_by_setting_and_a_bad_value_is_refused(published, monkeypatch):
    monkeypatch.setenv("CRM360_PUBLISHED_PII", "plain")
    assert pipeline.publish_marts(published)["personal_data"] == "plain"
    email, *_ = _contacts(published, 1)[0]
    with connect(published.published_warehouse, read_only=True) as con:
        assert con.execute(
            "select count(*) from raw.crm_contacts where email = ?", [email]
        ).fetchone()[0]
    monkeypatch.setenv("CRM360_PUBLISHED_PII", "hashed")
    with pytest.raises(SettingError, match="CRM360_PUBLISHED_PII must be masked or plain"):
        pipeline.publish_marts(published)


def test_the_privacy_key_stays_beside_the_warehouse(published):
    pipeline.publish_marts(published)
    key = published.warehouse.parent / "privacy.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_text().strip()) == 64
    copies = [published.published_warehouse.parent, published.activation_warehouse.parent]
    assert not any((folder / "privacy.key").exists() for folder in copies)
    assert find_values(published.published_warehouse.parent, {key.read_text().strip()}) == {}
