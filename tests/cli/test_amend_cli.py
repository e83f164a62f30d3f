"""`ei-supersink load --amend` as a process: exit 3 for a task not loaded, 0 when nothing is late."""

from __future__ import annotations

import subprocess

from tests.helpers import Pipeline, sink_cli
from tests.unit.test_amend import _force, _run


def test_amend_cli_exit_codes_not_loaded_3_nothing_late_0(pipe: Pipeline) -> None:
    pipe.expect(2)
    pipe.produce("j1", 1)
    _run(pipe)
    args = ["--task", "task1", "--store", (pipe.root / "store").as_uri(), "--warehouse", (pipe.root / "wh").as_uri()]
    args += ["--state", str(pipe.root / "ledger.db"), "--amend"]

    def load() -> subprocess.CompletedProcess[str]:
        return sink_cli("load", *args)

    not_loaded = load()
    assert not_loaded.returncode == 3 and "not loaded yet" in not_loaded.stderr
    _force(pipe)
    nothing_late = load()
    assert nothing_late.returncode == 0 and "no late job" in nothing_late.stderr
