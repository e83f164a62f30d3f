"""`ei-producer`: index one job attempt's inputs into the object store and announce them.

    ei-producer --task T --job J --attempt N --dataset D --input SPEC [--input SPEC ...]
                --store URL --broker URL [--broker URL ...] [options]
    ei-producer --mode mq ... --broker URL [...]     (the broker-only transport: no --store)
    ei-producer flush-spool --broker URL [--broker URL ...] [--spool FILE]

Exit codes (stable, documented in docs/producer.md and the README):
  0  everything stored and announced (flush-spool: every spooled pointer sent, or none to send)
  1  unexpected internal error (a bug: please report it)
  2  bad command line, URL or name (a --branch-map that cannot be read too)
  3  an input is unreadable, truncated or inconsistent (a directory, an event number >= 2^63,
     (run, event) pairs repeated in a file or across the job's files)
  4  the object store failed or refused a write
  5  the broker failed (flush-spool: the pointers not sent stay in the spool)
  6  everything stored, but no broker was reachable: pointers were spooled for `flush-spool`
  130 interrupted (SIGINT)
  137 (only with --fail-after-chunks) the simulated crash
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from eventindex import __version__
from eventindex.errors import ConfigError, EventIndexError, InputError, StoreError, TransportError
from eventindex.store.base import (
    DEFAULT_CONNECTIONS,
    MIB,
    MIN_PART_BYTES,
    ObjectStore,
    StoreOptions,
    check_store_url,
    open_store,
)
from eventindex.transport.base import Publisher
from eventindex.transport.counting import CountingPublisher
from eventindex.transport.failover import FailoverPublisher
from producer.inputs import InputSource, open_input
from producer.inputs.branch_map import BranchMap
from producer.job import DEFAULT_CHUNK_EVENTS, JobResult, JobRunner, JobSpec, Progress, check_inputs
from producer.metrics import write_metrics
from producer.spool import DEFAULT_SPOOL, PointerSpool, SpoolingPublisher
from producer.upload import DEFAULT_THREADS, UploadConfig
from producer.write_retry import DEFAULT_OUTAGE_SECONDS, WriteRetryPolicy

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_STORE = 4
EXIT_BROKER = 5
EXIT_SPOOLED = 6
EXIT_INTERRUPTED = 130

FLUSH_COMMAND = "flush-spool"
#: botocore's attempts per S3 request: enough for blips; `--store-outage` covers longer outages.
STORE_ATTEMPTS = 5
#: The progress line is redrawn at most this often (seconds).
PROGRESS_INTERVAL = 0.2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ei-producer",
        description=__doc__.splitlines()[0],
        epilog=f"`ei-producer {FLUSH_COMMAND} --help`: send the pointers a run spooled (exit 6).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--task", required=True, help="task name ([A-Za-z0-9._-])")
    parser.add_argument("--job", required=True, help="job name ([A-Za-z0-9._-])")
    parser.add_argument("--attempt", required=True, type=int, help="attempt number, 1 for the first try")
    parser.add_argument("--dataset", required=True, help="dataset name ([A-Za-z0-9._-])")
    parser.add_argument(
        "--input",
        required=True,
        action="append",
        dest="inputs",
        metavar="SPEC",
        help="an input file; repeat for several. synthetic:EVENTS[:SEED]",
    )
    parser.add_argument(
        "--store", help="file:///dir or s3://bucket/prefix?endpoint=URL[&ca=CA.pem] (required unless --mode mq)"
    )
    parser.add_argument(
        "--mode",
        choices=("objects", "mq"),
        default="objects",
        help="objects: chunks to the store, pointers to the broker (default); "
        "mq: the events themselves through the broker (the first ATLAS EventIndex transport)",
    )
    parser.add_argument(
        "--branch-map", type=Path, metavar="FILE", help="ROOT inputs: a JSON branch map (see docs/inputs.md)"
    )
    _broker_arguments(parser)
    parser.add_argument("--chunk-events", type=int, default=DEFAULT_CHUNK_EVENTS, help="events per chunk object")
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help=f"parallel chunk uploads (default {DEFAULT_THREADS})"
    )
    parser.add_argument(
        "--multipart-mb",
        type=int,
        default=StoreOptions().multipart_threshold // MIB,
        metavar="MIB",
        help="S3: objects above this many MiB are uploaded in parts of this size, at least 5 MiB "
        "(default %(default)s, min 1)",
    )
    parser.add_argument(
        "--store-attempts",
        type=int,
        default=STORE_ATTEMPTS,
        metavar="N",
        help="S3: attempts per request inside botocore (capped exponential backoff with jitter, about "
        "1.5 s for the default %(default)s); covers blips, --store-outage covers outages",
    )
    parser.add_argument(
        "--store-outage",
        type=float,
        default=DEFAULT_OUTAGE_SECONDS,
        metavar="SECONDS",
        help="how long the store may stay unreachable (connection refused or reset, timeouts, 5xx) "
        "before the job fails with exit 4; each failed write is retried with backoff until then "
        "(default %(default)g)",
    )
    parser.add_argument(
        "--no-spool",
        action="store_true",
        help="when no broker is reachable, fail (exit 5) instead of spooling the pointers (exit 6)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read, validate and encode the inputs and print the summary; store and send nothing",
    )
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="index files whose declared count differs or that hold duplicate (run, event) pairs, "
        "within a file or shared by two input files of the job",
    )
    parser.add_argument(
        "--fail-after-chunks",
        type=int,
        default=None,
        metavar="N",
        help="testing aid: die abruptly (exit 137, no manifest) after N chunks, as a killed job would",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--metrics-file",
        type=Path,
        metavar="FILE",
        help="write the job's final figures and exit code to FILE in the Prometheus text format "
        "(for a node exporter's textfile collector)",
    )
    return parser


def _broker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        required=True,
        action="append",
        dest="brokers",
        metavar="URL",
        help="sqlite:///queue.db, stomp[+ssl]://host:port[,host2:port2]/queue/NAME or amqp://...; "
        "repeat for failover, in order of preference",
    )
    parser.add_argument(
        "--spool",
        type=Path,
        default=Path(DEFAULT_SPOOL),
        metavar="FILE",
        help="where pointers wait when no broker is reachable (default ./%(default)s)",
    )


def build_flush_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"ei-producer {FLUSH_COMMAND}",
        description="Send the pointers spooled by runs that found no broker (exit 6), then empty the spool. "
        "Safe to re-run: a pointer sent twice is harmless.",
    )
    _broker_arguments(parser)
    return parser


def _progress_printer(enabled: bool, total: int | None = None) -> Callable[[Progress], None] | None:
    """The progress line; with the inputs' declared event count `total`, also the total and the percentage."""
    last = 0.0

    def show(progress: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_INTERVAL:
            return
        last = now
        mb_s = progress.bytes / 1e6 / max(progress.seconds, 1e-9)
        done = (
            f"{progress.events:,} of {total:,} events ({100 * progress.events / total:.1f}%)"
            if total
            else (f"{progress.events:,} events")
        )
        sys.stderr.write(f"\r  {done}  {progress.chunks} chunks  {mb_s:.1f} MB/s ")
        sys.stderr.flush()

    return show if enabled else None


def _fail(code: int, text: str) -> int:
    print(f"ei-producer: {text}", file=sys.stderr)
    return code


def _error_code(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, InputError):
        return EXIT_INPUT, f"input error: {exc}"
    if isinstance(exc, StoreError):
        return EXIT_STORE, f"store error: {exc}"
    if isinstance(exc, TransportError):
        return EXIT_BROKER, f"broker error: {exc}"
    return EXIT_INTERNAL, f"error: {exc}"


def expand(source: InputSource) -> list[InputSource]:
    """An SPB file may hold several input files: each gets its own summary in the manifest."""
    files = getattr(source, "files", None)
    return list(files()) if callable(files) else [source]


def _summary(result: JobResult, **extra: object) -> str:
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


def _setup_logging() -> None:
    """Warnings on stderr, one line each; stomp.py's own per-host connection chatter is left out
    (the failover and spool warnings say what happened)."""
    logging.basicConfig(level=logging.WARNING, format="ei-producer: %(message)s")
    logging.getLogger("stomp.py").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    _setup_logging()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == [FLUSH_COMMAND]:
        return flush_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    try:
        spec = JobSpec(
            task=args.task,
            job=args.job,
            attempt=args.attempt,
            dataset=args.dataset,
            chunk_events=args.chunk_events,
            allow_mismatch=args.allow_mismatch,
            fail_after_chunks=args.fail_after_chunks,
        )
        upload = UploadConfig(threads=args.threads)
        retry_policy = WriteRetryPolicy(args.store_outage)
        options = StoreOptions(
            multipart_threshold=args.multipart_mb * MIB,
            part_size=max(args.multipart_mb * MIB, MIN_PART_BYTES),
            connections=max(DEFAULT_CONNECTIONS, args.threads + 2),
            max_attempts=args.store_attempts,
        )
        if args.mode == "objects" and not args.store:
            raise ConfigError("--store is required (unless --mode mq)")
        if args.mode == "mq" and args.store:
            raise ConfigError("--mode mq sends the events through the broker: no --store")
        if args.branch_map is not None:
            BranchMap.from_file(args.branch_map)  # a bad map is refused whatever the inputs are
        inputs = [
            source
            for spec_text in args.inputs
            for source in expand(open_input(spec_text, args.branch_map, check_counts=not args.allow_mismatch))
        ]
        if args.dry_run:
            if args.store:
                check_store_url(args.store)
            FailoverPublisher(args.brokers).close()  # validates every URL; connects to none
    except EventIndexError as exc:
        return _fail(*_error_code(exc))
    declared = [source.declared_events for source in inputs]
    total = None if None in declared else sum(d for d in declared if d is not None)
    show = _progress_printer(sys.stderr.isatty() and not args.quiet, total)
    if args.dry_run:
        try:
            result = check_inputs(spec, inputs, show)
        except EventIndexError as exc:
            return _fail(*_error_code(exc))
        except KeyboardInterrupt:
            return _fail(EXIT_INTERRUPTED, "interrupted")
        if show is not None:
            sys.stderr.write("\n")
        print(_summary(result, dry_run=True))
        return EXIT_OK
    figures: dict[str, float] = {}
    code = _run(spec, inputs, args, upload, options, retry_policy, show, figures)
    if args.metrics_file is not None:
        try:
            write_metrics(args.metrics_file, code, figures)
        except OSError as exc:
            return _fail(code or EXIT_USAGE, f"--metrics-file {args.metrics_file}: {exc.strerror or exc}")
    return code


def _run(
    spec: JobSpec,
    inputs: list[InputSource],
    args: argparse.Namespace,
    upload: UploadConfig,
    options: StoreOptions,
    retry_policy: WriteRetryPolicy,
    show: Callable[[Progress], None] | None,
    figures: dict[str, float],
) -> int:
    """Run the job; `figures` gets its final figures (for --metrics-file)."""
    store: ObjectStore | None = None
    spooling: SpoolingPublisher | None = None
    retries = 0
    try:
        brokers = FailoverPublisher(args.brokers)
        if not args.no_spool:
            spooling = SpoolingPublisher(brokers, PointerSpool(args.spool))
        counted = CountingPublisher(spooling or brokers)
        publisher: Publisher = counted
        if args.mode == "mq":
            from producer.mq import MqJobRunner

            with publisher:
                result = MqJobRunner(spec, publisher, on_progress=show).run(inputs)
        else:
            store = open_store(args.store, options)
            with publisher:
                runner = JobRunner(spec, store, publisher, on_progress=show, upload=upload, retry_policy=retry_policy)
                result = runner.run(inputs)
                retries = runner.retry.retries
    except EventIndexError as exc:
        return _fail(*_error_code(exc))
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, "interrupted")
    finally:
        if store is not None:
            store.close()
    if show is not None:
        sys.stderr.write("\n")
    spooled = spooling.spooled if spooling is not None else 0
    figures.update(
        events=result.events, chunks=result.chunks, bytes=result.bytes, seconds=result.seconds,
        broker_messages=counted.messages, broker_bytes=counted.bytes, store_retries=retries, spooled=spooled,
    )  # fmt: skip
    print(
        _summary(
            result,
            spooled=spooled,
            broker_messages=counted.messages,
            broker_bytes=counted.bytes,
            store_retries=retries,
        )
    )
    if spooling is not None and spooled:
        return _fail(
            EXIT_SPOOLED,
            (
                f"read every event, but {spooled} message(s) were spooled to {args.spool} "
                if args.mode == "mq"
                else f"stored everything, but {spooled} pointer(s) were spooled to {args.spool} "
            )
            + f"(run `ei-producer {FLUSH_COMMAND}`): {spooling.reason}",
        )
    return EXIT_OK


def flush_main(argv: Sequence[str]) -> int:
    args = build_flush_parser().parse_args(argv)
    spool = PointerSpool(args.spool)
    try:
        with FailoverPublisher(args.brokers) as publisher:
            result = spool.flush(publisher)
    except EventIndexError as exc:
        return _fail(*_error_code(exc))
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, "interrupted (the pointers not sent stay in the spool)")
    print(json.dumps({"spool": str(args.spool), "sent": result.sent, "skipped": result.skipped}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
