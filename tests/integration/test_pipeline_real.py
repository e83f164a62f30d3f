"""The demo's flow on real servers: SeaweedFS S3 for the chunks, ActiveMQ STOMP for the pointers.

Every pointer is delivered twice, one job's first attempt is killed half-way, and the loaded
Parquet must hold exactly the produced events: the (run, event) sets and every column compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from eventindex.columns import EVENT_SCHEMA
from eventindex.store import open_store
from eventindex.transport import open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec
from tests.faultstore import Fault, FaultyPublisher
from testservers import ActiveMQ, SeaweedFS

ROOT = Path(__file__).resolve().parents[2]
JOBS = 8
EVENTS = 25_000
CHUNK_EVENTS = 5_000
CRASHED_JOB = 4
SORT = [("run_number", "ascending"), ("event_number", "ascending")]


def cli(module: str, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_demo_flow_on_seaweedfs_and_activemq(
    tmp_path: Path, seaweedfs: SeaweedFS, activemq: ActiveMQ, s3_env: str, stomp_queue: str
) -> None:
    store_url = f"s3://{s3_env}/eventindex?endpoint={seaweedfs.endpoint}"
    env = dict(seaweedfs.client_env())
    task, dataset = "task.real.0001", "data24.real"

    # The job that dies half-way runs as a real process, killed after 2 of its 5 chunks.
    died = cli(
        "producer.cli", "--task", task, "--job", f"job{CRASHED_JOB}", "--attempt", "1", "--dataset", dataset,
        "--input", f"synthetic:{EVENTS}:{CRASHED_JOB}", "--store", store_url, "--broker", stomp_queue,
        "--chunk-events", str(CHUNK_EVENTS), "--fail-after-chunks", "2", env=env,
    )  # fmt: skip
    assert died.returncode == 137, died.stderr

    store = open_store(store_url)
    with FaultyPublisher(open_publisher(stomp_queue), Fault("send", "duplicate")) as publisher:
        for job in range(1, JOBS + 1):
            attempt = 2 if job == CRASHED_JOB else 1
            spec = JobSpec(task=task, job=f"job{job}", attempt=attempt, dataset=dataset, chunk_events=CHUNK_EVENTS)
            result = JobRunner(spec, store, publisher).run([SyntheticInput(EVENTS, job)])
            assert result.events == EVENTS
    expect = cli("supersink.cli", "expect", "--broker", stomp_queue, "--task", task, "--jobs", str(JOBS), env=env)
    assert expect.returncode == 0, expect.stderr

    state = tmp_path / "ledger.db"
    run = cli(
        "supersink.cli", "run", "--broker", stomp_queue, "--store", store_url,
        "--warehouse", (tmp_path / "wh").as_uri(), "--state", str(state), "--until-idle", "3", env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    counters = json.loads(run.stdout.strip().splitlines()[-1])
    # 2 chunks of the dead attempt, then 8 jobs x (5 chunks + 1 manifest) twice, and the expectation.
    assert counters["messages"] == 2 + 2 * JOBS * 6 + 1
    assert counters["quarantined"] == 0 and counters["tasks_loaded"] == 1

    status = json.loads(cli("supersink.cli", "status", "--state", str(state), "--json", env=env).stdout)
    (t,) = status["tasks"]
    assert (t["state"], t["jobs_resolved"], t["events"], t["events_loaded"]) == ("loaded", JOBS, 200_000, 200_000)
    assert t["superseded"] == [{"job": f"job{CRASHED_JOB}", "attempt": 1, "complete": False}]

    marker = json.loads(Path(t["location"], "_SUCCESS.json").read_text())
    files = [str(Path(t["location"], f["name"])) for f in marker["files"]]
    loaded = pads.dataset(files, format="parquet").to_table()
    expected = pa.concat_tables(
        [b for job in range(1, JOBS + 1) for b in SyntheticInput(EVENTS, job).batches(EVENTS)]
    ).sort_by(SORT)
    loaded_keys = set(zip(loaded["run_number"].to_pylist(), loaded["event_number"].to_pylist(), strict=True))
    expected_keys = set(zip(expected["run_number"].to_pylist(), expected["event_number"].to_pylist(), strict=True))
    assert loaded_keys == expected_keys
    assert loaded.num_rows == len(expected_keys) == 200_000
    assert loaded.select(EVENT_SCHEMA.names).equals(expected)
    assert marker["duplicates"]["count"] == 0
