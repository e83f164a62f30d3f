"""`ei-bench`: benchmarks of the collection pipeline on real servers.

  ei-bench compare   the broker-only transport against the object-store transport, side by side

Exit codes: 0 every run succeeded, 1 internal error, 2 bad command line, 3 some runs failed
(results are written all the same), 4 a server could not be started or reached, 130 interrupted (Ctrl-C or
SIGTERM: the servers, producers and supersink it started are stopped first).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import BROKERS, STORES, TRANSPORTS, BenchConfig, BenchError
from benchmarks.harness import compare
from benchmarks.progress import Progress

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RUNS_FAILED = 3
EXIT_SERVER = 4
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: the runs stopped, their servers and producers with them

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Sweep:
    tasks: int
    jobs: int
    events: int
    producers: tuple[int, ...]
    run_timeout: float
    #: seconds over which each run first reads the servers' idle CPU
    idle_seconds: float
    #: producer-like connections that warm up each fresh broker (and store requests the store server) first
    warmup_connections: int


#: The full sweep: 4 tasks x 32 jobs x 1,000 events (an ATLAS grid job indexes ~1,150 events) = 128,000
#: events per run; 128 jobs keep 64 producers busy for two rounds. About 20 minutes here (see README.md).
FULL = Sweep(
    tasks=4,
    jobs=32,
    events=1_000,
    producers=(1, 4, 16, 64),
    run_timeout=900.0,
    idle_seconds=10.0,
    warmup_connections=512,
)
#: --quick, the CI smoke test: 1 task x 4 jobs x 2,000 events, 1 and 4 producers.
QUICK = Sweep(
    tasks=1, jobs=4, events=2_000, producers=(1, 4), run_timeout=300.0, idle_seconds=2.0, warmup_connections=32
)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ei-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser(
        "compare",
        help="broker-only vs object-store transport",
        description="Run T tasks x J jobs x E events through each transport at each producer count, "
        "on real servers, and write results.json, results.md and PNG plots.",
    )
    cmp.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test of a few minutes: 1 task x 4 jobs x 2,000 events, producers 1,4",
    )
    cmp.add_argument("--tasks", type=int, help=f"tasks per run (default {FULL.tasks})")
    cmp.add_argument("--jobs", type=int, help=f"jobs per task (default {FULL.jobs})")
    cmp.add_argument("--events", type=int, help=f"events per job (default {FULL.events:,})")
    cmp.add_argument(
        "--producers", type=_ints, help=f"concurrent producers to sweep (default {','.join(map(str, FULL.producers))})"
    )
    cmp.add_argument("--transports", default=",".join(TRANSPORTS), help="store (object store) and/or mq (broker only)")
    cmp.add_argument("--broker", choices=BROKERS, default="activemq")
    cmp.add_argument("--store", choices=STORES, default="seaweedfs")
    cmp.add_argument(
        "--protocol", choices=("stomp", "amqp"), default="stomp", help="how clients talk to RabbitMQ (default stomp)"
    )
    cmp.add_argument(
        "--broker-url", help="connect to this broker (stomp://HOST:PORT or amqp://HOST:PORT) instead of starting one"
    )
    cmp.add_argument(
        "--store-url",
        help="connect to this S3 endpoint (http://HOST:PORT; credentials from the AWS environment) "
        "instead of starting one",
    )
    cmp.add_argument("--run-timeout", type=float, help="give up on a run after this many seconds")
    cmp.add_argument(
        "--drain-producers",
        type=int,
        default=4,
        metavar="N",
        help="after the sweep, one drain run per transport: N producers queue the whole workload, then the "
        "supersink is started on the backlog and its CPU from first message to last commit is measured "
        "(default %(default)s; 0: no drain runs)",
    )
    cmp.add_argument("--out", type=Path, help="results directory (default benchmarks/results/<timestamp>)")
    cmp.add_argument(
        "--work", type=Path, help="scratch directory for servers, ledgers, warehouses (default: a temp dir)"
    )
    cmp.add_argument(
        "--producer-nice",
        type=int,
        default=10,
        choices=range(20),
        metavar="N",
        help="run the producers at this CPU priority (nice 0-19; default 10): grid jobs run on other machines, "
        "so here they yield the CPU to the central services whose latency and cost are measured",
    )
    cmp.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser


def config_from(args: argparse.Namespace, work: Path, out: Path) -> BenchConfig:
    sweep = QUICK if args.quick else FULL
    return BenchConfig(
        tasks=args.tasks or sweep.tasks,
        jobs=args.jobs or sweep.jobs,
        events=args.events or sweep.events,
        producers=args.producers or sweep.producers,
        transports=tuple(t.strip() for t in args.transports.split(",") if t.strip()),
        out=out,
        work=work,
        broker=args.broker,
        store=args.store,
        broker_url=args.broker_url,
        store_url=args.store_url,
        protocol=args.protocol,
        run_timeout=args.run_timeout or sweep.run_timeout,
        quick=args.quick,
        keep=args.keep,
        drain_producers=args.drain_producers,
        idle_seconds=sweep.idle_seconds,
        warmup_connections=sweep.warmup_connections,
        producer_nice=args.producer_nice,
    )


def cmd_compare(args: argparse.Namespace) -> int:
    out = (args.out or RESULTS / time.strftime("%Y%m%d-%H%M%S")).absolute()
    work = (args.work or Path(tempfile.mkdtemp(prefix="ei-bench-"))).absolute()
    try:
        cfg = config_from(args, work, out)
    except ValueError as exc:
        print(f"ei-bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress()
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        results = compare(cfg, progress)
    except BenchError as exc:
        print(f"ei-bench: {exc}", file=sys.stderr)
        return EXIT_SERVER
    except KeyboardInterrupt:
        progress.line("ei-bench: interrupted; the servers and producers it started are stopped, no results written")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    from benchmarks.report import write

    paths = write(results, out)
    progress.line(f"results: {', '.join(str(p) for p in paths)}")
    return EXIT_OK if all(r.get("status") == "ok" for r in results["runs"]) else EXIT_RUNS_FAILED


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every server, producer and supersink started is stopped on the way out."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "compare":
        return cmd_compare(args)
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
