"""`ei-supersink`: collect announced chunks into complete, exactly-once Parquet tasks.

Commands:
  expect      announce how many jobs (and events) a task has
  run         consume pointers, verify, record, load complete tasks
  status      show every task: expected/resolved jobs, events, state, what is missing
  load        load one task now (--force: what is there, marked partial)
  reconcile   bring the ledger up to date from the manifests in the store
  quarantine  list the refused messages, or retry them through the broker
  notifications  list (or publish again) the commit notifications the ledger keeps

Exit codes (the README's table): 0 ok, 1 internal error (a bug), 2 usage (bad command line, URL,
name, number or path; unknown task; optional dependency not installed), 3 a task needs attention
(`run --until-idle`: stuck tasks, one line each; `load`: the task cannot be loaded now), 4 store
error, 5 broker error, 6 ledger or warehouse error, 129 `run` stopped by SIGHUP (gently, as by SIGTERM,
so that a service manager restarting on failure starts it again), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from eventindex import __version__
from eventindex.errors import ConfigError
from eventindex.exit_codes import EXIT_ATTENTION, EXIT_HANGUP, EXIT_OK, OneLineParser, emit, exit_status

# The codes this command ends with (the README's table; exit_status maps the errors to them).
from eventindex.exit_codes import EXIT_BROKER as EXIT_BROKER
from eventindex.exit_codes import EXIT_INTERNAL as EXIT_INTERNAL
from eventindex.exit_codes import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from eventindex.exit_codes import EXIT_STATE as EXIT_STATE
from eventindex.exit_codes import EXIT_STORE as EXIT_STORE
from eventindex.exit_codes import EXIT_USAGE as EXIT_USAGE
from eventindex.names import validate_name
from eventindex.pointers import expectation_pointer, headers_for
from eventindex.store import open_store
from eventindex.store.counting import CountingStore
from eventindex.transport import open_consumer, open_publisher
from supersink import quarantine
from supersink.committed import FORMATS as COMMITTED_FORMATS
from supersink.committed import render as render_committed
from supersink.instance import run_lock
from supersink.ledger import Ledger
from supersink.loader import ROW_GROUP_ROWS, ROWS_PER_FILE, FileLayout
from supersink.logs import Redactor, configure
from supersink.migrate import migrate_layout
from supersink.notify import parse_since, replay
from supersink.ops import Operations, OpsConfig, add_run_arguments
from supersink.retention import DAY, RetentionPolicy
from supersink.service import DEFAULT_RESCAN_SECONDS, STATES, Supersink, reconcile_into, run_summary
from supersink.status import render, status
from supersink.warehouse import Warehouse

#: The protocol's ranges (uint32 expected_jobs; event numbers below 2**63).
MAX_JOBS = 2**32 - 1
MAX_EVENTS = 2**63 - 1
#: The longest duration any option takes (a century): beyond it is a typo, not a plan.
MAX_SECONDS = 100 * 365 * DAY
MAX_ROWS = 10**9
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}
#: The shortest --retention-retry.
MIN_RETENTION_RETRY = 60.0


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low:,}-{high:,}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} seconds is outside 0-{MAX_SECONDS:.0f}")
    return value


def _duration(text: str) -> float | None:
    """`3d`, `12h`, `30m`, `45s` or plain seconds; `never` for None."""
    if text == "never":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3d, 12h, 30m, 45s or never")
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} is longer than a century")
    return value


def _retry_duration(text: str) -> float:
    """A duration of at least a minute (each retry reads the task's marker from the warehouse); not `never`."""
    value = _duration(text)
    if value is None or value < MIN_RETENTION_RETRY:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration of at least 1m (like 30m, 1h, 1d)")
    return value


def _store_argument(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument(
        "--store", required=True, help="the object store: file:///abs/dir or s3://bucket/prefix?endpoint=…" + more
    )


def _warehouse_argument(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument(
        "--warehouse",
        required=True,
        help="the warehouse: file:///abs/dir, s3://bucket/prefix?endpoint=…, webhdfs://nn:9870[,nn2:9870]/path" + more,
    )


def _state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", required=True, type=Path, help="the ledger (SQLite file)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ei-supersink", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    expect = sub.add_parser("expect", help="send a task expectation")
    expect.add_argument(
        "--broker",
        required=True,
        help="the queue: sqlite:///abs/queue.db, stomp://host:61613/queue/NAME, amqp://host:5672/QUEUE",
    )
    expect.add_argument("--task", required=True, help="the task name")
    expect.add_argument("--jobs", required=True, type=_whole(1, MAX_JOBS), help="how many jobs the task has")
    expect.add_argument(
        "--events", type=_whole(0, MAX_EVENTS), default=None, help="how many events the task has, if known"
    )

    run = sub.add_parser("run", help="run the service")
    run.add_argument(
        "--broker",
        required=True,
        help="the queue: sqlite:///abs/queue.db, stomp://host:61613/queue/NAME, amqp://host:5672/QUEUE",
    )
    _store_argument(run, "; pointers may point only into it")
    _warehouse_argument(run)
    _state_argument(run)
    run.add_argument(
        "--until-idle",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS with nothing to do: exit 0 when every task is loaded or waiting for jobs, "
        "else 3 with one line per stuck task",
    )
    run.add_argument(
        "--task-deadline",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="mark a task failed, naming what is missing, when it is not complete this long "
        "after it was first seen (it still loads if it completes later)",
    )
    run.add_argument(
        "--rescan-seconds",
        type=_seconds,
        default=DEFAULT_RESCAN_SECONDS,
        metavar="SECONDS",
        help="how often an incomplete task is looked for in the store, for manifests whose pointers "
        f"were lost or went to another supersink (0: never). Default: {DEFAULT_RESCAN_SECONDS:g}",
    )
    run.add_argument(
        "--delete-transit-after",
        type=_duration,
        default=RetentionPolicy.transit,
        metavar="DURATION",
        help="delete a committed task's chunk and manifest objects from the store, and compact its ledger rows, "
        "this long after the commit (3d, 12h, 30m, 45s; never). Default: 3d",
    )
    run.add_argument(
        "--forget-after",
        type=_duration,
        default=RetentionPolicy.forget,
        metavar="DURATION",
        help="drop a purged task's summary from the ledger this long after its purge. Default: 90d",
    )
    run.add_argument(
        "--quarantine-expiry",
        type=_duration,
        default=RetentionPolicy.quarantine,
        metavar="DURATION",
        help="delete quarantine entries this long after they were received, but not those of a task not fully "
        "loaded (their message may heal it). Default: 30d",
    )
    run.add_argument(
        "--retention-retry",
        type=_retry_duration,
        default=RetentionPolicy.retry,
        metavar="DURATION",
        help="how long after retention had to leave a committed task alone (its commit marker not found: a "
        "warehouse not mounted, a marker restored from a backup) it tries that task again; at least 1m. Default: 1h",
    )
    run.add_argument("--quiet", action="store_true", help="log warnings and errors only (never hides an error)")
    add_run_arguments(run, _whole(1, 65535))

    load = sub.add_parser("load", help="load one task now")
    load.add_argument("--task", required=True, help="the task to load")
    _store_argument(load)
    _warehouse_argument(load)
    _state_argument(load)
    how = load.add_mutually_exclusive_group()
    how.add_argument("--force", action="store_true", help="load the resolved jobs even if the task is incomplete")
    how.add_argument(
        "--amend",
        action="store_true",
        help="add the jobs that completed after a partial load (status lists them as late jobs) as an amendment",
    )
    for command in (run, load):
        command.add_argument(
            "--rows-per-file",
            type=_whole(1, MAX_ROWS),
            default=ROWS_PER_FILE,
            help=f"rows per Parquet part file (default {ROWS_PER_FILE:,})",
        )
        command.add_argument(
            "--row-group-rows",
            type=_whole(1, MAX_ROWS),
            default=ROW_GROUP_ROWS,
            help=f"rows per Parquet row group (default {ROW_GROUP_ROWS:,})",
        )

    rec = sub.add_parser("reconcile", help="rebuild the ledger from the manifests in the store")
    _store_argument(rec)
    _state_argument(rec)
    rec.add_argument("--warehouse", default=None, help="also load the tasks that are now complete")
    rec.add_argument("--prefix", default="", help="only manifests under this key prefix (e.g. a task name + '/')")

    com = sub.add_parser("committed", help="list a warehouse's committed data, from its commit markers only")
    _warehouse_argument(com)
    com.add_argument(
        "--format",
        choices=COMMITTED_FORMATS,
        default="paths",
        help="paths: one committed part file per line; json: one object per committed task; "
        "spark-sql: DDL registering each committed task as a partition of a Spark/Hive table",
    )
    com.add_argument("--table", default="eventindex", help="the table name in the spark-sql DDL")

    mig = sub.add_parser("migrate-layout", help="move a warehouse written as <dataset>/<task>/ to dataset=/task=")
    _warehouse_argument(mig, " (stop its supersinks first)")

    notes = sub.add_parser("notifications", help="list the commit notifications the ledger keeps, as JSON lines")
    _state_argument(notes)
    notes.add_argument(
        "--since", required=True, help="those recorded since: an ISO 8601 time (UTC unless given) or 30m, 12h, 3d ago"
    )
    notes.add_argument("--notify", default=None, metavar="URL", help="also publish them again to this destination")

    st = sub.add_parser("status", help="show tasks")
    _state_argument(st)
    st.add_argument("--json", action="store_true", help="the report as JSON")

    quarantine = sub.add_parser("quarantine", help="inspect refused messages")
    qsub = quarantine.add_subparsers(dest="action", required=True)
    qlist = qsub.add_parser("list", help="list every entry: id, state, task and why it was refused")
    _state_argument(qlist)
    qlist.add_argument("--json", action="store_true", help="the entries as JSON")
    qretry = qsub.add_parser("retry", help="send held messages to the broker again")
    _state_argument(qretry)
    qretry.add_argument("--broker", required=True, help="the queue to send them to")
    which = qretry.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=_whole(1, 2**63 - 1), action="append", dest="ids", help="an entry id (repeatable)")
    which.add_argument("--all", action="store_true", help="every held entry")
    return parser


def _open_ledger(path: Path, must_exist: bool = False) -> Ledger:
    return Ledger(path.absolute(), must_exist)


def _layout(args: argparse.Namespace) -> FileLayout:
    return FileLayout(row_group_rows=args.row_group_rows, rows_per_file=args.rows_per_file)


def _ops_config(args: argparse.Namespace) -> OpsConfig:
    for option, host in (("--http-host", args.http_host), ("--metrics-host", args.metrics_host)):
        if not host.strip():  # an empty address binds every interface: that must be asked for by name
            raise ConfigError(f"{option} is empty: give an address (0.0.0.0 or :: to listen on every interface)")
    return OpsConfig(
        broker=args.broker,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        http_port=args.http_port,
        http_host=args.http_host,
        tokens=args.tokens,
        notify=args.notify,
        forget_after=args.forget_after,
    )


def cmd_expect(args: argparse.Namespace) -> int:
    pointer = expectation_pointer(args.task, args.jobs, args.events)
    with open_publisher(args.broker) as publisher:
        publisher.send(pointer.SerializeToString(), headers_for(pointer), group=args.task)
    return EXIT_OK


def cmd_run(args: argparse.Namespace, redact: Redactor) -> int:
    stop = threading.Event()
    hangup = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        if signum == signal.SIGHUP:
            hangup.set()
        stop.set()

    config = _ops_config(args)  # a bad --http-host is refused before anything is opened or created
    with contextlib.ExitStack() as resources:  # what opened is closed, in reverse, whatever fails after it
        ledger = _open_ledger(args.state)
        resources.callback(ledger.close)
        resources.enter_context(run_lock(ledger.path))  # one service per ledger
        ops = Operations(config, ledger, redact)  # tokens, notifier, metrics and status servers
        resources.callback(ops.close)
        store = CountingStore(open_store(args.store, create=False))  # a missing directory is not an empty store
        resources.callback(store.close)
        warehouse = Warehouse.from_url(args.warehouse)
        resources.callback(warehouse.close)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, on_signal)
        with open_consumer(args.broker) as consumer:
            sink = Supersink(
                ledger,
                store,
                warehouse,
                task_deadline=args.task_deadline,
                layout=_layout(args),
                rescan_seconds=args.rescan_seconds or None,
                retention=RetentionPolicy(
                    args.delete_transit_after, args.forget_after, args.quarantine_expiry, args.retention_retry
                ),
                notifier=ops.notifier,
                observe_load=ops.observe_load,
            )
            ops.start(sink.counters, tuple(STATES))
            sink.run(ops.consumer(consumer), stop, args.until_idle)
            stuck = sink.stuck() if args.until_idle is not None and not stop.is_set() else []
    _out(run_summary(sink, store, stuck))
    for task in stuck:
        print(f"ei-supersink: {redact(task.line())}", file=sys.stderr)
    if hangup.is_set():  # stopped as gently as by SIGTERM; not 0, so that a Restart=on-failure unit starts it again
        return EXIT_HANGUP
    return EXIT_ATTENTION if stuck else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args.state, must_exist=True)
    try:
        report = status(ledger)
    finally:
        ledger.close()
    _out(json.dumps(report, indent=2) if args.json else render(report))
    return EXIT_OK


