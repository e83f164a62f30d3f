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
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from eventindex import __version__
from eventindex.errors import ConfigError
from eventindex.exit_codes import EXIT_OK, EXIT_SPOOLED, OneLineParser, emit, exit_status, raising_on
from eventindex.redact import redact
from eventindex.store.base import DEFAULT_CONNECTIONS, MIB, MIN_PART_BYTES, StoreOptions
from eventindex.store.local import existing_parent
from producer import startup
from producer.job import DEFAULT_CHUNK_EVENTS, JobSpec, check_inputs
from producer.metrics import write_metrics
from producer.progress import end_progress_line, progress_printer
from producer.run import RunConfig, check_destinations, declared_events, open_inputs, run_job, summary_line
from producer.spool import DEFAULT_SPOOL, flush_spool
from producer.upload import DEFAULT_THREADS, UploadConfig
from producer.write_retry import DEFAULT_OUTAGE_SECONDS, WriteRetryPolicy

FLUSH_COMMAND = "flush-spool"
#: botocore's attempts per S3 request: enough for blips; `--store-outage` covers longer outages.
STORE_ATTEMPTS = 5


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    parser.add_argument(
        "--chunk-events",
        type=int,
        default=DEFAULT_CHUNK_EVENTS,
        help=f"events per chunk object (default {DEFAULT_CHUNK_EVENTS})",
    )
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help=f"parallel chunk uploads (default {DEFAULT_THREADS})"
    )
    parser.add_argument(
        "--multipart-mb",
        type=int,
        default=StoreOptions().multipart_threshold // MIB,
        metavar="MIB",
        help="S3: objects above this many MiB (at least 1; default %(default)s) go up as a multipart upload, "
        "in parts of this size or 5 MiB, whichever is larger (S3's smallest part)",
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
    parser = OneLineParser(
        prog=f"ei-producer {FLUSH_COMMAND}",
        description="Send the pointers spooled by runs that found no broker (exit 6), then empty the spool. "
        "Safe to re-run: a pointer sent twice is harmless.",
    )
    _broker_arguments(parser)
    return parser


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's settings from its command line, each checked (ConfigError names the option)."""
    if args.metrics_file is not None:  # before the job, not after it succeeded
        if args.metrics_file.suffix != ".prom":
            raise ConfigError(
                f"--metrics-file {args.metrics_file}: the name must end in .prom (node exporter's textfile "
                "collector reads no other file)"
            )
        existing_parent(args.metrics_file, "--metrics-file")
    for spec in args.inputs:  # the name goes into the manifest, a UTF-8 string
        try:
            spec.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"--input {spec!r}: the file name is not UTF-8 (rename the file)") from None
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
    store_options = StoreOptions(
        multipart_threshold=args.multipart_mb * MIB,
        part_size=max(args.multipart_mb * MIB, MIN_PART_BYTES),
        connections=max(DEFAULT_CONNECTIONS, args.threads + 2),
        max_attempts=args.store_attempts,
    )
    return RunConfig(
        spec=spec,
        inputs=tuple(args.inputs),
        brokers=tuple(args.brokers),
        store=args.store,
        mode=args.mode,
        branch_map=args.branch_map,
        spool=None if args.no_spool else args.spool,
        upload=upload,
        store_options=store_options,
        retry_policy=retry_policy,
    )


def _error_line(text: str) -> str:
    """An error or warning line on stderr: no credential in it, whatever the message holds (eventindex.redact)."""
    return f"ei-producer: {redact(text)}"


def _fail(code: int, text: str) -> int:
    emit(_error_line(text), sys.stderr)
    return code


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _setup_logging() -> None:
    """Warnings on stderr, one line each, credentials masked; stomp.py's own per-host connection chatter is
    left out (the failover and spool warnings say what happened)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_RedactingFormatter("ei-producer: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("stomp.py").setLevel(logging.ERROR)


def _raise_open_file_limit() -> None:
    """A ROOT input stays open (memory-mapped) for the whole job: take the hard limit of open files, as a
    grid job with hundreds of inputs needs, rather than the soft one (often 1,024)."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


#: What a batch system sends to end a job (SIGTERM at the wall-time limit, then SIGKILL; SIGXCPU at the CPU limit;
#: SIGUSR1 as a warning in some), and a closed terminal: each aborts the job as Ctrl-C does, with one line.
TERMINATING = (signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU, signal.SIGUSR1, signal.SIGUSR2)


def main(argv: Sequence[str] | None = None) -> int:
    with raising_on(*TERMINATING):
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    _setup_logging()
    _raise_open_file_limit()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == [FLUSH_COMMAND]:
        return flush_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    try:
        config = run_config(args)
        inputs = open_inputs(config)
        check_destinations(config)  # before the job, not after its chunks are stored
    except (Exception, KeyboardInterrupt) as exc:  # every error, a bug too, ends in one line and its code
        return _fail(*exit_status(exc, keeps_state=False))
    finally:
        startup.resume()  # the readers' libraries are imported: the collector runs again (producer.startup)
    show = progress_printer(declared_events(inputs)) if sys.stderr.isatty() and not args.quiet else None
    if args.dry_run:
        try:
            result = check_inputs(config.spec, inputs, show)
        except (Exception, KeyboardInterrupt) as exc:
            end_progress_line(show)  # the error on a line of its own, not after the progress figures
            return _fail(*exit_status(exc, keeps_state=False))
        end_progress_line(show)
        emit(summary_line(result, dry_run=True), sys.stdout)
        return EXIT_OK
    figures: dict[str, float] = {}
    lines: list[tuple[str, TextIO]] = []  # said after the metrics file is written: a closed pipe cannot stop that
    try:
        outcome = run_job(config, inputs, show)
    except (Exception, KeyboardInterrupt) as exc:
        end_progress_line(show)
        code, text = exit_status(exc, keeps_state=False)
        lines.append((_error_line(text), sys.stderr))
    else:
        end_progress_line(show)
        figures = outcome.figures()
        lines.append((outcome.summary_line(), sys.stdout))
        code = EXIT_OK
        if outcome.spooled:
            what = "read every event" if config.mode == "mq" else "stored everything"
            items = "message(s)" if config.mode == "mq" else "pointer(s)"
            code = EXIT_SPOOLED
            lines.append((
                _error_line(
                    f"{what}, but {outcome.spooled} {items} were spooled to {config.spool} "
                    f"(run `ei-producer {FLUSH_COMMAND}`): {outcome.spool_reason}"
                ),
                sys.stderr,
            ))  # fmt: skip
    if args.metrics_file is not None:
        try:
            write_metrics(args.metrics_file, code, figures)
        except OSError as exc:  # the job's own outcome stands: a rerun would redo work that was done
            lines.append((
                _error_line(
                    f"warning: --metrics-file {args.metrics_file}: {exc.strerror or exc}: the job's figures were "
                    "not written (its exit code is the job's)"
                ),
                sys.stderr,
            ))  # fmt: skip
    for text, stream in lines:
        emit(text, stream)
    return code


def flush_main(argv: Sequence[str]) -> int:
    args = build_flush_parser().parse_args(argv)
    try:
        result = flush_spool(args.spool, args.brokers)
    except KeyboardInterrupt as exc:
        code, text = exit_status(exc, keeps_state=False)
        return _fail(code, f"{text} (the pointers not sent stay in the spool)")
    except Exception as exc:  # every error, a bug too, ends in one line and its code
        return _fail(*exit_status(exc, keeps_state=False))
    emit(json.dumps({"spool": str(args.spool), "sent": result.sent, "skipped": result.skipped}), sys.stdout)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
