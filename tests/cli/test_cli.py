"""The two CLIs as users run them: exit codes, one-line errors, the surfaces the issues name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import store_dir

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def producer(tmp_path: Path, *extra: str, job: str = "j1", attempt: str = "1") -> subprocess.CompletedProcess[str]:
    return run(
        "producer.cli",
        "--task",
        "t1",
        "--job",
        job,
        "--attempt",
        attempt,
        "--dataset",
        "ds",
        "--store",
        store_dir(tmp_path / "store"),
        "--broker",
        f"sqlite://{tmp_path / 'q.db'}",
        *extra,
    )


def sink(tmp_path: Path, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    common = {
        "run": [
            "--broker",
            f"sqlite://{tmp_path / 'q.db'}",
            "--store",
            store_dir(tmp_path / "store"),
            "--warehouse",
            (tmp_path / "wh").as_uri(),
            "--state",
            str(tmp_path / "state.db"),
        ],
        "status": ["--state", str(tmp_path / "state.db")],
        "expect": ["--broker", f"sqlite://{tmp_path / 'q.db'}"],
    }[command]
    return run("supersink.cli", command, *common, *extra)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_full_flow_through_the_clis(tmp_path: Path) -> None:
    ok = producer(tmp_path, "--input", "synthetic:2500:1", "--chunk-events", "1000")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert (result["events"], result["chunks"]) == (2500, 3)
    died = producer(
        tmp_path, "--input", "synthetic:2500:2", "--chunk-events", "1000", "--fail-after-chunks", "1", job="j2"
    )
    assert died.returncode == 137
    retry = producer(tmp_path, "--input", "synthetic:2500:2", "--chunk-events", "1000", job="j2", attempt="2")
    assert retry.returncode == 0, retry.stderr
    assert sink(tmp_path, "expect", "--task", "t1", "--jobs", "2", "--events", "5000").returncode == 0
    ran = sink(tmp_path, "run", "--until-idle", "0.5")
    assert ran.returncode == 0, ran.stderr
    counters = json.loads(ran.stdout.strip().splitlines()[-1])
    assert counters["events_loaded"] == 5000
    # the work's CPU (first message to last commit) is part of the process's, which includes start-up
    assert 0 < counters["busy_cpu_seconds"] < counters["cpu_seconds"]
    [(events, cpu)] = counters["commits"]
    assert events == 5000 and 0 < cpu <= counters["cpu_seconds"]
    # the six chunks loaded were all verified at intake moments before: none fetched twice
    assert (counters["chunk_cache_hits"], counters["chunk_cache_misses"]) == (6, 0)
    st = sink(tmp_path, "status", "--json")
    task = json.loads(st.stdout)["tasks"][0]
    assert (task["state"], task["jobs_resolved"], task["events_loaded"]) == ("loaded", 2, 5000)
    assert task["superseded"] == [{"job": "j2", "attempt": 1, "complete": False}]
    text = sink(tmp_path, "status").stdout
    assert "LOADED" in text and "superseded: job j2 attempt 1 (incomplete)" in text


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--input", "synthetic:10", "--chunk-events", "0"], 2, "--chunk-events"),
        (["--input", "synthetic:xyz"], 3, "synthetic:EVENTS"),
        (["--input", "bogus:1"], 3, "unknown input kind"),
    ],
)
def test_producer_errors_are_one_line_with_stable_codes(tmp_path: Path, args: list[str], code: int, words: str) -> None:
    proc = producer(tmp_path, *args)
    assert proc.returncode == code
    assert words in one_line_error(proc)


def test_producer_refuses_unsafe_names_and_credentials_in_urls(tmp_path: Path) -> None:
    proc = run(
        "producer.cli",
        "--task",
        "../up",
        "--job",
        "j",
        "--attempt",
        "1",
        "--dataset",
        "d",
        "--input",
        "synthetic:1",
        "--store",
        store_dir(tmp_path / "s"),
        "--broker",
        f"sqlite://{tmp_path}/q",
    )
    assert proc.returncode == 2 and "'../up'" in one_line_error(proc)
    proc = producer(tmp_path, "--input", "synthetic:1")
    proc = run(
        "producer.cli",
        "--task",
        "t",
        "--job",
        "j",
        "--attempt",
        "1",
        "--dataset",
        "d",
        "--input",
        "synthetic:1",
        "--store",
        "s3://AKIA:secretpw@bucket/p",
        "--broker",
        f"sqlite://{tmp_path}/q",
    )
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "credentials" in line and "secretpw" not in line


def test_rerunning_an_attempt_with_other_data_is_a_store_conflict(tmp_path: Path) -> None:
    assert producer(tmp_path, "--input", "synthetic:100:1").returncode == 0
    same = producer(tmp_path, "--input", "synthetic:100:1")
    assert same.returncode == 0, "an identical rerun is idempotent"
    other = producer(tmp_path, "--input", "synthetic:100:2")
    assert other.returncode == 4
    assert "use a new --attempt" in one_line_error(other)


def test_status_without_ledger_is_a_clear_error(tmp_path: Path) -> None:
    proc = sink(tmp_path, "status")
    assert proc.returncode == 6 and "no ledger" in one_line_error(proc)
