"""`ei-producer`: index one job attempt's inputs into the object store and announce them.

Exit codes (stable, documented in the README):
  0  everything stored and announced
  1  unexpected internal error (a bug: please report it)
  2  bad command line, URL or name
  3  an input is unreadable, truncated or inconsistent
  4  the object store failed or refused a write
  5  the broker failed
  137 (only with --fail-after-chunks) the simulated crash
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from eventindex import __version__
from eventindex.errors import ConfigError, EventIndexError, InputError, StoreError, TransportError
from eventindex.store import open_store
from eventindex.transport import open_publisher
from producer.inputs import open_input
from producer.job import DEFAULT_CHUNK_EVENTS, JobRunner, JobSpec, Progress

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_STORE = 4
EXIT_BROKER = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ei-producer", description=__doc__.splitlines()[0])
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
    parser.add_argument("--store", required=True, help="file:///dir or s3://bucket/prefix?endpoint=URL")
    parser.add_argument("--broker", required=True, help="sqlite:///queue.db or stomp://host:port/queue/NAME")
    parser.add_argument("--chunk-events", type=int, default=DEFAULT_CHUNK_EVENTS, help="events per chunk object")
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="index files whose declared count differs or that hold duplicate (run, event) pairs",
    )
    parser.add_argument(
        "--fail-after-chunks",
        type=int,
        default=None,
        metavar="N",
        help="testing aid: die abruptly (exit 137, no manifest) after N chunks, as a killed job would",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def _progress_printer(enabled: bool) -> Callable[[Progress], None] | None:
    def show(progress: Progress) -> None:
        mb_s = progress.bytes / 1e6 / max(progress.seconds, 1e-9)
        sys.stderr.write(f"\r  {progress.events:,} events  {progress.chunks} chunks  {mb_s:.1f} MB/s ")
        sys.stderr.flush()

    return show if enabled else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        inputs = [open_input(spec_text) for spec_text in args.inputs]
        store = open_store(args.store)
        publisher = open_publisher(args.broker)
    except ConfigError as exc:
        print(f"ei-producer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"ei-producer: input error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except StoreError as exc:
        print(f"ei-producer: store error: {exc}", file=sys.stderr)
        return EXIT_STORE
    except TransportError as exc:
        print(f"ei-producer: broker error: {exc}", file=sys.stderr)
        return EXIT_BROKER
    show = _progress_printer(sys.stderr.isatty() and not args.quiet)
    try:
        with publisher:
            result = JobRunner(spec, store, publisher, show).run(inputs)
    except InputError as exc:
        code, text = EXIT_INPUT, f"input error: {exc}"
    except StoreError as exc:
        code, text = EXIT_STORE, f"store error: {exc}"
    except TransportError as exc:
        code, text = EXIT_BROKER, f"broker error: {exc}"
    except EventIndexError as exc:
        code, text = EXIT_INTERNAL, f"error: {exc}"
    else:
        if show is not None:
            sys.stderr.write("\n")
        print(
            json.dumps(
                {
                    "task": result.task,
                    "job": result.job,
                    "attempt": result.attempt,
                    "events": result.events,
                    "chunks": result.chunks,
                    "bytes": result.bytes,
                    "seconds": round(result.seconds, 3),
                    "manifest": result.manifest_url,
                    "problems": list(result.problems),
                }
            )
        )
        return EXIT_OK
    finally:
        store.close()
    print(f"ei-producer: {text}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
