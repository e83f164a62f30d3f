"""`ei-supersink load` and `run` close what they opened when opening the next thing fails."""

from __future__ import annotations

from pathlib import Path

import pytest

import supersink.cli
from eventindex.store.local import LocalStore
from supersink.ledger import Ledger


@pytest.mark.parametrize("command", ["load", "run"])
def test_a_warehouse_that_cannot_be_opened_leaves_the_ledger_and_store_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    Ledger(tmp_path / "ledger.db").close()  # `load` needs a ledger that exists
    (tmp_path / "store").mkdir()  # and both a store directory that exists
    closed: list[str] = []
    for cls, name in ((Ledger, "ledger"), (LocalStore, "store")):
        original = cls.close

        def close(self: object, original: object = original, name: str = name) -> None:
            closed.append(name)
            original(self)  # type: ignore[operator]

        monkeypatch.setattr(cls, "close", close)
    args = ["--state", str(tmp_path / "ledger.db"), "--store", (tmp_path / "store").as_uri(),
            "--warehouse", "nosuchscheme://wh"]  # fmt: skip
    if command == "load":
        args += ["--task", "t1"]
    else:
        args += ["--broker", f"sqlite://{tmp_path / 'queue.db'}", "--until-idle", "0.1"]
    code = supersink.cli.main([command, *args])
    assert code == 2, capsys.readouterr().err
    assert "nosuchscheme" in capsys.readouterr().err
    assert sorted(closed) == ["ledger", "store"]


@pytest.mark.parametrize("command", ["committed", "migrate-layout"])
def test_read_only_commands_do_not_create_a_mistyped_warehouse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    typo = tmp_path / "warehuose"
    assert supersink.cli.main([command, "--warehouse", typo.as_uri()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err, err
    assert not typo.exists()