def cmd_notifications(args: argparse.Namespace) -> int:
    committed_after = parse_since(args.since)
    ledger = _open_ledger(args.state, must_exist=True)
    try:
        notes = replay(ledger, committed_after, args.notify)
    finally:
        ledger.close()
    for note in notes:
        _out(json.dumps({"seq": note.seq, "published": note.published, **note.data()}))
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    validate_name("task", args.task)
    with contextlib.ExitStack() as resources:  # what opened is closed, whatever fails after it
        ledger = _open_ledger(args.state, must_exist=True)
        resources.callback(ledger.close)
        store = open_store(args.store, create=False)
        resources.callback(store.close)
        warehouse = Warehouse.from_url(args.warehouse)
        resources.callback(warehouse.close)
        sink = Supersink(ledger, store, warehouse, layout=_layout(args), wait_for_loads=True)
        summary = sink.amend_now(args.task) if args.amend else sink.load_now(args.task, force=args.force)
    _out(json.dumps(summary))
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    store = open_store(args.store, create=False)  # a location that does not exist is not an empty store
    ledger = _open_ledger(args.state)
    try:
        warehouse = Warehouse.from_url(args.warehouse) if args.warehouse else None
        try:
            report = reconcile_into(ledger, store, args.prefix, warehouse)
        finally:
            if warehouse is not None:
                warehouse.close()
    finally:
        ledger.close()
        store.close()
    redact = Redactor()
    for problem in report.problems:
        print(f"ei-supersink: reconcile: {redact(problem)}", file=sys.stderr)
    _out(json.dumps(report.summary()))
    return EXIT_OK


