"""One producer run in process (producer.run and the CLI around it): settings, the run's outcome and summary,
the exit code of an unexpected error, flush_spool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventindex.errors import ConfigError
from eventindex.transport import open_consumer
from producer import cli
from producer.job import JobSpec
from producer.run import RunConfig, RunOutcome, open_inputs, run_job
from producer.spool import PointerSpool, flush_spool
from tests.helpers import store_dir

SPEC = JobSpec(task="t", job="j", attempt=1, dataset="ds", chunk_events=1_000)


def test_the_mode_decides_whether_a_store_is_needed(tmp_path: Path) -> None:
    broker = (f"sqlite://{tmp_path / 'q.db'}",)
    with pytest.raises(ConfigError, match="--store is required"):
        RunConfig(spec=SPEC, inputs=("synthetic:10",), brokers=broker)
    with pytest.raises(ConfigError, match="no --store"):
        RunConfig(spec=SPEC, inputs=("synthetic:10",), brokers=broker, store=tmp_path.as_uri(), mode="mq")
    RunConfig(spec=SPEC, inputs=("synthetic:10",), brokers=broker, mode="mq")


def test_run_job_stores_announces_and_counts(tmp_path: Path) -> None:
    broker = f"sqlite://{tmp_path / 'q.db'}"
    config = RunConfig(
        spec=SPEC, inputs=("synthetic:2500:7",), brokers=(broker,), store=store_dir(tmp_path / "s"),
        spool=tmp_path / "p.spool",
    )  # fmt: skip
    outcome = run_job(config, open_inputs(config), None)
    assert (outcome.result.events, outcome.result.chunks) == (2_500, 3)
    assert (outcome.broker_messages, outcome.spooled, outcome.spool_reason, outcome.store_retries) == (4, 0, None, 0)
    with open_consumer(broker) as consumer:
        bodies = []
        while (message := consumer.receive(0.2)) is not None:
            bodies.append(message.body)
            consumer.ack(message)
    assert len(bodies) == 4 and outcome.broker_bytes == sum(len(b) for b in bodies)
    summary = json.loads(outcome.summary_line())
    assert (summary["events"], summary["chunks"], summary["spooled"], summary["broker_messages"]) == (2_500, 3, 0, 4)
    assert summary["manifest"] == outcome.result.manifest_url != ""
    assert outcome.figures()["events"] == 2_500


def test_an_unexpected_error_is_one_line_and_exit_1_with_its_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object) -> RunOutcome:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "run_job", broken)
    metrics = tmp_path / "m.prom"
    code = cli.main(
        ["--task", "t", "--job", "j", "--attempt", "1", "--dataset", "d", "--input", "synthetic:10",
         "--store", store_dir(tmp_path), "--broker", f"sqlite://{tmp_path / 'q.db'}", "--metrics-file", str(metrics)]
    )  # fmt: skip
    assert code == 1
    assert capsys.readouterr().err == "ei-producer: internal error: RuntimeError: a bug\n"
    assert "ei_producer_last_job_exit_code 1.0" in metrics.read_text()


def test_flush_spool_sends_what_was_spooled_and_empties_it(tmp_path: Path) -> None:
    spool = PointerSpool(tmp_path / "p.spool")
    spool.append(b"a", {"k": "v"}, "t")
    spool.append(b"b", {}, None)
    broker = f"sqlite://{tmp_path / 'q.db'}"
    result = flush_spool(spool.path, [broker])
    assert (result.sent, result.skipped) == (2, 0) and spool.pending() == 0
    with open_consumer(broker) as consumer:
        received = [consumer.receive(0.2) for _ in range(2)]
    assert [m.body for m in received if m is not None] == [b"a", b"b"]


def test_flush_spool_of_a_file_that_is_not_a_spool_is_exit_2_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("line one\nline two\n")
    code = cli.main(["flush-spool", "--broker", f"sqlite://{tmp_path / 'q.db'}", "--spool", str(notes)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "not a pointer spool" in err
    assert notes.read_text() == "line one\nline two\n"
