"""dbt inside the daily DAG: one `dbt build` task per layer, or one Airflow task per dbt node.

`CRM360_DBT_TASKS` chooses (read when the DAG file is parsed):

- `build` (default): `dbt_staging` and `dbt_build` are one task each, a `dbt build` of the
  layer. Fastest; a failed model fails the task and a retry rebuilds the layer.
- `models`: `dbt_staging` and `dbt_build` are task groups rendered by astronomer-cosmos from
  dbt's manifest, one task per model, seed and snapshot (`dbt build --select <node>`: the node
  and its tests). The graph is visible in the Airflow UI and a failed model retries alone; the
  price is one dbt start per node (docs/airflow.md has the measurement).

The manifest is read at parse time from `<CRM360_DBT_TARGET_DIR>/manifest.json`, so parsing the
DAG never runs dbt; `crm360 dbt-manifest` writes it (run it again after changing the models).
Import this module from DAG files only, after `airflow` (cosmos imports Airflow's plugins).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crm360.dbt import AS_OF_DATE_ENV, DAILY_BUILD_EXCLUDED_TYPES
from crm360.settings import load_settings

MODES = ("build", "models")


class DbtTasksConfigError(RuntimeError):
    """The DAG cannot be built as configured (unknown mode, missing manifest)."""


def dbt_tasks_mode() -> str:
    mode = os.environ.get("CRM360_DBT_TASKS", "build").strip().lower()
    if mode not in MODES:
        raise DbtTasksConfigError(f"CRM360_DBT_TASKS={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def manifest_path() -> Path:
    return load_settings().dbt_target_dir / "manifest.json"


def dbt_vars_template() -> dict[str, str]:
    """The same vars `crm360.pipeline` passes, rendered per run."""
    return {"dormant_days": "{{ crm360_dormant_days() }}"}


# the as-of date (the data interval's end), passed as `crm360.pipeline` passes it
AS_OF_DATE_ENV_TEMPLATE = "{{ data_interval_end.date().isoformat() }}"


def template_macros() -> dict[str, Any]:
    """DAG `user_defined_macros` for the cosmos tasks: settings resolved at run time."""

    def crm360_warehouse() -> str:
        return str(load_settings().warehouse)

    def crm360_dormant_days() -> int:
        return load_settings().dormant_days

    return {"crm360_warehouse": crm360_warehouse, "crm360_dormant_days": crm360_dormant_days}


def dbt_node_group(group_id: str, *, select: list[str] | None = None,
                   exclude: list[str] | None = None):  # fmt: skip
    """A cosmos task group with one `dbt build --select <node>` task per selected dbt node."""
    from cosmos import (
        DbtTaskGroup,
        ExecutionConfig,
        ProfileConfig,
        ProjectConfig,
        RenderConfig,
    )
    from cosmos.constants import (
        ExecutionMode,
        InvocationMode,
        LoadMode,
        TestBehavior,
        TestIndirectSelection,
    )

    settings = load_settings()
    manifest = manifest_path()
    if not manifest.exists():
        raise DbtTasksConfigError(
            f"CRM360_DBT_TASKS=models needs dbt's manifest at {manifest}: "
            "run `crm360 dbt-manifest` (again after changing the models)"
        )
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            manifest_path=str(manifest),
            project_name="crm360",
        ),
        profile_config=ProfileConfig(
            profile_name="crm360",
            target_name="local",
            profiles_yml_filepath=str(settings.dbt_project_dir / "profiles.yml"),
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            # dbt's Python API in the task's process: a node costs ~2 s of dbt start, against
            # ~5 s for a dbt child process (crm360.warehouse.connect releases its database).
            # It is also why a `kill -9` of the task leaves no dbt running: cosmos 1.15's
            # DBT_RUNNER mode calls dbtRunner().invoke() in the task process (cosmos.dbt.runner.
            # run_command), so dbt and its DuckDB connection die with the task. dbt's only
            # child is multiprocessing's resource tracker (no dbt code, no database), which
            # exits when the task's end closes its pipe. SUBPROCESS mode would start a dbt child
            # (cosmos.hooks.subprocess, no preexec_fn) without crm360.dbt.die_with_parent, and
            # could outlive a killed task holding the warehouse's write lock: keep this mode
            # explicit (cosmos would fall back to SUBPROCESS if left to choose and dbt-core
            # were missing). tests/faults/test_clean_kill.py checks both.
            invocation_mode=InvocationMode.DBT_RUNNER,
            dbt_project_path=str(settings.dbt_project_dir),
            # eager selection would run a test before all of its parents exist
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            select=select or [],
            exclude=exclude or [],
            test_behavior=TestBehavior.BUILD,
            emit_datasets=False,  # the DAG publishes one Asset, after the quality gate
            enable_owner_inheritance=False,
        ),
        operator_args={
            "install_deps": False,
            "vars": dbt_vars_template(),
            "env": {
                "CRM360_WAREHOUSE": "{{ crm360_warehouse() }}",
                AS_OF_DATE_ENV: AS_OF_DATE_ENV_TEMPLATE,
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                "DBT_EXCLUDE_RESOURCE_TYPES": " ".join(DAILY_BUILD_EXCLUDED_TYPES),
            },
            "append_env": True,
        },
    )
