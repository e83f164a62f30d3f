"""Issue 8, errors surface: every ei-supersink error is one line with the exit code README's table
documents; typos create nothing; --quiet hides no error; files follow the umask."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventindex.names import chunk_key
from eventindex.store.local import LocalStore
from supersink import cli
from supersink.metrics import BROKER_LOGGER
from supersink.retention import RetentionPolicy
from supersink.service import Supersink
from tests.helpers import Pipeline

ROOT = Path(__file__).resolve().parents[2]


def readme_exit_codes() -> dict[int, str]:
    """The exit-code table of README's ei-supersink section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## ei-supersink") : text.index("## Operations")]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)}


def sink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supersink.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=120,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    return Pipeline(tmp_path)


def paths(pipe: Pipeline) -> dict[str, str]:
    return {
        "broker": pipe.broker,
        "store": (pipe.root / "store").as_uri(),
        "wh": (pipe.root / "wh").as_uri(),
        "state": str(pipe.root / "ledger.db"),
    }


def run_args(pipe: Pipeline, **override: str) -> list[str]:
    p = {**paths(pipe), **override}
    return ["run", "--broker", p["broker"], "--store", p["store"], "--warehouse", p["wh"], "--state", p["state"]]


def test_readme_table_lists_exactly_the_codes_the_cli_defines() -> None:
    table = readme_exit_codes()
    defined = {value for name, value in vars(cli).items() if name.startswith("EXIT_")}
    assert set(table) == defined == {0, 1, 2, 3, 4, 5, 6, 129, 130}
    for code in table:
        assert re.search(rf"\b{code}\b", cli.__doc__ or ""), f"exit code {code} missing from the CLI's help"


@pytest.fixture
def ledger_with_a_waiting_task(pipe: Pipeline) -> Iterator[Pipeline]:
    pipe.expect(2)
    pipe.produce("j1", 1)
    pipe.run_supersink()
    yield pipe


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["expect", "--broker", "sqlite:///tmp/q.db", "--task", "t", "--jobs", "100000000000"],
            "outside 1-4,294,967,295",
        ),
        (["expect", "--broker", "sqlite:///tmp/q.db", "--task", "t", "--jobs", "0"], "outside 1-"),
        (["expect", "--broker", "sqlite:///tmp/q.db", "--task", "t", "--jobs", "2", "--events", "-1"], "outside 0-"),
        (["expect", "--broker", "sqlite:///tmp/q.db", "--task", "t", "--jobs", "many"], "'many' is not a whole number"),
        (["expect", "--broker", "sqlite:///tmp/q.db", "--task", "../t", "--jobs", "1"], "'../t'"),
        (["status"], "the following arguments are required: --state"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_usage_problems_are_one_line_exit_2(args: list[str], words: str) -> None:
    proc = sink(*args)
    assert proc.returncode == 2
    assert words in one_line(proc)


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--until-idle", "nan", "outside 0-"),
        ("--until-idle", "1e300", "outside 0-"),
        ("--task-deadline", "-5", "outside 0-"),
        ("--rows-per-file", "100000000000", "outside 1-1,000,000,000"),
        ("--delete-transit-after", "3x", "not a duration"),
        ("--forget-after", "99999999d", "longer than a century"),
        ("--retention-retry", "10s", "not a duration of at least 1m"),
        ("--retention-retry", "never", "not a duration of at least 1m"),
    ],
)
def test_absurd_numbers_for_run_are_one_line_exit_2(pipe: Pipeline, option: str, value: str, words: str) -> None:
    proc = sink(*run_args(pipe), option, value)
    assert proc.returncode == 2
    assert words in one_line(proc)
    assert not (pipe.root / "ledger.db").exists()


def test_the_retention_options_reach_the_service(pipe: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """--retention-retry was missing: a task retention had to leave alone was tried again hourly, fixed."""
    policies: list[RetentionPolicy] = []
    real = Supersink

    def recording(*args: Any, **kwargs: Any) -> Supersink:
        policies.append(kwargs["retention"])
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "Supersink", recording)
    pipe.expect(1)
    options = ["--delete-transit-after", "2d", "--forget-after", "never", "--quarantine-expiry", "12h"]
    assert cli.main([*run_args(pipe), "--until-idle", "0", *options, "--retention-retry", "15m"]) == 0
    assert cli.main([*run_args(pipe), "--until-idle", "0"]) == 0
    assert policies == [RetentionPolicy(2 * 86_400.0, None, 12 * 3_600.0, 900.0), RetentionPolicy()]
    assert RetentionPolicy().retry == 3_600.0


