"""Validation of the names that become object keys and warehouse paths."""

from __future__ import annotations

import re

from eventindex.errors import InvalidNameError

MAX_NAME_LENGTH = 128
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
#: the partition value Hive, Spark, DuckDB and pyarrow read as null (`dataset=__HIVE_DEFAULT_PARTITION__`)
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def validate_name(kind: str, value: str) -> str:
    """Return `value` when it is a safe task/job/dataset name, else raise InvalidNameError."""
    if not isinstance(value, str) or value == "":
        raise InvalidNameError(f"{kind} name is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{kind} name is longer than {MAX_NAME_LENGTH} characters: {value[:40]!r}...")
    if not _NAME_RE.fullmatch(value):
        raise InvalidNameError(f"{kind} name {value!r} has characters outside [A-Za-z0-9._-]")
    if ".." in value or value in (".",):
        raise InvalidNameError(f"{kind} name {value!r} contains '..' or is '.'")
    if value == HIVE_NULL:
        raise InvalidNameError(f"{kind} name {value!r} is how Hive-style readers spell null")
    return value


MAX_ATTEMPT = 1_000_000


def validate_attempt(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value > MAX_ATTEMPT:
        raise InvalidNameError(f"attempt must be an integer in 1..{MAX_ATTEMPT}, got {value!r}")
    return value


def attempt_dir(task: str, job: str, attempt: int) -> str:
    """The key prefix of one job attempt, relative to the store's prefix."""
    return f"{validate_name('task', task)}/{validate_name('job', job)}/{validate_attempt(attempt)}"


def chunk_key(task: str, job: str, attempt: int, seq: int) -> str:
    return f"{attempt_dir(task, job, attempt)}/chunk-{seq:06d}.eic"


def manifest_key(task: str, job: str, attempt: int) -> str:
    return f"{attempt_dir(task, job, attempt)}/manifest.eim"
