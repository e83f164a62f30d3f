"""The operations pieces without servers: log lines (JSON, redaction), the tokens file, `--since`,
load progress lines, the outbox, the producer's metrics file and progress line."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventindex.errors import ConfigError
from producer.job import Progress
from producer.metrics import write_metrics
from producer.progress import progress_printer
from supersink.ledger import Ledger
from supersink.logs import JsonFormatter, Redactor, TextFormatter
from supersink.notify import Notifier, add_commit, parse_since, pending, since
from supersink.progress import LoadProgress
from supersink.web import Tokens

MARKER = {
    "task": "t1", "dataset": "data24.x", "rows": 10, "files": [{"name": "part-00000.parquet", "rows": 10}],
    "partial": False, "committed_at": "2025-06-01T12:00:00Z", "loaded_by": "abc",
}  # fmt: skip


def record(message: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("supersink.service", level, __file__, 1, message, args, None)


def test_json_lines_carry_the_task_and_never_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EI_BROKER_PASSWORD", "hunter2-broker")
    redact = Redactor(["bearer-secret-0123456789"])
    line = JsonFormatter(redact).format(
        record("task %s: failed at stomp://user:hunter2-broker@h:61613/queue/q token=%s Bearer abc.def "
               "x-amz-signature=ff", "t.1", "bearer-secret-0123456789")
    )  # fmt: skip
    entry = json.loads(line)
    assert set(entry) == {"timestamp", "level", "logger", "message", "task"}
    assert (entry["level"], entry["logger"], entry["task"]) == ("info", "supersink.service", "t.1")
    assert "hunter2" not in line and "bearer-secret" not in line and "abc.def" not in line and "=ff" not in line
    assert entry["message"].startswith("task t.1: failed at stomp://***@h:61613/queue/q token=***")
    assert "task" not in json.loads(JsonFormatter(redact).format(record("metrics on port 9")))
    assert TextFormatter("ei-supersink", redact).format(record("x hunter2-broker")) == "ei-supersink: x ***"


def test_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = "t" * 20
    path.write_text(json.dumps({"clients": [{"name": "a", "token": token, "datasets": ["data24.*", "mc23.x"]}]}))
    tokens = Tokens.from_file(path)
    client = tokens.client(f"Bearer {token}")
    assert client is not None and client.name == "a"
    assert client.may_see("data24.foo") and client.may_see("mc23.x") and not client.may_see("data25.foo")
    for header in (None, "", token, f"Basic {token}", "Bearer " + "u" * 20):
        assert tokens.client(header) is None
    for bad in ("[]", "{", json.dumps({"clients": [{"name": "a", "token": "short", "datasets": []}]})):
        path.write_text(bad)
        with pytest.raises(ConfigError, match="--tokens"):
            Tokens.from_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        Tokens.from_file(tmp_path / "missing.json")


def test_since() -> None:
    now = 1_000_000.0
    assert parse_since("90m", now) == now - 5400
    assert parse_since("2d", now) == now - 2 * 86400
    assert parse_since("2025-06-01T00:00:00Z") == parse_since("2025-06-01") == 1748736000.0
    assert parse_since("2025-06-01T02:00:00+02:00") == 1748736000.0
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday")


def test_load_progress_lines_at_most_every_interval() -> None:
    lines: list[str] = []
    progress = LoadProgress("t1", total_events=1_000_000, rows_per_file=100_000, say=lines.append, interval=0.05)
    progress(10)  # too early for a line
    time.sleep(0.06)
    progress(250_000)
    progress(260_000)  # too soon after the last line
    assert len(lines) == 1
    assert lines[0].startswith("task t1: loading, 250,000 of 1,000,000 events read (25.0%), ")
    assert "events/s, 2 part file(s) of 100,000 rows written" in lines[0]


def test_outbox_once_per_commit_and_drained_in_order(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    sent: list[tuple[bytes, dict[str, str]]] = []

    class Recorder:
        def send(self, body: bytes, headers: dict[str, str] | None = None, group: str | None = None) -> None:
            sent.append((body, dict(headers or {})))

        def close(self) -> None:
            pass

    try:
        with ledger.transaction():
            add_commit(ledger, "/wh/dataset=data24.x/task=t1", MARKER)
            add_commit(ledger, "/wh/dataset=data24.x/task=t1", MARKER)  # the same commit adopted again
            add_commit(ledger, "/wh/dataset=data24.x/task=t1", {**MARKER, "amendment": 1, "rows": 3})
        seqs = [n.seq for n in pending(ledger)]
        assert len(seqs) == 2 and seqs == sorted(seqs)
        notifier = Notifier(ledger, "sqlite:///unused", None, connect=lambda url: Recorder())  # type: ignore[arg-type,return-value]
        assert notifier.drain() == 2
        assert pending(ledger) == [] and notifier.drain() == 0
        first, amendment = (json.loads(body) for body, _ in sent)
        assert first["marker"] == "/wh/dataset=data24.x/task=t1/_SUCCESS.json"
        assert amendment["marker"] == "/wh/dataset=data24.x/task=t1/_AMEND-0001.json"
        assert first["files"] == ["/wh/dataset=data24.x/task=t1/part-00000.parquet"]
        assert first["id"] != amendment["id"] and sent[0][1]["ei-notification-id"] == first["id"]
        assert [n.id for n in since(ledger)] == [first["id"], amendment["id"]]
    finally:
        ledger.close()


def test_producer_metrics_file_and_progress_total(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "producer.prom"
    write_metrics(path, 0, {"events": 1234, "chunks": 2, "seconds": 1.5})
    values = {s.name: s.value for f in text_string_to_metric_families(path.read_text()) for s in f.samples}
    assert values["ei_producer_last_job_events"] == 1234
    assert values["ei_producer_last_job_exit_code"] == 0
    show = progress_printer(4000)
    progress = Progress(events=1000, chunks=1, bytes=10)
    show(progress)
    assert "1,000 of 4,000 events (25.0%)" in capsys.readouterr().err