def test_a_service_run_in_process_leaves_no_log_handler_behind(pipe: Pipeline) -> None:
    """Each run added a handler counting the transports' log records, and none was removed."""
    broker_logger = logging.getLogger(BROKER_LOGGER)
    before = list(broker_logger.handlers)
    pipe.expect(1)
    for _ in range(3):
        assert cli.main([*run_args(pipe), "--until-idle", "0"]) == 0
    assert broker_logger.handlers == before


def test_typos_in_paths_create_nothing(pipe: Pipeline) -> None:
    typo = pipe.root / "typo"
    for override, words in (
        ({"broker": f"sqlite://{typo}/q.db"}, f"sqlite queue {typo}/q.db: directory {typo} does not exist"),
        ({"state": str(typo / "l.db")}, f"ledger {typo}/l.db: directory {typo} does not exist"),
        ({"store": (typo / "store").as_uri()}, f"store directory {typo}/store does not exist"),
    ):
        proc = sink(*run_args(pipe, **override), "--until-idle", "0")
        assert proc.returncode == 2, proc.stderr
        assert words in one_line(proc)
    assert not typo.exists()
    proc = sink("expect", "--broker", f"sqlite://{typo}/q.db", "--task", "t", "--jobs", "1")
    assert proc.returncode == 2 and "does not exist" in one_line(proc)
    proc = sink("reconcile", "--store", (pipe.root / "nostore").as_uri(), "--state", str(pipe.root / "l.db"))
    assert proc.returncode == 2 and "store directory" in one_line(proc) and "does not exist" in proc.stderr
    assert not (pipe.root / "nostore").exists() and not (pipe.root / "l.db").exists()
    assert not typo.exists()


