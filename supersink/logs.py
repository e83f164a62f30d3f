"""Logging set-up for `ei-supersink`, in one place: text or JSON lines on stderr, secrets redacted.

`--log-format json` writes one JSON object per line: `timestamp` (UTC, ISO 8601), `level`, `logger`,
`message`, `task` when the line is about one, and `exception` when there is one. In both formats a
line never shows a credential or a token: the values of the credential variables and of the
status page's bearer tokens are replaced by `***`, and so are URL user-info, `Authorization`
values and secret-looking URL parameters, wherever they appear.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable

from eventindex.redact import MASK, redact

FORMATS = ("text", "json")
#: Environment variables whose values are secrets.
SECRET_VARIABLES = (
    "EI_BROKER_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "HADOOP_TOKEN",
)
#: A line about a task names it as `task NAME` (the service's wording).
_TASK = re.compile(r"\btask ([A-Za-z0-9._-]{1,128})")


class Redactor:
    """Replaces secrets in text: known secret values (longest first), then secret-shaped text (URL user-info,
    Authorization values, secret-looking parameters: eventindex.redact, the one definition of them)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(os.environ.get(name, "") for name in SECRET_VARIABLES)
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        values = {*self._secrets, *(s for s in secrets if len(s) >= 4)}  # shorter ones would mask ordinary words
        self._secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return redact(text)


class TextFormatter(logging.Formatter):
    def __init__(self, prefix: str, redact: Redactor) -> None:
        super().__init__(f"{prefix}: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        message = self.redact(record.getMessage())
        seconds = time.gmtime(record.created)
        entry: dict[str, object] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        task = getattr(record, "task", None)
        if task is None:
            found = _TASK.search(message)
            task = found.group(1) if found else None
        if task is not None:
            entry["task"] = task
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure(prefix: str, fmt: str = "text", quiet: bool = False, secrets: Iterable[str] = ()) -> Redactor:
    """Log to stderr: INFO and above (WARNING and above when `quiet`), as text or JSON lines. Loggers
    stay at INFO whatever is shown, so that handlers counting records (the metrics) see them all.
    Returns the redactor, which more secrets can be added to."""
    redact = Redactor(secrets)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.setLevel(logging.INFO)
    if root.handlers:  # someone configured logging already (an embedding program, a test runner): theirs
        return redact
    handler = _StderrHandler(sys.stderr)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(prefix, redact))
    root.addHandler(handler)
    return redact


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` adds (and replaces when called again)."""
