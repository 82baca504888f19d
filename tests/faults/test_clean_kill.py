"""`kill -9` of a task left its dbt child running for up to a minute, holding the warehouse's
write lock: dbt now dies with the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal")
def test_a_child_started_like_dbt_dies_with_its_killed_parent(tmp_path):
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import subprocess, sys
            from crm360.dbt import die_with_parent
            child = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=die_with_parent()
            )
            open({str(pid_file)!r}, "w").write(str(child.pid))
            child.wait()
        """)]
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())

    parent.send_signal(signal.SIGKILL)
    parent.wait()

    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the child outlived its killed parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) is not running
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


# --- CRM360_DBT_TASKS=models: cosmos runs dbt in the task's own process ----------------------


def test_model_tasks_run_dbt_in_the_task_process(tmp_path, monkeypatch):
    """cosmos's SUBPROCESS mode would start dbt as a child without die_with_parent; the node
    tasks ask for DBT_RUNNER, whose operators call dbt's Python API (nothing to outlive a
    killed task)."""
    import airflow  # noqa: F401 - before cosmos, as in a DAG file (cosmos loads Airflow's plugins)
    import cosmos
    from cosmos.constants import ExecutionMode, InvocationMode
    from cosmos.operators.local import DbtBuildLocalOperator

    from crm360.dbt_tasks import dbt_node_group

    target = tmp_path / "target"
    target.mkdir()
    (target / "manifest.json").write_text("{}", encoding="utf-8")
    monkeypatch.setenv("CRM360_DBT_TARGET_DIR", str(target))
    groups = []
    monkeypatch.setattr(cosmos, "DbtTaskGroup", lambda **kwargs: groups.append(kwargs))

    dbt_node_group("dbt_build")

    [group] = groups
    execution = group["execution_config"]
    assert execution.execution_mode == ExecutionMode.LOCAL
    assert execution.invocation_mode == InvocationMode.DBT_RUNNER
    operator = DbtBuildLocalOperator(
        task_id="node", project_dir=str(tmp_path), profile_config=group["profile_config"],
        invocation_mode=execution.invocation_mode,
    )  # fmt: skip
    assert operator.invoke_dbt == operator.run_dbt_runner


def test_a_killed_task_leaves_no_process_of_cosmos_dbt_runner(tmp_path):
    """dbt run the way the node tasks run it (cosmos.dbt.runner.run_command, in the calling
    process), stopped mid-parse, then the process is killed with SIGKILL: nothing it started
    (dbt's multiprocessing resource tracker is its only child) outlives it."""
    import json
    import shutil

    from conftest import make_settings

    from crm360.settings import PROJECT_ROOT

    project = tmp_path / "dbt_project"
    shutil.copytree(
        PROJECT_ROOT / "dbt_project", project,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )  # fmt: skip
    env = {**make_settings(tmp_path).dbt_env(), "DBT_PROFILES_DIR": str(project)}
    marker = tmp_path / "dbt-running.json"
    script = textwrap.dedent(f"""
        import json, os, time

        import airflow  # before cosmos, as in a DAG file
        from cosmos.dbt.runner import run_command

        def hold(event):  # dbt is running in this process: stop here until killed
            if event.info.name == "UnableToPartialParse":
                open({str(marker)!r}, "w").write(json.dumps(os.getpid()))
                time.sleep(120)

        run_command(
            ["dbt", "parse", "--target-path", {str(tmp_path / "target")!r}],
            dict(os.environ), {str(project)!r}, callbacks=[hold],
        )
    """)
    task = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert task.poll() is None, "dbt ended before it reached the parse"
            assert time.monotonic() < deadline, "dbt never started parsing"
            time.sleep(0.05)
        assert json.loads(marker.read_text()) == task.pid  # dbt runs in the task's process
        descendants = _descendants(task.pid)
    finally:
        task.send_signal(signal.SIGKILL)
        task.wait()

    deadline = time.monotonic() + 10
    while alive := [pid for pid in descendants if _alive(pid)]:
        assert time.monotonic() < deadline, f"{alive} outlived the killed task"
        time.sleep(0.05)


def _descendants(pid: int) -> list[int]:
    found = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children", encoding="ascii") as handle:
                children = [int(child) for child in handle.read().split()]
        except FileNotFoundError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found
