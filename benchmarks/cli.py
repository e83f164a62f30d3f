"""`ei-bench`: benchmarks of the collection pipeline on real servers.

  ei-bench compare   the broker-only transport against the object-store transport, side by side

Exit codes: 0 every run succeeded, 1 internal error, 2 bad command line (also: --out or --work unusable, or in
use by another ei-bench; --out already holding results), 3 some runs failed (results are written all the same),
4 a server could not be started or reached, 130 interrupted (Ctrl-C, SIGTERM or SIGHUP: the servers, producers
and supersink it started are stopped first, and no results are written).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from benchmarks.config import BROKERS, STORES, TRANSPORTS, BenchConfig, BenchError
from benchmarks.harness import compare
from benchmarks.progress import Progress

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_RUNS_FAILED = 3
EXIT_SERVER = 4
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: the runs stopped, their servers and producers with them

RESULTS = Path(__file__).resolve().parent / "results"
#: held (flock) in --out and --work while a comparison uses them: a second ei-bench is refused, not mixed in
LOCK_NAME = ".ei-bench.lock"
EXIT_CODES = __doc__.split("Exit codes: ", 1)[1].strip()


class UsageError(Exception):
    """A bad command line, or an --out/--work the comparison cannot use: exit 2 before anything runs."""


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
    return tuple(dict.fromkeys(values))  # a count given twice is run once


def _exit_codes(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.epilog = "Exit codes: " + " ".join(EXIT_CODES.split())
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _exit_codes(argparse.ArgumentParser(prog="ei-bench", description=__doc__.splitlines()[0]))
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser(
        "compare",
        help="broker-only vs object-store transport",
        description="Run T tasks x J jobs x E events through each transport at each producer count, "
        "on real servers, and write results.json, results.md and PNG plots.",
    )
    _exit_codes(cmp)
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


def _given(value: int | float | None, default: int | float) -> int | float:
    """An option's value, or the sweep's default when it was not given (a 0 given is checked, not replaced)."""
    return default if value is None else value


def config_from(args: argparse.Namespace, work: Path, out: Path) -> BenchConfig:
    sweep = QUICK if args.quick else FULL
    return BenchConfig(
        tasks=int(_given(args.tasks, sweep.tasks)),
        jobs=int(_given(args.jobs, sweep.jobs)),
        events=int(_given(args.events, sweep.events)),
        producers=args.producers or sweep.producers,
        transports=tuple(dict.fromkeys(t.strip() for t in args.transports.split(",") if t.strip())),
        out=out,
        work=work,
        broker=args.broker,
        store=args.store,
        broker_url=args.broker_url,
        store_url=args.store_url,
        protocol=args.protocol,
        run_timeout=float(_given(args.run_timeout, sweep.run_timeout)),
        quick=args.quick,
        keep=args.keep,
        drain_producers=args.drain_producers,
        idle_seconds=sweep.idle_seconds,
        warmup_connections=sweep.warmup_connections,
        producer_nice=args.producer_nice,
    )


def new_results_dir(root: Path, stamp: str) -> Path:
    """A new directory ``root/<stamp>`` (``<stamp>-2``, ``-3``, … when that one exists: two comparisons started in
    the same second), created here, so no other ei-bench writes into it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = root / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
    except OSError as exc:
        raise UsageError(
            f"cannot create a results directory under {root} ({exc.strerror or exc}): give --out"
        ) from None
    raise UsageError(f"no new results directory for {stamp} under {root}: give --out")


