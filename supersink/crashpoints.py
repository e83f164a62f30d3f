"""Named crash points, for the fault-injection tests that prove crash safety.

`EI_SUPERSINK_CRASH_AT=NAME[:N]` makes the process SIGKILL itself the N-th time (default 1st)
it passes crash point NAME, exactly as an OOM kill or a power cut would stop it: no cleanup,
no flush, no ack. Unset (always, in production), a crash point costs one comparison.
"""

from __future__ import annotations

import os
import signal

ENV = "EI_SUPERSINK_CRASH_AT"

#: Every crash point, in the order a message and a load pass them.
POINTS = (
    "intake.fetched",  # an object fetched and verified, nothing recorded yet
    "intake.recorded",  # the ledger committed, the message not yet acked
    "load.claimed",  # the load claim written, no part yet
    "load.row_group",  # after each row group written to a part file
    "load.part_closed",  # after each part file closed
    "load.parts_done",  # every part written, strays removed, no commit marker yet
    "load.committed",  # the commit marker written, the ledger not yet told
    "notify.before_publish",  # a commit recorded (its notification in the outbox), not yet published
)

_target, _, _count = os.environ.get(ENV, "").partition(":")
_remaining = int(_count) if _count.isdigit() else 1
if _target and _target not in POINTS:  # a misspelt point would silently never fire
    raise SystemExit(f"{ENV}={_target!r}: no such crash point; one of {', '.join(POINTS)}")


def crashpoint(name: str) -> None:
    """Die here if the environment asks for it."""
    global _remaining
    if name != _target:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
