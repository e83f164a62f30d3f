"""`quarantine retry --all` over thousands of held entries: one body in memory at a time, each sent once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from eventindex.errors import ConfigError
from eventindex.transport import open_consumer
from supersink import quarantine
from supersink.ledger import Ledger, QuarantineEntry, QuarantineState


class CountingLedger(Ledger):
    """A ledger that remembers how many entries (with their bodies) each read of the quarantine returned."""

    reads: list[int]

    def quarantined(
        self, state: QuarantineState | None = QuarantineState.HELD, ids: Sequence[int] | None = None
    ) -> list[QuarantineEntry]:
        found = super().quarantined(state, ids)
        self.reads.append(len(found))
        return found


def _held(tmp_path: Path, n: int) -> tuple[CountingLedger, list[int]]:
    ledger = CountingLedger(tmp_path / "ledger.db")
    ledger.reads = []
    with ledger.transaction():
        ids = [
            ledger.quarantine(f"reason {i}", {"ei-task": "t"}, f"body {i}".encode() * 100, task="t") for i in range(n)
        ]
    return ledger, ids


def test_retry_all_reads_one_body_at_a_time_and_sends_each_entry_once_in_order(tmp_path: Path) -> None:
    ledger, ids = _held(tmp_path, 40)
    broker = f"sqlite://{tmp_path / 'queue.db'}"
    assert quarantine.retry(ledger, broker, None) == ids
    assert ledger.reads and max(ledger.reads) == 1, "every held body read at once: thousands of 4 MiB bodies"
    with open_consumer(broker) as consumer:
        bodies = []
        while (message := consumer.receive(0.2)) is not None:
            bodies.append(message.body)
            consumer.ack(message)
    assert bodies == [f"body {i}".encode() * 100 for i in range(40)]
    assert ledger.quarantined(QuarantineState.HELD) == []
    ledger.close()


def test_an_id_given_twice_is_sent_once(tmp_path: Path) -> None:
    ledger, ids = _held(tmp_path, 3)
    broker = f"sqlite://{tmp_path / 'queue.db'}"
    assert quarantine.retry(ledger, broker, [ids[1], ids[1]]) == [ids[1]]
    with open_consumer(broker) as consumer:
        first = consumer.receive(0.5)
        assert first is not None and first.body == b"body 1" * 100
        consumer.ack(first)
        assert consumer.receive(0.2) is None, "the same message sent twice"
    ledger.close()


@pytest.mark.parametrize("cut", [True, False])
def test_a_cut_entry_is_refused_before_anything_is_sent(tmp_path: Path, cut: bool) -> None:
    ledger, ids = _held(tmp_path, 2)
    if cut:
        ledger.db.execute("UPDATE quarantine SET size = size + 1 WHERE id = ?", (ids[1],))
    broker = f"sqlite://{tmp_path / 'queue.db'}"
    if cut:
        with pytest.raises(ConfigError, match=f"quarantine entries {ids[1]} kept only the start"):
            quarantine.retry(ledger, broker, None)
        assert [e.id for e in ledger.quarantined(QuarantineState.HELD)] == ids, "nothing sent, nothing marked"
    else:
        assert quarantine.retry(ledger, broker, None) == ids
    ledger.close()
