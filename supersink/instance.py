"""One `ei-supersink run` per ledger: an exclusive lock on `<ledger>.lock`, held while the service runs.

Two services on one ledger would share one supersink identity (it lives in the ledger), so the warehouse's
load claims could not keep them apart: both would load the same tasks (the write-once commit marker keeps the
data right, but the work is done twice). The lock is a `flock` on a file beside the ledger, released by the
kernel when the process ends however it ends, so a crash never leaves it behind. The file holds the pid of
the process that holds it, for the error a second `run` prints. One-shot commands (`load`, `status`,
`quarantine`, ...) do not take it: they are meant to be used while the service runs.

A one-shot `load` (or `reconcile --warehouse`) shares the service's identity too, so the load claim does not
keep it from loading the task the service is loading: a `load --force` that finished after the service's
full load had committed would overwrite the committed parts. Loads of one ledger therefore take a second
lock, `<ledger>.loads.lock`, for as long as they write: the service tries it and looks at the task again
later when a one-shot command holds it; a one-shot command waits for it. Whichever comes second finds the
commit marker and adopts it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eventindex.errors import ConfigError, StateError


class LedgerInUseError(ConfigError):
    """Another `ei-supersink run` holds the ledger's lock (a usage error: exit 2, and systemd does not restart)."""


def lock_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".lock")


def _open_lock(path: Path, what: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open the ledger's {what} {path}: {exc.strerror}") from exc


@contextmanager
def run_lock(ledger: Path) -> Iterator[None]:
    """Hold the ledger's run lock for the duration; LedgerInUseError at once if another process holds it."""
    path = lock_path(ledger)
    fd = _open_lock(path, "lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise LedgerInUseError(
                f"ledger {ledger} is in use by another `ei-supersink run` (pid {holder}): one supersink per ledger"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def loads_lock_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".loads.lock")


@contextmanager
def loads_lock(ledger: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the ledger's loads lock for the duration (see the module docstring): True when held; with `wait`
    False, False at once when another process holds it."""
    fd = _open_lock(loads_lock_path(ledger), "loads lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            held = False
        else:
            held = True
        yield held
    finally:
        os.close(fd)  # releases the lock
