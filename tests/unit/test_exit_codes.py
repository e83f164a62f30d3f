"""The one mapping from an error to an exit code and a line, shared by ei-producer and ei-supersink."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from eventindex.errors import (
    AlreadyCommittedError,
    BrokerConnectionError,
    CorruptObjectError,
    EventIndexError,
    InputError,
    InvalidNameError,
    MessageError,
    ObjectNotFoundError,
    StoreUnavailableError,
)
from eventindex.exit_codes import ExitStatus, Terminated, exit_status, raising_on
from supersink.amend import NothingToAmendError, NotLoadedError
from supersink.fetch import ChunkUnusableError
from supersink.ledger import LedgerError
from supersink.service import TaskNotLoadableError
from supersink.warehouse import ClaimedElsewhereError


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InvalidNameError("bad task name 'a/b'"), (2, "bad task name 'a/b'")),
        (InputError("f.root: truncated"), (3, "input error: f.root: truncated")),
        (TaskNotLoadableError("task t is waiting: 1 of 2 jobs"), (3, "task t is waiting: 1 of 2 jobs")),
        (NotLoadedError("task t has no commit"), (3, "task t has no commit")),
        (ChunkUnusableError("t/j/c1", "checksum mismatch"), (3, "chunk t/j/c1: checksum mismatch")),
        (NothingToAmendError("task t has no late job"), (0, "task t has no late job")),
        (ObjectNotFoundError("s3://b/k"), (4, "store error: s3://b/k")),
        (StoreUnavailableError("no answer"), (4, "store error: no answer")),
        (BrokerConnectionError("refused"), (5, "broker error: refused")),
        (LedgerError("cannot open the ledger x"), (6, "cannot open the ledger x")),
        (AlreadyCommittedError("task t committed"), (6, "task t committed")),
        (ClaimedElsewhereError("task t claimed"), (6, "task t claimed")),
        (sqlite3.OperationalError("database is locked"), (6, "ledger error: database is locked")),
        (CorruptObjectError("bad magic"), (1, "error: bad magic")),
        (MessageError("not a pointer"), (1, "error: not a pointer")),
        (EventIndexError("odd"), (1, "error: odd")),
        (KeyError("x"), (1, "internal error: KeyError: 'x'")),
        (KeyboardInterrupt(), (130, "interrupted")),
    ],
)
def test_each_error_has_its_documented_code_and_line(error: BaseException, expected: tuple[int, str]) -> None:
    assert exit_status(error) == ExitStatus(*expected)


def test_a_missing_optional_dependency_names_the_extra_that_installs_it() -> None:
    for module, extra in (("stomp", "stomp"), ("pika", "amqp"), ("hdfs.ext.kerberos", "hdfs")):
        code, text = exit_status(ModuleNotFoundError(f"No module named {module!r}", name=module))
        assert code == 2
        assert text == f"{module} is not installed: pip install 'eventindex-collect[{extra}]'"


def test_a_missing_module_that_is_no_extra_is_a_bug() -> None:
    assert exit_status(ModuleNotFoundError("No module named 'nope'", name="nope")) == (
        1,
        "internal error: No module named 'nope'",
    )


def test_the_line_is_one_line() -> None:
    assert exit_status(LedgerError("cannot open\n  the ledger\tx")).text == "cannot open the ledger x"


def test_a_tool_without_a_ledger_reports_a_state_error_as_internal_not_as_spooled() -> None:
    assert exit_status(sqlite3.OperationalError("disk I/O error"), keeps_state=False) == ExitStatus(
        1, "internal error: ledger error: disk I/O error"
    )
    assert exit_status(LedgerError("x"), keeps_state=False).code == 1
    assert exit_status(BrokerConnectionError("refused"), keeps_state=False) == ExitStatus(5, "broker error: refused")


def test_a_terminating_signal_unwinds_like_ctrl_c_exits_128_plus_n_and_the_handler_is_put_back() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    with raising_on(signal.SIGUSR2), pytest.raises(Terminated) as caught:
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(5)  # the handler raises in this thread at once
    assert isinstance(caught.value, KeyboardInterrupt)
    assert exit_status(caught.value) == ExitStatus(128 + signal.SIGUSR2, "terminated by SIGUSR2")
    assert signal.getsignal(signal.SIGUSR2) == before
    assert exit_status(Terminated(signal.SIGTERM)) == ExitStatus(143, "terminated by SIGTERM")
