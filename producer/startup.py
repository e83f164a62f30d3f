"""The `ei-producer` command's start-up, without the cyclic garbage collector.

A grid job's producer is a short process, and most of a small job's CPU is start-up: importing numpy,
pyarrow and, for ROOT files, uproot and awkward (~0.8 CPU-s here), whose modules, classes and
functions live until the process exits. The collector's passes over them while they are being made
are wasted work (~8 % of a 100-event job). So the command runs with the collector off from its first
import until its inputs are open; then everything made so far is frozen (never scanned again) and
the collector runs as usual for the job itself.
"""

from __future__ import annotations

import gc
import sys

_paused = False


def pause() -> None:
    """Turn the collector off, if it is on, until :func:`resume`."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """After start-up: freeze what exists and turn the collector back on (only if :func:`pause` turned it off)."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False


def main() -> int:
    """The console script: `producer.cli.main`, imported and started with the collector paused."""
    pause()
    try:
        from producer.cli import main as command

        return command()
    except KeyboardInterrupt as exc:  # Ctrl-C (or a signal) outside the command's own handling: one line too
        from eventindex.exit_codes import exit_status

        code, text = exit_status(exc, keeps_state=False)
        print(f"ei-producer: {text}", file=sys.stderr)
        return code
    finally:
        resume()