def cmd_committed(args: argparse.Namespace) -> int:
    warehouse = Warehouse.from_url(args.warehouse, create=False)
    try:
        _out(render_committed(warehouse, args.format, args.table), end="")
    finally:
        warehouse.close()
    return EXIT_OK


def cmd_migrate_layout(args: argparse.Namespace) -> int:
    warehouse = Warehouse.from_url(args.warehouse, create=False)
    try:
        result = migrate_layout(warehouse)
    finally:
        warehouse.close()
    for old in result.uncommitted:
        print(f"ei-supersink: migrate-layout: {old} has no commit marker, left where it is", file=sys.stderr)
    _out(json.dumps({"moved": result.moved, "uncommitted": result.uncommitted}))
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args.state, must_exist=True)
    try:
        if args.action == "retry":
            _out(json.dumps({"retried": quarantine.retry(ledger, args.broker, None if args.all else args.ids)}))
            return EXIT_OK
        listing = quarantine.entries(ledger)
    finally:
        ledger.close()
    _out(json.dumps(listing, indent=2) if args.json else quarantine.render(listing), end="\n" if args.json else "")
    return EXIT_OK


#: Commands whose progress is logged (INFO); the others show warnings and errors only.
_LOGGING_COMMANDS = ("run", "load", "reconcile")


