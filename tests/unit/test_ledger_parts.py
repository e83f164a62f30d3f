"""The ledger's bookkeeping of broker-only messages: a file is complete when its messages 0..last are all in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from supersink.ledger import Ledger

FILE = ("task1", "job1", 1, 0)


def add(ledger: Ledger, part: int, last: bool = False) -> None:
    with ledger.transaction():
        ledger.record_part(*FILE, part=part, last=last, events=2, payload=f"payload {part}".encode())


def test_a_file_is_complete_once_every_part_up_to_the_last_is_in_whatever_the_order(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    for part, last in ((3, True), (0, False), (2, False)):
        add(ledger, part, last)
        assert not ledger.parts_complete(*FILE)
    add(ledger, 2)  # a redelivered message counts once
    assert not ledger.parts_complete(*FILE)
    add(ledger, 1)
    assert ledger.parts_complete(*FILE)
    assert [row.part for row in ledger.parts(*FILE)] == [0, 1, 2, 3]
    with ledger.transaction():
        ledger.drop_parts(*FILE)
    assert not ledger.parts_complete(*FILE) and ledger.parts(*FILE) == []


def test_no_last_part_or_a_part_beyond_the_last_is_never_complete(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    for part in range(3):
        add(ledger, part)
    assert not ledger.parts_complete(*FILE), "no message says it is the last"
    add(ledger, 5)
    add(ledger, 3, last=True)
    assert not ledger.parts_complete(*FILE), "part 5 comes after the last one (3): the file is malformed"


def test_a_ledger_from_before_the_file_counts_picks_up_the_messages_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = Ledger(path)
    add(ledger, 0)
    add(ledger, 1)
    ledger.close()
    with sqlite3.connect(path) as db:  # as the previous version left it: messages, no per-file counts
        db.execute("DROP TABLE mq_files")
    ledger = Ledger(path)
    assert not ledger.parts_complete(*FILE)
    add(ledger, 2, last=True)
    assert ledger.parts_complete(*FILE)
