"""The pipeline (producer -> store -> broker -> supersink -> Parquet) over RabbitMQ, with SeaweedFS S3
for the chunks and the warehouse: once over RabbitMQ-STOMP and once over RabbitMQ-AMQP.

(ActiveMQ-STOMP runs the same flow in test_pipeline_real.py and test_faults.py.)
Each task has a job whose first attempt dies half-way; every event must be loaded exactly once and
every column must equal what was produced, also when every pointer is delivered twice. The
broker-only mode (events inside the messages, one broker transaction per input file) runs over both too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from eventindex.transport import open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobSpec
from producer.mq import MqJobRunner
from tests.integration.faultkit import (
    DATASET,
    Backend,
    ProducedTask,
    assert_exactly_once,
    backend_env,
    check_warehouse,
    produce_task,
    run_sink,
    send_expectation,
    synthetic,
    tail,
)
from testservers import RabbitMQ, SeaweedFS

pytestmark = pytest.mark.integration


def rabbit_backend(protocol: str, rabbitmq: RabbitMQ, seaweedfs: SeaweedFS, bucket: str) -> Backend:
    queue = f"ei.pipeline.{uuid.uuid4().hex[:12]}"
    broker = rabbitmq.amqp_url(queue) if protocol == "amqp" else rabbitmq.stomp_url(queue)
    endpoint = f"endpoint={seaweedfs.endpoint}"
    return Backend(
        f"rabbitmq-{protocol}", f"s3://{bucket}/chunks?{endpoint}", broker, f"s3://{bucket}/warehouse?{endpoint}",
        {**seaweedfs.client_env(), **rabbitmq.client_env()},
    )  # fmt: skip


@pytest.mark.timeout(600)
@pytest.mark.parametrize("twice", [False, True], ids=["once", "twice"])
@pytest.mark.parametrize("protocol", ["stomp", "amqp"])
def test_pipeline_over_rabbitmq(
    protocol: str, twice: bool, tmp_path: Path, rabbitmq: RabbitMQ, seaweedfs: SeaweedFS, s3_env: str,
    fault_report: Callable[[str], None],
) -> None:  # fmt: skip
    backend = rabbit_backend(protocol, rabbitmq, seaweedfs, s3_env)
    produced = produce_task(backend, twice=twice)

    run = run_sink(backend, tmp_path / "ledger.db", 3.0)
    assert run.returncode == 0, tail(run.stderr)
    counters = json.loads(run.stdout.strip().splitlines()[-1])
    # 4 jobs x (6 chunks + 1 manifest) + the 3 chunks of the attempt that died + the expectation
    assert counters["messages"] == (4 * 7 + 3 + 1) * (2 if twice else 1), counters
    assert counters["tasks_loaded"] == 1 and counters["quarantined"] == 0, counters

    outcome = check_warehouse(backend, produced)
    fault_report(outcome.line(f"{backend.name}, pointers {'twice' if twice else 'once'}"))
    assert_exactly_once(outcome)
    assert outcome.loaded == 24_000


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protocol", ["stomp", "amqp"])
def test_broker_only_mode_over_rabbitmq(
    protocol: str, tmp_path: Path, rabbitmq: RabbitMQ, seaweedfs: SeaweedFS, s3_env: str,
    fault_report: Callable[[str], None],
) -> None:  # fmt: skip
    """`--mode mq`: the events themselves travel through the broker, one transaction per input file."""
    backend = rabbit_backend(protocol, rabbitmq, seaweedfs, s3_env)
    task, seeds, events = f"task.mq.{uuid.uuid4().hex[:8]}", (1, 2, 3), 1_000
    with backend_env(backend), open_publisher(backend.broker) as publisher:
        for seed in seeds:
            spec = JobSpec(task=task, job=f"job{seed}", attempt=1, dataset=DATASET, chunk_events=1_000)
            MqJobRunner(spec, publisher).run([SyntheticInput(events, seed)])
        send_expectation(publisher, task, len(seeds), len(seeds) * events)

    run = run_sink(backend, tmp_path / "ledger.db", 3.0)
    assert run.returncode == 0, tail(run.stderr)
    outcome = check_warehouse(backend, ProducedTask(task, synthetic(*seeds, events=events)))
    fault_report(outcome.line(f"{backend.name}, broker-only mode"))
    assert_exactly_once(outcome)
