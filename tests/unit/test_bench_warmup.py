"""benchmarks.warmup: it does what a run's clients do, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.warmup import main, warm_broker, warm_store
from eventindex.store import open_store
from eventindex.transport import open_consumer


def test_the_broker_warm_up_sends_and_takes_back_every_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/queue.db"
    warm_broker(url, 7)
    with open_consumer(url) as consumer:
        assert consumer.receive(0.1) is None  # all 7 were received and acknowledged


def test_the_store_warm_up_deletes_what_it_wrote(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    (tmp_path / "store").mkdir()
    warm_store(url, 5)
    assert list(open_store(url).list("")) == []


def test_a_broker_that_refuses_gets_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = (tmp_path / "store").as_uri()
    assert main(["stomp://127.0.0.1:1/queue/q", store, "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("warm-up: ") and err.count("\n") == 1


def test_bad_arguments_get_the_usage_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sqlite:///x", "file:///y"]) == 2
    assert "usage" in capsys.readouterr().err
