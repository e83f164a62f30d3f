"""Progress of a long benchmark on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """One line per event, plus a live line: rewritten in place on a terminal, every 15 s otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._live = False
        self._last = 0.0

    def line(self, text: str) -> None:
        if self._live:
            self.stream.write("\r\033[K")
            self._live = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def live(self, text: str) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self._live = True
        elif now - self._last >= 15:
            self.stream.write(text + "\n")
            self._last = now
        self.stream.flush()
