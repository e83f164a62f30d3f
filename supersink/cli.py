"""`ei-supersink`: collect announced chunks into complete, exactly-once Parquet tasks.

Commands:
  expect      announce how many jobs (and events) a task has
  run         consume pointers, verify, record, load complete tasks
  status      show every task: expected/resolved jobs, events, state, what is missing
  load        load one task now (--force: what is there, marked partial)
  reconcile   bring the ledger up to date from the manifests in the store
  quarantine  list the refused messages, or retry them through the broker

Exit codes: 0 ok, 1 internal error, 2 bad command line/URL/name, 4 store error, 5 broker error,
6 ledger or warehouse error.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from eventindex import __version__
from eventindex.errors import ConfigError, EventIndexError, StoreError, TransportError, WarehouseError
from eventindex.pointers import expectation_pointer, headers_for
from eventindex.store import open_store
from eventindex.store.counting import CountingStore
from eventindex.transport import open_consumer, open_publisher
from supersink.amend import NothingToAmendError, amend
from supersink.committed import FORMATS as COMMITTED_FORMATS
from supersink.committed import render as render_committed
from supersink.intake import Intake
from supersink.ledger import Ledger, LedgerError
from supersink.loader import ROW_GROUP_ROWS, ROWS_PER_FILE, FileLayout
from supersink.migrate import migrate_layout
from supersink.reconcile import reconcile
from supersink.service import DEFAULT_RESCAN_SECONDS, Supersink, TaskNotLoadableError, counters_json
from supersink.status import render, status
from supersink.warehouse import Warehouse

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_STORE = 4
EXIT_BROKER = 5
EXIT_STATE = 6


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ei-supersink", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    expect = sub.add_parser("expect", help="send a task expectation")
    expect.add_argument("--broker", required=True)
    expect.add_argument("--task", required=True)
    expect.add_argument("--jobs", required=True, type=int)
    expect.add_argument("--events", type=int, default=None)

    run = sub.add_parser("run", help="run the service")
    run.add_argument("--broker", required=True)
    run.add_argument("--store", required=True, help="the only store pointers may point into")
    run.add_argument("--warehouse", required=True, help="file:///dir")
    run.add_argument("--state", required=True, type=Path, help="the SQLite ledger file")
    run.add_argument(
        "--until-idle", type=float, default=None, metavar="SECONDS", help="exit 0 after SECONDS with nothing to do"
    )
    run.add_argument(
        "--task-deadline",
        type=float,
        default=None,
        metavar="SECONDS",
        help="mark a task failed, naming what is missing, when it is not complete this long "
        "after it was first seen (it still loads if it completes later)",
    )
    run.add_argument(
        "--rescan-seconds",
        type=float,
        default=DEFAULT_RESCAN_SECONDS,
        metavar="SECONDS",
        help="how often an incomplete task is looked for in the store, for manifests whose pointers "
        "were lost or went to another supersink (0: never)",
    )
    run.add_argument("--quiet", action="store_true")

    load = sub.add_parser("load", help="load one task now")
    load.add_argument("--task", required=True)
    load.add_argument("--store", required=True)
    load.add_argument("--warehouse", required=True)
    load.add_argument("--state", required=True, type=Path)
    how = load.add_mutually_exclusive_group()
    how.add_argument("--force", action="store_true", help="load the resolved jobs even if the task is incomplete")
    how.add_argument(
        "--amend",
        action="store_true",
        help="add the jobs that completed after a partial load (status lists them as late jobs) as an amendment",
    )
    for command in (run, load):
        command.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE, help="rows per Parquet part file")
        command.add_argument("--row-group-rows", type=int, default=ROW_GROUP_ROWS, help="rows per Parquet row group")

    rec = sub.add_parser("reconcile", help="rebuild the ledger from the manifests in the store")
    rec.add_argument("--store", required=True)
    rec.add_argument("--state", required=True, type=Path)
    rec.add_argument("--warehouse", default=None, help="also load the tasks that are now complete")
    rec.add_argument("--prefix", default="", help="only manifests under this key prefix (e.g. a task name + '/')")

    com = sub.add_parser("committed", help="list a warehouse's committed data, from its commit markers only")
    com.add_argument(
        "--warehouse", required=True, help="file:///dir, s3://bucket/prefix?endpoint=…, webhdfs://nn:port/path"
    )
    com.add_argument(
        "--format",
        choices=COMMITTED_FORMATS,
        default="paths",
        help="paths: one committed part file per line; json: one object per committed task; "
        "spark-sql: DDL registering each committed task as a partition of a Spark/Hive table",
    )
    com.add_argument("--table", default="eventindex", help="the table name in the spark-sql DDL")

    mig = sub.add_parser("migrate-layout", help="move a warehouse written as <dataset>/<task>/ to dataset=/task=")
    mig.add_argument("--warehouse", required=True, help="the warehouse URL (stop its supersinks first)")

    st = sub.add_parser("status", help="show tasks")
    st.add_argument("--state", required=True, type=Path)
    st.add_argument("--json", action="store_true")

    quarantine = sub.add_parser("quarantine", help="inspect refused messages")
    qsub = quarantine.add_subparsers(dest="action", required=True)
    qlist = qsub.add_parser("list")
    qlist.add_argument("--state", required=True, type=Path)
    qlist.add_argument("--json", action="store_true")
    qretry = qsub.add_parser("retry", help="send held messages to the broker again")
    qretry.add_argument("--state", required=True, type=Path)
    qretry.add_argument("--broker", required=True)
    which = qretry.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, action="append", dest="ids", help="an entry id (repeatable)")
    which.add_argument("--all", action="store_true", help="every held entry")
    return parser


def _open_ledger(path: Path, must_exist: bool = False) -> Ledger:
    if must_exist and not path.exists():
        raise LedgerError(f"no ledger at {path}")
    return Ledger(path.absolute())


def cmd_expect(args: argparse.Namespace) -> int:
    pointer = expectation_pointer(args.task, args.jobs, args.events)
    with open_publisher(args.broker) as publisher:
        publisher.send(pointer.SerializeToString(), headers_for(pointer), group=args.task)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="ei-supersink: %(message)s", stream=sys.stderr
    )
    _quiet_libraries()
    store = CountingStore(open_store(args.store))
    warehouse = Warehouse.from_url(args.warehouse)
    ledger = _open_ledger(args.state)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with open_consumer(args.broker) as consumer:
            sink = Supersink(
                ledger,
                store,
                warehouse,
                task_deadline=args.task_deadline,
                layout=_layout(args),
                rescan_seconds=args.rescan_seconds or None,
            )
            counters = sink.run(consumer, stop, args.until_idle)
    finally:
        ledger.close()
        store.close()
        warehouse.close()
    cache = sink.intake.cache
    print(
        counters_json(
            counters,
            store_requests=store.stats.requests,
            store_bytes=store.stats.bytes,
            chunk_cache_hits=cache.hits,
            chunk_cache_misses=cache.misses,
        )
    )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args.state, must_exist=True)
    try:
        report = status(ledger)
    finally:
        ledger.close()
    print(json.dumps(report, indent=2) if args.json else render(report))
    return EXIT_OK


def _quiet_libraries() -> None:
    """Client libraries log their own retries loudly; our adapters report what matters, once."""
    for name in ("pika", "stomp.py", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.CRITICAL if name == "pika" else logging.WARNING)


def _layout(args: argparse.Namespace) -> FileLayout:
    return FileLayout(row_group_rows=args.row_group_rows, rows_per_file=args.rows_per_file)


def _sink(args: argparse.Namespace, warehouse_url: str) -> Supersink:
    logging.basicConfig(level=logging.INFO, format="ei-supersink: %(message)s", stream=sys.stderr)
    return Supersink(
        _open_ledger(args.state), open_store(args.store), Warehouse.from_url(warehouse_url), layout=_layout(args)
    )


def _close(sink: Supersink) -> None:
    sink.ledger.close()
    sink.store.close()
    sink.warehouse.close()


def cmd_load(args: argparse.Namespace) -> int:
    sink = _sink(args, args.warehouse)
    try:
        if args.amend:
            amendment = amend(
                sink.ledger,
                sink.warehouse,
                task=args.task,
                store=sink.store,
                spool=sink.intake.spool,
                owner=sink.owner,
                layout=sink.layout,
            )
            keys = ("task", "dataset", "amendment", "rows", "partial", "missing", "attempts")
            print(json.dumps({k: amendment[k] for k in keys}))
            return EXIT_OK
        if args.force:
            marker = sink.force_load(args.task)
        else:
            view = sink.settle(args.task)
            if view.state not in ("loaded", "loaded-partial"):
                raise TaskNotLoadableError(
                    f"task {args.task} is {view.state}: {view.failure or '; '.join(view.missing[:3])}"
                    " (use --force to load what is there)"
                )
            row = sink.ledger.task(args.task)
            marker = json.loads(row["marker"]) if row is not None else None
    finally:
        _close(sink)
    if marker is None:
        raise TaskNotLoadableError(f"task {args.task} is claimed by another supersink")
    print(json.dumps({k: marker[k] for k in ("task", "dataset", "rows", "partial", "missing")}))
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="ei-supersink: %(message)s", stream=sys.stderr)
    ledger, store = _open_ledger(args.state), open_store(args.store)
    try:
        report = reconcile(Intake(ledger, store), args.prefix)
        if args.warehouse:
            sink = Supersink(ledger, store, Warehouse.from_url(args.warehouse))
            for task in sorted(report.tasks):
                sink.settle(task)
            sink.warehouse.close()
    finally:
        ledger.close()
        store.close()
    for problem in report.problems:
        print(f"ei-supersink: reconcile: {problem}", file=sys.stderr)
    print(
        json.dumps(
            {
                "manifests_seen": report.manifests_seen,
                "manifests_recorded": report.manifests_recorded,
                "already_known": report.already_known,
                "problems": len(report.problems),
                "tasks": sorted(report.tasks),
            }
        )
    )
    return EXIT_OK


def cmd_committed(args: argparse.Namespace) -> int:
    warehouse = Warehouse.from_url(args.warehouse)
    try:
        sys.stdout.write(render_committed(warehouse, args.format, args.table))
    finally:
        warehouse.close()
    return EXIT_OK


def cmd_migrate_layout(args: argparse.Namespace) -> int:
    warehouse = Warehouse.from_url(args.warehouse)
    try:
        result = migrate_layout(warehouse)
    finally:
        warehouse.close()
    for old in result.uncommitted:
        print(f"ei-supersink: migrate-layout: {old} has no commit marker, left where it is", file=sys.stderr)
    print(json.dumps({"moved": result.moved, "uncommitted": result.uncommitted}))
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    if args.action == "retry":
        return cmd_quarantine_retry(args)
    ledger = _open_ledger(args.state, must_exist=True)
    try:
        rows = ledger.quarantined(None)
    finally:
        ledger.close()
    entries = [
        {"id": r["id"], "task": r["task"], "reason": r["reason"], "state": r["state"], "bytes": len(r["body"])}
        for r in rows
    ]
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        for e in entries:
            print(f"#{e['id']} [{e['state']}] task={e['task'] or '-'}: {e['reason']}")
    return EXIT_OK


def cmd_quarantine_retry(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args.state, must_exist=True)
    try:
        held = {row["id"]: row for row in ledger.quarantined("held")}
        ids = sorted(held) if args.all else args.ids
        unknown = [i for i in ids if i not in held]
        if unknown:
            raise ConfigError(f"no held quarantine entry with id {', '.join(map(str, unknown))}")
        with open_publisher(args.broker) as publisher:
            for entry_id in ids:
                row = held[entry_id]
                headers = json.loads(row["headers"])
                publisher.send(bytes(row["body"]), headers, group=headers.get("JMSXGroupID") or row["task"])
                with ledger.transaction():
                    ledger.set_quarantine_state(entry_id, "retried")
    finally:
        ledger.close()
    print(json.dumps({"retried": ids}))
    return EXIT_OK


COMMANDS = {
    "expect": cmd_expect,
    "run": cmd_run,
    "status": cmd_status,
    "load": cmd_load,
    "reconcile": cmd_reconcile,
    "quarantine": cmd_quarantine,
    "committed": cmd_committed,
    "migrate-layout": cmd_migrate_layout,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        code, text = EXIT_USAGE, str(exc)
    except NothingToAmendError as exc:
        code, text = EXIT_OK, str(exc)
    except StoreError as exc:
        code, text = EXIT_STORE, f"store error: {exc}"
    except TransportError as exc:
        code, text = EXIT_BROKER, f"broker error: {exc}"
    except (LedgerError, WarehouseError) as exc:
        code, text = EXIT_STATE, str(exc)
    except EventIndexError as exc:
        code, text = EXIT_INTERNAL, f"error: {exc}"
    print(f"ei-supersink: {text}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
