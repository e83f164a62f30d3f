"""One `ei-producer` run: its settings, its inputs, the job against the store and the brokers, and its outcome.

`producer.cli` parses the command line into a `RunConfig` and prints what `run_job` (or `check_inputs`
for `--dry-run`) returns; everything between the two is here: the checks that need more than one option,
opening the inputs, and wiring the brokers (failover, the pointer spool, counting) and the store
around the job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from eventindex.errors import ConfigError
from eventindex.store.base import ObjectStore, StoreOptions, check_store_url, open_store
from eventindex.store.local import LocalStore
from eventindex.transport.base import Publisher
from eventindex.transport.counting import CountingPublisher
from eventindex.transport.failover import FailoverPublisher
from producer.inputs import InputSource, open_input
from producer.inputs.branch_map import BranchMap
from producer.job import JobResult, JobRunner, JobSpec, Progress
from producer.spool import DEFAULT_SPOOL, PointerSpool, SpoolingPublisher
from producer.upload import UploadConfig
from producer.write_retry import WriteRetryPolicy

#: objects: chunks to the store, pointers to the broker; mq: the events themselves through the broker.
Mode = Literal["objects", "mq"]


@dataclass(frozen=True)
class RunConfig:
    """The settings of one run, each checked where it is built; `__post_init__` checks how they combine."""

    spec: JobSpec
    #: the `--input` values, in order
    inputs: tuple[str, ...]
    brokers: tuple[str, ...]
    store: str | None = None
    mode: Mode = "objects"
    branch_map: Path | None = None
    #: the pointer spool file; None (`--no-spool`): no broker reachable is an error
    spool: Path | None = Path(DEFAULT_SPOOL)
    upload: UploadConfig = field(default_factory=UploadConfig)
    store_options: StoreOptions = field(default_factory=StoreOptions)
    retry_policy: WriteRetryPolicy = field(default_factory=WriteRetryPolicy)

    def __post_init__(self) -> None:
        if self.mode == "objects" and not self.store:
            raise ConfigError("--store is required (unless --mode mq)")
        if self.mode == "mq" and self.store:
            raise ConfigError("--mode mq sends the events through the broker: no --store")


def expand(source: InputSource) -> list[InputSource]:
    """An SPB file may hold several input files: each gets its own summary in the manifest."""
    files = getattr(source, "files", None)
    return list(files()) if callable(files) else [source]


def open_inputs(config: RunConfig) -> list[InputSource]:
    """Every input file of the job, opened (an SPB file expanded into the files it holds)."""
    if config.branch_map is not None:
        BranchMap.from_file(config.branch_map)  # a bad map is refused whatever the inputs are
    check_counts = not config.spec.allow_mismatch
    return [
        source
        for text in config.inputs
        for source in expand(open_input(text, config.branch_map, check_counts=check_counts))
    ]


def declared_events(inputs: list[InputSource]) -> int | None:
    """The events the inputs declare in all, or None when one of them declares none."""
    declared = [source.declared_events for source in inputs]
    return None if None in declared else sum(d for d in declared if d is not None)


def check_destinations(config: RunConfig) -> None:
    """Before the job (a dry run's too): the store URL and every broker URL are valid, and the directories a
    `file://` store and an embedded `sqlite://` queue are in exist; nothing is connected to, nothing created.
    A job must not store what it could not announce, nor fill an empty directory under an unmounted mount
    point that no supersink reads."""
    if config.store:
        check_store_url(config.store)
    FailoverPublisher(config.brokers).close()
    if config.store and urlsplit(config.store).scheme == "file":
        LocalStore.from_url(config.store, create=False)  # ConfigError: store directory ... does not exist


@dataclass(frozen=True)
class RunOutcome:
    """A job that ran to its end: its result and what the broker side saw."""

    result: JobResult
    broker_messages: int
    broker_bytes: int
    #: whole-write retries through store outages
    store_retries: int
    #: messages kept in the pointer spool because no broker was reachable
    spooled: int
    #: why the brokers were given up on, when something was spooled
    spool_reason: str | None

    def figures(self) -> dict[str, float]:
        """The job's final figures (`--metrics-file`)."""
        result = self.result
        return {
            "events": result.events, "chunks": result.chunks, "bytes": result.bytes, "seconds": result.seconds,
            "broker_messages": self.broker_messages, "broker_bytes": self.broker_bytes,
            "store_retries": self.store_retries, "spooled": self.spooled,
        }  # fmt: skip

    def summary_line(self) -> str:
        """The JSON line the run prints: the job's result and the broker side's figures."""
        return summary_line(
            self.result,
            spooled=self.spooled,
            broker_messages=self.broker_messages,
            broker_bytes=self.broker_bytes,
            store_retries=self.store_retries,
        )


def run_job(config: RunConfig, inputs: list[InputSource], on_progress: Callable[[Progress], None] | None) -> RunOutcome:
    """Run the job: chunks to the store and pointers to the brokers (or, `--mode mq`, the events
    through the brokers), spooling the messages when no broker is reachable unless `spool` is None."""
    store: ObjectStore | None = None
    spooling: SpoolingPublisher | None = None
    retries = 0
    try:
        sent = CountingPublisher(FailoverPublisher(config.brokers))  # what a broker took, not what was spooled
        if config.spool is not None:
            spooling = SpoolingPublisher(sent, PointerSpool(config.spool))
        publisher: Publisher = spooling or sent
        if config.mode == "mq":
            from producer.mq import MqJobRunner

            with publisher:
                result = MqJobRunner(config.spec, publisher, on_progress=on_progress).run(inputs)
        else:
            assert config.store is not None  # RunConfig requires it
            # a file:// store directory is never created here (check_destinations); an S3 bucket is checked
            # before the first write
            store = open_store(config.store, config.store_options, create=urlsplit(config.store).scheme != "file")
            with publisher:
                runner = JobRunner(
                    config.spec,
                    store,
                    publisher,
                    on_progress=on_progress,
                    upload=config.upload,
                    retry_policy=config.retry_policy,
                )
                result = runner.run(inputs)
                retries = runner.retry.retries
    finally:
        if store is not None:
            store.close()
    return RunOutcome(
        result=result,
        broker_messages=sent.messages,
        broker_bytes=sent.bytes,
        store_retries=retries,
        spooled=spooling.spooled if spooling is not None else 0,
        spool_reason=spooling.reason if spooling is not None else None,
    )


def summary_line(result: JobResult, **extra: object) -> str:
    """The one JSON line a run prints on stdout: the job's result, then `extra`."""
    return json.dumps(
        {
            "task": result.task,
            "job": result.job,
            "attempt": result.attempt,
            "events": result.events,
            "chunks": result.chunks,
            "bytes": result.bytes,
            "seconds": round(result.seconds, 3),
            "manifest": result.manifest_url or None,
            "problems": list(result.problems),
            **extra,
        }
    )