def _usable_dir(path: Path, option: str) -> bool:
    """Create `path` if needed (True when created here); UsageError when it cannot be used as a directory."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a directory")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: not writable")
    return created


class DirLock:
    """An exclusive flock on ``<directory>/.ei-bench.lock`` for as long as a comparison uses the directory."""

    def __init__(self, directory: Path, option: str) -> None:
        self.path = directory / LOCK_NAME
        self.option = option
        self._file: IO[str] | None = None

    def __enter__(self) -> DirLock:
        try:
            handle = self.path.open("a+")
        except OSError as exc:
            raise UsageError(f"{self.option} {self.path.parent}: cannot write in it ({exc.strerror or exc})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise UsageError(
                f"{self.option} {self.path.parent}: another ei-bench is using it (pid {holder}); "
                "give each comparison its own directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._file.close()  # releases the lock
            self._file = None


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) unwind the comparison once (as KeyboardInterrupt), so every
    server, producer and supersink it started is stopped on the way out; a second signal while they are being
    stopped is noted, not raised, so it cannot cut the stopping short and leave a server running (servers run in
    sessions of their own: a terminal's Ctrl-C or hang-up does not reach them). A signal that was ignored stays
    ignored (SIGHUP under ``nohup``, SIGINT in a background job)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.received = 0
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            if sig != signal.SIGTERM and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self._previous[sig] = signal.signal(sig, self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.received == 1:
            raise KeyboardInterrupt
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            self.progress.line(
                f"ei-bench: {signal.Signals(signum).name} received; still stopping the servers, producers and "
                "supersink it started (SIGKILL would leave the servers running)"
            )


@contextlib.contextmanager
def _directories(args: argparse.Namespace) -> Iterator[tuple[Path, Path]]:
    """--out and --work checked, created and locked for the comparison (UsageError when they cannot be used);
    on the way out, a temporary --work is deleted, and an --out created here is removed if nothing was written."""
    if args.out is None:
        out, out_created = new_results_dir(RESULTS, time.strftime("%Y%m%d-%H%M%S")), True
    else:
        out = args.out.absolute()
        out_created = _usable_dir(out, "--out")
        if (out / "results.json").exists():
            raise UsageError(
                f"--out {out} already holds results (results.json); give a new directory or remove them first"
            )
    temporary: Path | None = None
    used = False
    try:
        if args.work is not None:
            work = args.work.absolute()
            _usable_dir(work, "--work")
        else:
            try:
                work = temporary = Path(tempfile.mkdtemp(prefix="ei-bench-")).absolute()
            except OSError as exc:
                raise UsageError(f"cannot create a scratch directory ({exc.strerror or exc}): give --work") from None
        with contextlib.ExitStack() as locks:
            locks.enter_context(DirLock(out, "--out"))
            if work != out:
                locks.enter_context(DirLock(work, "--work"))
            used = True
            yield out, work
    finally:
        if temporary is not None and not (args.keep and used):
            shutil.rmtree(temporary, ignore_errors=True)
        if args.keep and used:
            print(f"ei-bench: scratch directory kept (--keep): {work}", file=sys.stderr)
        if out_created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty: nothing was written


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        # the values first: nothing is created for a bad command line
        cfg = config_from(args, Path("work"), Path("out"))
    except ValueError as exc:
        print(f"ei-bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress()
    try:
        with _directories(args) as (out, work):
            cfg = dataclasses.replace(cfg, out=out, work=work)
            return _compare(cfg, out, progress)
    except UsageError as exc:
        print(f"ei-bench: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _compare(cfg: BenchConfig, out: Path, progress: Progress) -> int:
    plots = importlib.util.find_spec("matplotlib") is not None
    if not plots:
        progress.line(
            "ei-bench: matplotlib is not installed (pip install -e '.[bench]'): results.json and results.md will "
            "be written, not the plots"
        )
    from benchmarks.report import write

    with StopSignals(progress):
        try:
            results = compare(cfg, progress)
        except BenchError as exc:
            print(f"ei-bench: {exc}", file=sys.stderr)
            return EXIT_SERVER
        except KeyboardInterrupt:
            progress.line("ei-bench: interrupted; the servers and producers it started are stopped, no results written")
            return EXIT_INTERRUPTED
        try:
            paths = write(results, out, draw=plots)  # all or nothing: results.json is renamed into place last
        except KeyboardInterrupt:
            progress.line("ei-bench: interrupted while writing the results; none written")
            return EXIT_INTERRUPTED
        except OSError as exc:
            print(f"ei-bench: cannot write the results into {out}: {exc}", file=sys.stderr)
            return EXIT_INTERNAL
    progress.line(f"results: {', '.join(str(p) for p in paths)}")
    return EXIT_OK if all(r.get("status") == "ok" for r in results["runs"]) else EXIT_RUNS_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "compare":
        return cmd_compare(args)
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
