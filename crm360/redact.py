"""Secrets out of what the pipeline stores and logs: a source's URL is recorded (raw tables'
`_source_location`, `raw._loads`, `raw._quarantine`, the run report, the task log) without the
password in it or the values of its token-like query parameters."""

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
