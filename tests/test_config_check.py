"""Configuration mistakes are caught before anything runs, each with its file, line and fix."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm360 import pipeline
from crm360.config_check import check_configuration, configuration_problems
from crm360.configfile import ConfigError
from crm360.settings import PROJECT_ROOT
from ingestion.contracts import CONTRACT_DIR, load_contract


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def sources_file(tmp_path, monkeypatch, settings):
    """Point the pipeline at a sources config of the test's own; the source folder exists."""
    settings.source_dir.mkdir(parents=True)
    path = tmp_path / "sources.yml"
    monkeypatch.setenv("CRM360_SOURCES_CONFIG", str(path))
    return path


def _contract_copy(tmp_path: Path, source: str, old: str, new: str) -> Path:
    folder = tmp_path / "contracts"
    shutil.copytree(CONTRACT_DIR, folder, dirs_exist_ok=True)
    path = folder / f"{source}.yml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


def test_the_shipped_configuration_is_valid(settings):
    settings.source_dir.mkdir(parents=True)
    assert configuration_problems(settings) == []


def test_a_misspelled_contract_key_is_an_error_with_its_line(tmp_path):
    folder = _contract_copy(
        tmp_path, "crm", "contact_id: {type: varchar, required: true,",
        "contact_id: {type: varchar, requried: true,",
    )  # fmt: skip
    with pytest.raises(ConfigError) as error:
        load_contract("crm", folder)
    message = str(error.value)
    assert "crm.yml" in message
    assert "line 17: objects.contacts.columns.contact_id.requried: unknown key" in message
    assert "did you mean 'required'?" in message


def test_an_unquoted_comma_in_a_description_is_caught(tmp_path):
    folder = _contract_copy(
        tmp_path, "crm", "description: Family name (kanji)}",
        "description: Family name, kanji}",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="kanji: unknown key; a comma inside"):
        load_contract("crm", folder)


def test_a_wrong_type_names_the_allowed_ones(tmp_path):
    folder = _contract_copy(tmp_path, "spend", "{type: date,", "{type: datetime,")
    with pytest.raises(ConfigError, match=r"month_start.type: Input should be 'varchar'"):
        load_contract("spend", folder)


def test_a_missing_sources_config_says_how_to_point_at_one(settings, sources_file):
    with pytest.raises(ConfigError) as error:
        check_configuration(settings)
    assert f"sources config not found: {sources_file}" in str(error.value)
    assert "CRM360_SOURCES_CONFIG" in str(error.value)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            """
            sources:
              shop:
                url: "mysql://user@db/shop"
            """,
            "line 3: sources.shop.url: unsupported database 'mysql'",
        ),
        (
            """
            sources:
              crm:
                contacts:
                  files: "crm/*.csv"
                  colums: {顧客ID: contact_id}
            """,
            "line 5: sources.crm.contacts.colums: unknown key; did you mean 'columns'?",
        ),
        (
            """
            sources:
              crm:
                contacts:
                  files: "crm/*.csv"
                  columns: {顧客ID: customer_number}
            """,
            "sources.crm.contacts.columns.顧客ID: maps to 'customer_number', which is not a "
            "column of crm.contacts",
        ),
        (
            """
            sources:
              crm:
                contacts:
                  columns: {顧客ID: contact_id}
            """,
            "line 3: sources.crm.contacts: `files` (a glob pattern) is required",
        ),
        (
            """
            sources:
              crm:
                timezone: Tokyo
                contacts: {files: "crm/*.csv"}
            """,
            "line 3: sources.crm.timezone: unknown time zone 'Tokyo'",
        ),
        (
            """
            sources:
              web:
                event: {files: "web/*.jsonl"}
            """,
            "sources.web.event: unknown object of web; known: events",
        ),
        (
            """
            sources:
              crm:
                contacts:
                  files: "crm/*.csv"
                  encoding: shift-jjs
            """,
            "line 5: sources.crm.contacts.encoding: unknown encoding 'shift-jjs'",
        ),
    ],
    ids=["mysql", "misspelled-key", "unknown-column", "no-files", "time-zone", "object", "codec"],
)
def test_bad_sources_configs_are_named_with_line_and_fix(settings, sources_file, config, expected):
    _write(sources_file, config)
    with pytest.raises(ConfigError) as error:
        check_configuration(settings)
    assert expected in str(error.value)


def test_a_missing_source_folder_is_an_error(settings, sources_file, tmp_path):
    _write(sources_file, 'sources:\n  crm:\n    contacts: {files: "crm/*.csv"}\n')
    settings.source_dir.rmdir()
    with pytest.raises(ConfigError, match="the source folder .* does not exist; the sources crm"):
        check_configuration(settings)


def test_a_bad_quality_config_is_named(settings, tmp_path, monkeypatch):
    settings.source_dir.mkdir(parents=True)
    text = (PROJECT_ROOT / "config" / "quality.yml").read_text(encoding="utf-8")
    bad = _write(tmp_path / "quality.yml", text.replace("max_age_days: 7}", "max_age_day: 7}", 1))
    monkeypatch.setenv("CRM360_QUALITY_CONFIG", str(bad))
    problems = configuration_problems(settings)
    assert len(problems) == 1
    assert "freshness.crm.max_age_day: unknown key; did you mean 'max_age_days'?" in problems[0]


def test_a_configuration_error_writes_nothing(settings, sources_file):
    _write(sources_file, 'sources:\n  shop:\n    url: "mysql://user@db/shop"\n')
    with pytest.raises(ConfigError, match="unsupported database"):
        pipeline.ingest_source("shop", "run-1", datetime(2026, 11, 1, tzinfo=UTC), settings)
    assert not settings.warehouse.exists()
    assert not settings.warehouse.parent.exists()


def test_a_bad_identity_config_is_named(settings, tmp_path):
    settings.source_dir.mkdir(parents=True)
    text = (PROJECT_ROOT / "config" / "identity.yml").read_text(encoding="utf-8")
    bad = _write(tmp_path / "identity.yml", text.replace("  threshold: 0.99", "  threshold: 99"))
    problems = configuration_problems(dataclasses.replace(settings, identity_config=bad))
    assert len(problems) == 1
    assert "probabilistic.threshold: Input should be less than 1 (got 99)" in problems[0]
