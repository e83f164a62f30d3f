"""`ei-producer` as a grid job wrapper runs it: its output into a pipe the reader closed (`| head`, `| true`),
a metrics file in a directory that does not exist, the batch system's SIGTERM, an open-file limit, a file name
that is not UTF-8. The job's exit code says what happened to the job, in one line."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.unit.test_spool import closed_port


def producer(tmp_path: Path, *extra: str, closed: str = "stdout") -> subprocess.CompletedProcess[str]:
    """The producer with its stdout or stderr a pipe whose reader is gone; the other stream captured."""
    read, write = os.pipe()
    os.close(read)  # the reader went away before the producer wrote anything
    command = [
        sys.executable, "-m", "producer.cli", "--task", "t1", "--job", "j1", "--attempt", "1", "--dataset", "ds",
        "--store", (tmp_path / "store").as_uri(), "--quiet", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        if closed == "stdout":
            return subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
                                  timeout=120)  # fmt: skip
        return subprocess.run(command, stdout=subprocess.PIPE, stderr=write, text=True, cwd=tmp_path, env=env,
                              timeout=120)  # fmt: skip
    finally:
        os.close(write)


def metric(path: Path, name: str) -> float:
    for line in path.read_text().splitlines():
        if line.startswith(f"ei_producer_last_job_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in {path}")


def test_a_closed_stdout_does_not_change_the_exit_code(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    metrics = tmp_path / "job.prom"
    queue = f"sqlite://{tmp_path / 'q.db'}"
    done = producer(tmp_path, "--input", "synthetic:2000:1", "--broker", queue, "--metrics-file", str(metrics))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert metric(metrics, "exit_code") == 0 and metric(metrics, "events") == 2000
    dry = producer(tmp_path, "--input", "synthetic:10", "--broker", queue, "--dry-run")
    assert (dry.returncode, dry.stderr) == (0, "")


def test_a_spooled_job_with_a_closed_stdout_still_says_6_and_how_to_flush(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    metrics = tmp_path / "job.prom"
    dead = f"stomp://127.0.0.1:{closed_port()}/queue/q"
    done = producer(tmp_path, "--input", "synthetic:2000:1", "--broker", dead, "--metrics-file", str(metrics))
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr and "flush-spool" in done.stderr.splitlines()[-1]
    assert metric(metrics, "exit_code") == 6 and metric(metrics, "spooled") == 1  # a job of one chunk: one pointer
    assert metric(metrics, "broker_messages") == 0, "a spooled pointer was not sent"
    assert (tmp_path / "ei-producer.spool").stat().st_size > 0


def test_an_input_error_with_a_closed_stderr_is_still_exit_3(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    done = producer(tmp_path, "--input", str(bad), "--broker", f"sqlite://{tmp_path / 'q.db'}", closed="stderr")
    assert done.returncode == 3 and done.stdout == ""


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("no-such-dir/job.prom", "does not exist"),
        ("job.txt", "must end in .prom (node exporter's textfile collector reads no other file)"),  # silently unread
    ],
)
def test_a_metrics_file_node_exporter_would_never_read_is_refused_before_the_job(
    tmp_path: Path, name: str, words: str
) -> None:
    (tmp_path / "store").mkdir()
    done = subprocess.run(
        command(tmp_path, "--input", "synthetic:100", "--metrics-file", str(tmp_path / name)),
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "--metrics-file" in done.stderr and words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "store").iterdir()) == [], "nothing stored: refused before the job"


def test_a_metrics_file_that_cannot_be_written_after_the_job_leaves_the_jobs_exit_code(tmp_path: Path) -> None:
    """It made a job that had stored and announced everything exit 2, and a workflow would run it again."""
    (tmp_path / "store").mkdir()
    (tmp_path / "job.prom").mkdir()  # what the file is renamed over cannot be replaced
    done = subprocess.run(
        command(tmp_path, "--input", "synthetic:100", "--metrics-file", str(tmp_path / "job.prom")),
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"ei-producer: warning: --metrics-file {tmp_path / 'job.prom'}: ") and "not written" in line
    assert json.loads(done.stdout)["events"] == 100
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file left"


def command(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "producer.cli", "--task", "t1", "--job", "j1", "--attempt", "1", "--dataset", "ds",
        "--store", (tmp_path / "store").as_uri(), "--broker", f"sqlite://{tmp_path / 'q.db'}", "--quiet", *extra,
    ]  # fmt: skip


def test_sigterm_at_the_wall_time_limit_aborts_the_job_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        command(tmp_path, "--input", "synthetic:3000000:1", "--chunk-events", "20000", "--threads", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "store").rglob("chunk-*.eic")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no chunk stored"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["ei-producer: terminated by SIGTERM"], stderr
    assert not list((tmp_path / "store").rglob("manifest.eim")), "an aborted job has no manifest"
    assert not list((tmp_path / "store").rglob(".tmp-*")), "no temporary file left in the store"


def test_more_root_inputs_than_the_open_file_limit_allow_say_so_and_the_soft_limit_is_raised(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    source = ROOT / "tests" / "data" / "root" / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
    inputs = []
    for number in range(20):  # each open ROOT file holds a descriptor: 20 of them do not fit in 16
        link = tmp_path / f"f{number:02d}.root"
        link.symlink_to(source)
        inputs += ["--input", str(link)]
    args = command(tmp_path, "--branch-map", str(source.parent / "nanoaod.map.json"), "--allow-mismatch", "--dry-run",
                   *inputs)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def limited(soft: int, hard: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        )  # fmt: skip

    short = limited(16, 16)
    assert short.returncode == 2, short.stderr
    line = short.stderr.strip()
    assert "\n" not in line and "Too many open files" in line and "ulimit -n 16" in line, line
    assert "not a readable ROOT file" not in line, "not the input's fault"
    raised = subprocess.run(
        [sys.executable, "-c", "import resource; from producer.cli import _raise_open_file_limit as r; "
         "n = resource.RLIMIT_NOFILE; resource.setrlimit(n, (16, 4096)); r(); print(resource.getrlimit(n))"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert raised.stdout.strip() == "(4096, 4096)", raised.stderr


def test_a_file_name_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    name = os.fsdecode(b"caf\xe9.jsonl")
    (tmp_path / name).write_text('{"run_number": 1, "event_number": 1}\n')
    done = subprocess.run(
        command(tmp_path, "--input", str(tmp_path / name)), capture_output=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and b"not UTF-8" in lines[0], done.stderr
    assert list((tmp_path / "store").iterdir()) == []


def test_a_store_or_queue_directory_that_does_not_exist_is_refused_before_the_job(tmp_path: Path) -> None:
    """A missing store directory was made (under an unmounted mount point, an empty directory no supersink
    reads), and a missing queue directory was found only after every chunk and the manifest were stored;
    `--dry-run` passed both."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "producer.cli", "--task", "t1", "--job", "j1", "--attempt", "1", "--dataset", "ds",
            "--input", "synthetic:100", "--quiet"]  # fmt: skip
    (tmp_path / "store").mkdir()
    cases = [
        (["--store", (tmp_path / "mnt" / "store").as_uri(), "--broker", f"sqlite://{tmp_path / 'q.db'}"],
         f"store directory {tmp_path / 'mnt' / 'store'} does not exist"),
        (["--store", (tmp_path / "gone").as_uri(), "--broker", f"sqlite://{tmp_path / 'q.db'}"],
         f"store directory {tmp_path / 'gone'} does not exist"),
        (["--store", (tmp_path / "store").as_uri(), "--broker", f"sqlite://{tmp_path / 'no-dir' / 'q.db'}"],
         f"directory {tmp_path / 'no-dir'} does not exist"),
    ]  # fmt: skip
    for args, words in cases:
        for dry in ([], ["--dry-run"]):
            done = subprocess.run([*base, *args, *dry], capture_output=True, text=True, cwd=tmp_path, env=env,
                                  timeout=120)  # fmt: skip
            assert done.returncode == 2 and words in done.stderr, (args, dry, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mnt").exists() and not (tmp_path / "gone").exists() and not (tmp_path / "no-dir").exists()
    assert list((tmp_path / "store").iterdir()) == [], "nothing stored"
