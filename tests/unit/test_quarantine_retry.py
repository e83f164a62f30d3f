"""`quarantine retry --id N` reads and sends only the entries asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventindex.errors import ConfigError
from eventindex.transport import open_consumer
from supersink import quarantine
from supersink.ledger import Ledger, QuarantineState


def test_retry_by_id_sends_only_those_entries_and_reads_no_other_body(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.transaction():
        ids = [
            ledger.quarantine(f"reason {n}", {"ei-task": f"t{n}"}, f"body {n}".encode(), task=f"t{n}") for n in range(3)
        ]
    assert [e.id for e in ledger.quarantined(QuarantineState.HELD, [ids[2], ids[0]])] == [ids[0], ids[2]]
    assert ledger.quarantined(QuarantineState.HELD, []) == []

    broker = f"sqlite://{tmp_path / 'queue.db'}"
    assert quarantine.retry(ledger, broker, [ids[1]]) == [ids[1]]
    with open_consumer(broker) as consumer:
        message = consumer.receive(1.0)
        assert message is not None and message.body == b"body 1"
        consumer.ack(message)
        assert consumer.receive(0.1) is None, "only the entry asked for"
    assert [e.id for e in ledger.quarantined(QuarantineState.HELD)] == [ids[0], ids[2]]
    assert [e.id for e in ledger.quarantined(QuarantineState.RETRIED)] == [ids[1]]

    with pytest.raises(ConfigError, match=f"no held quarantine entry with id {ids[1]}"):
        quarantine.retry(ledger, broker, [ids[1]])  # retried already: no longer held
    ledger.close()


def test_a_quarantine_reason_is_kept_redacted_and_the_message_as_it_came(tmp_path: Path) -> None:
    """The reason is shown on the status page and by `quarantine list`: no credential that reached it."""
    ledger = Ledger(tmp_path / "ledger.db")
    body = b"url=s3://AKIA:wJalr/XUtn@bucket/p/t/j/1/chunk-000000.eic"
    with ledger.transaction():
        entry = ledger.quarantine(
            "pointer outside the store: s3://AKIA:wJalr/XUtn@bucket/p/x?token=abc123 refused", {"ei-task": "t"}, body
        )
    (kept,) = ledger.quarantined(QuarantineState.HELD, [entry])
    assert kept.reason == "pointer outside the store: s3://***@bucket/p/x?token=*** refused"
    assert "wJalr" not in quarantine.render(quarantine.entries(ledger))
    assert kept.body == body, "the message itself is kept as it came, to be sent again"
