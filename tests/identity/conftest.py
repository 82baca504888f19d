"""Fixtures shared by the identity tests: the project's identity config and an empty
warehouse file."""

from __future__ import annotations

import duckdb
import pytest

from crm360.identity import load_config
from crm360.settings import PROJECT_ROOT


@pytest.fixture
def config():
    return load_config(PROJECT_ROOT / "config" / "identity.yml")


@pytest.fixture
def con(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        yield con