def test_a_ledger_and_a_queue_refuse_each_others_database(pipe: Pipeline) -> None:
    pipe.expect(1)  # creates the queue
    queue_db = pipe.root / "queue.db"
    proc = sink("status", "--state", str(queue_db))
    assert proc.returncode == 2 and f"{queue_db} is not a supersink ledger (it holds the tables" in one_line(proc)
    proc = sink(*run_args(pipe, state=str(queue_db)), "--until-idle", "0")
    assert proc.returncode == 2 and "is not a supersink ledger" in one_line(proc)
    tables = {r[0] for r in sqlite3.connect(queue_db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "tasks" not in tables, "the queue's database was not touched"

    pipe.run_supersink()  # makes the ledger
    ledger_db = pipe.root / "ledger.db"
    proc = sink("expect", "--broker", f"sqlite://{ledger_db}", "--task", "t", "--jobs", "1")
    assert proc.returncode == 2 and f"{ledger_db} is not a queue database" in one_line(proc)
    text = pipe.root / "notes.txt"
    text.write_text("not a database at all\n" * 100)
    proc = sink("status", "--state", str(text))
    assert proc.returncode == 2 and "is not a supersink ledger: file is not a database" in one_line(proc)


def test_load_an_unknown_task_is_exit_2_an_incomplete_one_3_a_loaded_one_0(
    ledger_with_a_waiting_task: Pipeline,
) -> None:
    pipe = ledger_with_a_waiting_task
    p = paths(pipe)
    common = ["--store", p["store"], "--warehouse", p["wh"], "--state", p["state"]]
    proc = sink("load", "--task", "NOPE", *common)
    assert proc.returncode == 2 and "knows no task NOPE" in one_line(proc)
    proc = sink("load", "--task", "task1", *common)
    assert proc.returncode == 3 and "task task1 is waiting" in one_line(proc)
    assert sink("load", "--task", "task1", "--force", *common).returncode == 0
    proc = sink("load", "--task", "task1", *common)
    assert proc.returncode == 0 and proc.stderr.count("\n") <= 1
    assert json.loads(proc.stdout)["already_loaded"] is True
    (pipe.root / "other").mkdir()  # not the warehouse the task was loaded to: the ledger alone does not say "loaded"
    proc = sink("load", "--task", "task1", *common[:2], "--warehouse", (pipe.root / "other").as_uri(), *common[4:])
    assert proc.returncode == 2, proc.stderr
    assert (
        f"but {(pipe.root / 'other').as_uri()} holds no commit of it: is this the warehouse it was loaded to?"
        in one_line(proc)
    )
    proc = sink("load", "--task", "task1", "--state", str(pipe.root / "none.db"), *common[:4])
    assert proc.returncode == 6 and "no ledger at" in one_line(proc)


def test_run_until_idle_exits_3_naming_each_stuck_task_even_when_quiet(pipe: Pipeline) -> None:
    pipe.produce("j1", 1, task="bad")
    pipe.produce("j1", 2, task="fine")
    pipe.produce("j1", 3, task="waits")
    proc = sink(*run_args(pipe), "--until-idle", "0.3", "--quiet")
    assert proc.returncode == 0, proc.stderr  # nothing expected yet: all merely waiting
    assert proc.stderr == ""
    bad_key = chunk_key("bad", "j1", 1, 0)
    path = pipe.root / "store" / bad_key
    path.write_bytes(path.read_bytes()[:-1])
    pipe.expect(1, task="bad")
    pipe.expect(1, task="fine")
    pipe.expect(2, task="waits")
    pipe.send_raw(b"\x00 garbage")
    proc = sink(*run_args(pipe), "--until-idle", "0.3", "--quiet")
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("ei-supersink: task bad damaged: ") and bad_key in lines[-1]
    assert any("quarantined: message body is not a protobuf Pointer" in line for line in lines), "--quiet hides none"
    assert any("task bad damaged" in line for line in lines[:-1]), "the problem was logged when it happened"
    assert "Traceback" not in proc.stderr
    counters = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (counters["tasks_loaded"], counters["tasks_stuck"], counters["quarantined"]) == (1, 1, 1)
    status = sink("status", "--state", str(pipe.root / "ledger.db"))
    assert status.returncode == 0
    text = status.stdout
    assert "bad [ds] DAMAGED" in text and f"problem: job j1 attempt 1: chunk {bad_key}: at load:" in text
    assert "waits [ds] WAITING" in text and "missing: 1 of 2 expected jobs not seen yet" in text


def test_errors_without_a_command_line_form_are_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = readme_exit_codes()

    def boom(args: object) -> int:
        raise RuntimeError("a bug\nover two lines")

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "status", boom)
    assert cli.main(["status", "--state", "x"]) == 1
    assert capsys.readouterr().err == "ei-supersink: internal error: RuntimeError: a bug over two lines\n"
    monkeypatch.setitem(cli.COMMANDS, "status", interrupted)
    assert cli.main(["status", "--state", "x"]) == 130
    assert capsys.readouterr().err == "ei-supersink: interrupted\n"
    assert {1, 130} <= set(table)

    blocked = (  # as if stomp.py were not installed
        "import sys; sys.modules['stomp'] = None; from supersink.cli import main; "
        "sys.exit(main(['expect', '--broker', 'stomp://127.0.0.1:1/queue/q', '--task', 't', '--jobs', '1']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 2
    err = one_line(proc)
    assert "pip install 'eventindex-collect[stomp]'" in err


def test_store_and_broker_failures_have_their_codes(pipe: Pipeline) -> None:
    proc = sink(
        "reconcile", "--store", "s3://ei-nobucket/p?endpoint=http://127.0.0.1:9", "--state", str(pipe.root / "l.db")
    )
    assert proc.returncode == 4 and one_line(proc).startswith("ei-supersink: store error:")
    (pipe.root / "dir.db").mkdir()
    proc = sink("expect", "--broker", f"sqlite://{pipe.root / 'dir.db'}", "--task", "t", "--jobs", "1")
    assert proc.returncode == 5 and one_line(proc).startswith("ei-supersink: broker error:")


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_store_objects_and_warehouse_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        store = LocalStore(tmp_path / "store")
        store.put("t/j/1/chunk-000000.eic", b"data")
        assert stat.S_IMODE((tmp_path / "store" / "t/j/1/chunk-000000.eic").stat().st_mode) == mode
        assert stat.S_IMODE((tmp_path / "store" / "t/j").stat().st_mode) == 0o777 & ~umask
        pipe = Pipeline(tmp_path / "pipe")
        pipe.expect(1)
        pipe.produce("j1", 1)
        pipe.run_supersink()
        files = [p for p in (pipe.root / "wh").rglob("*") if p.is_file()]
        names = {p.name for p in files}
        assert {"_SUCCESS.json", "_CLAIM.json", "part-00000.parquet"} <= names
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == dict.fromkeys(names, mode)
    finally:
        os.umask(old)
