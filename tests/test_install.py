"""The environment the bootstrap installs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_MISSING_BYTECODE = """
import importlib.util, json, os, sys, sysconfig
import airflow, dbt.cli.main, great_expectations, lifetimes, splink  # noqa: F401
site = sysconfig.get_paths()["purelib"]
files = [m.__file__ for m in list(sys.modules.values())
         if (getattr(m, "__file__", None) or "").startswith(site) and m.__file__.endswith(".py")]
missing = [f for f in files if not os.path.exists(importlib.util.cache_from_source(f))]
print(json.dumps({"modules": len(files), "missing": missing[:5], "missing_count": len(missing)}))
"""


def test_installed_libraries_are_compiled_to_bytecode():
    # a process that may not write bytecode (PYTHONDONTWRITEBYTECODE, as in many container
    # images) must find it written at install, or it compiles every import again: seconds per
    # Airflow task, dbt run and quality gate
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _MISSING_BYTECODE], env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["modules"] > 1000
    assert found["missing_count"] == 0, found["missing"]
