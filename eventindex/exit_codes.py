"""The exit codes of `ei-producer` and `ei-supersink`, and the one mapping from an error to a code and a line.

The codes are stable (the README's table, docs/producer.md, docs/operations.md):

  0    ok; also a request with nothing to do (`NothingToDoError`, e.g. an amendment with no late job)
  1    internal error: a bug, still reported in one line
  2    usage: bad command line, URL, name, number or path (`ConfigError`), or an optional dependency
       that is not installed (the line names the pip extra that installs it)
  3    the producer: an input is unreadable or inconsistent (`InputError`);
       the supersink: something needs attention (`NeedsAttentionError`: a task that cannot be loaded now)
  4    the object store failed (`StoreError`)
  5    the broker failed (`TransportError`)
  6    the producer: everything stored but the pointers were spooled (a result, not an error);
       the supersink: its ledger or warehouse failed (`StateError`, or SQLite itself; the producer
       has neither, and would report one as an internal error, 1)
  129  `ei-supersink run` stopped by SIGHUP (as gently as by SIGTERM; not 0, so that a service manager
       restarting on failure starts it again)
  130  interrupted (SIGINT)
  128+N  `ei-producer`: ended by signal N (SIGTERM 143, SIGHUP 129, SIGUSR1 138, SIGXCPU 152), with one line
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from typing import NamedTuple, NoReturn, TextIO

from eventindex.errors import (
    ConfigError,
    EventIndexError,
    InputError,
    NeedsAttentionError,
    NothingToDoError,
    StateError,
    StoreError,
    TransportError,
)
from eventindex.redact import redact

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_ATTENTION = 3
EXIT_STORE = 4
EXIT_BROKER = 5
EXIT_SPOOLED = 6
EXIT_STATE = 6
EXIT_HANGUP = 129
EXIT_INTERRUPTED = 130

#: Optional dependencies: the top-level module, and the pip extra that installs it.
EXTRAS = {"stomp": "stomp", "pika": "amqp", "hdfs": "hdfs"}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other error of the tools, and
    redacted: argparse echoes a value it refuses, and a URL with a password given to the wrong option
    (`--chunk-events s3://KEY:SECRET@bucket/p`) must not be printed back."""

    def error(self, message: str) -> NoReturn:
        line = redact(" ".join(message.split()))
        self.exit(EXIT_USAGE, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def emit(text: str, stream: TextIO, end: str = "\n") -> None:
    """Write a tool's output. A reader that went away (a closed pipe: `ei-supersink status --json | head -1`, a
    full device) does not change the exit code: the stream is pointed at /dev/null, so nothing fails at exit
    either."""
    try:
        stream.write(text + end)
        stream.flush()
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class Terminated(KeyboardInterrupt):
    """A signal that asks a tool to end (a batch system's SIGTERM at its wall-time limit, SIGXCPU, SIGUSR1,
    SIGHUP), raised like Ctrl-C's KeyboardInterrupt so that the same unwinding runs (an upload in progress is
    aborted, a spool is kept); the tool exits 128 + the signal with one line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def raising_on(*signums: int) -> Iterator[None]:
    """Within the block, `signums` raise `Terminated` in the main thread; the handlers before are put back after
    it (a command run in process, by a test, leaves none behind). Outside the main thread: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before if before is not None else signal.SIG_DFL)


class ExitStatus(NamedTuple):
    """What a command line tool ends with: its exit code and the one line it prints on stderr."""

    code: int
    text: str


def exit_status(exc: BaseException, *, keeps_state: bool = True) -> ExitStatus:
    """The exit code for an error that ended a command, and its one-line text (whitespace folded).

    `keeps_state`: the tool has a ledger (the supersink). A tool without one (the producer, whose 6 means
    "spooled") reports a state or SQLite error as an internal error instead: it should never meet one."""
    code, text = _classify(exc)
    if code == EXIT_STATE and not keeps_state:
        code, text = EXIT_INTERNAL, f"internal error: {text}"
    return ExitStatus(code, " ".join(text.split()))


def _classify(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, Terminated):
        return 128 + exc.signum, f"terminated by {signal.Signals(exc.signum).name}"
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, ModuleNotFoundError):
        extra = EXTRAS.get((exc.name or "").partition(".")[0])
        if extra is None:
            return EXIT_INTERNAL, f"internal error: {exc}"
        return EXIT_USAGE, f"{exc.name} is not installed: pip install 'eventindex-collect[{extra}]'"
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, NeedsAttentionError):
        return EXIT_ATTENTION, str(exc)
    if isinstance(exc, NothingToDoError):
        return EXIT_OK, str(exc)
    if isinstance(exc, InputError):
        return EXIT_INPUT, f"input error: {exc}"
    if isinstance(exc, StoreError):
        return EXIT_STORE, f"store error: {exc}"
    if isinstance(exc, TransportError):
        return EXIT_BROKER, f"broker error: {exc}"
    if isinstance(exc, StateError):
        return EXIT_STATE, str(exc)
    if isinstance(exc, sqlite3.Error):
        return EXIT_STATE, f"ledger error: {exc}"
    if isinstance(exc, EventIndexError):
        return EXIT_INTERNAL, f"error: {exc}"
    return EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
