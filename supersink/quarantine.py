"""The quarantine: the messages the supersink refused, kept in the ledger with their raw bytes.

`ei-supersink quarantine list` shows them; `quarantine retry` sends held ones to the broker again
(after the cause was fixed, e.g. a producer upgraded), each marked `retried` once the broker took it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventindex.errors import ConfigError
from eventindex.transport import open_publisher
from supersink.ledger import Ledger, QuarantineState


def entries(ledger: Ledger) -> list[dict[str, Any]]:
    """Every entry, oldest first: id, task, reason, state and the size of the body kept."""
    return [
        {"id": e.id, "task": e.task, "reason": e.reason, "state": e.state, "bytes": e.bytes}
        for e in ledger.quarantine_listing()
    ]


def render(listing: list[dict[str, Any]]) -> str:
    """One line per entry."""
    return "".join(f"#{e['id']} [{e['state']}] task={e['task'] or '-'}: {e['reason']}\n" for e in listing)


def retry(ledger: Ledger, broker: str, ids: Sequence[int] | None) -> list[int]:
    """Send the held entries `ids` (None: every held one) to `broker` again, in order; returns the ids
    sent. An id that is not held, or an entry that kept only the start of its body, is refused
    (ConfigError) before anything is sent."""
    held = ledger.held_cut(ids)  # no body yet: thousands of entries of up to 4 MiB each would not fit in memory
    chosen = sorted(held) if ids is None else list(ids)
    unknown = [i for i in chosen if i not in held]
    if unknown:
        raise ConfigError(f"no held quarantine entry with id {', '.join(map(str, unknown))}")
    cut = [i for i in chosen if held[i]]
    if cut:
        raise ConfigError(f"quarantine entries {', '.join(map(str, cut))} kept only the start of their body")
    sent = []
    with open_publisher(broker) as publisher:
        for entry_id in chosen:
            found = ledger.quarantined(QuarantineState.HELD, [entry_id])  # one body in memory at a time
            if not found:
                continue  # sent already (an id given twice), or expired by the service meanwhile
            entry = found[0]
            publisher.send(entry.body, entry.headers, group=entry.headers.get("JMSXGroupID") or entry.task)
            with ledger.transaction():
                ledger.set_quarantine_state(entry_id, QuarantineState.RETRIED)
            sent.append(entry_id)
    return sent
