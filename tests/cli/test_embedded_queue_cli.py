"""The embedded queue across processes: a consumer killed by SIGKILL loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from eventindex.transport import open_consumer, open_publisher
from tests.unit.test_embedded_queue import url


def test_consumer_killed_by_sigkill_loses_nothing(tmp_path: Path) -> None:
    with open_publisher(url(tmp_path)) as pub:
        pub.send(b"precious")
    code = (
        "import sys, time; from eventindex.transport import open_consumer\n"
        f"c = open_consumer({url(tmp_path)!r}); m = c.receive(5); print(m.body.decode(), flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "precious"
    with open_consumer(url(tmp_path)) as con:
        assert con.receive(0.1) is None  # still leased to the living process
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        m = con.receive(1)
        assert m is not None and m.body == b"precious" and m.redelivered
