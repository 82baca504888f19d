"""Secrets out of what the pipeline stores and logs: a source's URL is recorded (raw tables'
`_source_location`, `raw._loads`, `raw._quarantine`, the run report, the task log) without the
password in it or the values of its token-like query parameters.

Inside an Airflow task the same secrets (and the alert webhook's URL) are also registered with
Airflow's secrets masker (`airflow.sdk.log.mask_secret`), which masks them in the task logs a
worker's supervisor writes. That is a second line only: Airflow 3.3's in-process runs
(`airflow dags test`, which `crm360 run` uses, and `airflow tasks test`) print task logs without
masking, and nothing masks XComs or the warehouse, so whatever is stored or logged goes
through `redact_url` / `redact_secrets` first. `tests/faults/test_planted_secrets.py` plants
secrets in a real run and searches everything it wrote."""

from __future__ import annotations

import re

MASK = "***"
_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?#]*):[^@/?#]*@")
# a query parameter whose name says its value is a credential
_SECRET_VALUE = re.compile(
    r"([?&;][^=&#]*(?:token|key|secret|password|passwd|pwd|signature|sig|auth|code)[^=&#]*=)"
    r"[^&#;]*",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """`url` without its password and credential-like query values; the rest is unchanged, so
    a reader still sees which host, database, path and page were read."""
    return _SECRET_VALUE.sub(rf"\g<1>{MASK}", _PASSWORD.sub(rf"\g<1>:{MASK}@", url))


def url_secrets(url: str) -> list[str]:
    """The secret parts of `url`, as written and percent-decoded: its password and the values
    of its credential-like query parameters (what `redact_url` masks)."""
    from urllib.parse import unquote

    found = []
    if match := re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?#]*:([^@/?#]*)@", url):
        found.append(match[1])
    found += [m[0][len(m[1]) :] for m in _SECRET_VALUE.finditer(url.split("#", 1)[0])]
    secrets = []
    for value in found:
        for form in (value, unquote(value), unquote(value.replace("+", " "))):
            if form and form not in secrets:
                secrets.append(form)
    return secrets


def redact_secrets(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """`text` with every occurrence of each secret replaced by the mask (longest first, so a
    secret that contains another is masked whole)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def in_airflow_task() -> bool:
    """True inside a running Airflow task (the Task SDK's supervisor is connected); cheap, and
    imports nothing: outside Airflow (the CLI, the tests) Airflow is never loaded for this."""
    import sys

    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def mask_in_airflow(*secrets: str) -> None:
    """Register each secret with Airflow's secrets masker (the task's process and its
    supervisor), so Airflow writes `***` for it in task logs; nothing outside a task."""
    if not in_airflow_task():
        return
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        if secret:
            mask_secret(secret)


def mask_url_in_airflow(url: str) -> None:
    """Register the secret parts of a URL (password, token values) with Airflow's masker."""
    mask_in_airflow(*url_secrets(url))