def _setup_logging(args: argparse.Namespace) -> Redactor:
    """The one logging set-up, as `run` asks (--log-format, --quiet); the redactor takes the status
    page's tokens when `run` reads them. Client libraries log their own retries loudly; our adapters
    report what matters, once."""
    quiet = args.command not in _LOGGING_COMMANDS or getattr(args, "quiet", False)
    redact = configure("ei-supersink", getattr(args, "log_format", "text"), quiet)
    for name in ("pika", "stomp.py", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.CRITICAL if name == "pika" else logging.WARNING)
    return redact


def _out(text: str, end: str = "\n") -> None:
    emit(text, sys.stdout, end)


#: The commands but `run`, which also takes the redactor.
COMMANDS = {
    "expect": cmd_expect,
    "status": cmd_status,
    "load": cmd_load,
    "reconcile": cmd_reconcile,
    "quarantine": cmd_quarantine,
    "committed": cmd_committed,
    "migrate-layout": cmd_migrate_layout,
    "notifications": cmd_notifications,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    redact = Redactor()  # the error line shows no credential, even one the logging set-up failed on
    try:
        redact = _setup_logging(args)
        if args.command == "run":
            return cmd_run(args, redact)
        return COMMANDS[args.command](args)
    except (Exception, KeyboardInterrupt) as exc:  # every error, a bug too, ends in one line and its code
        code, text = exit_status(exc)
    print(f"ei-supersink: {redact(text)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
