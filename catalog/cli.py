"""`ei-catalog`: ask the warehouse's committed data questions.

  ei-catalog lookup     --warehouse URL (--event RUN:EVENT ... | --events-file FILE) [--dataset GLOB]
  ei-catalog count      --warehouse URL --dataset GLOB --bits MASK:BIT[,MASK:BIT...]
                        [--runs A-B] [--lumi A-B] [--overlap] [--scan]
  ei-catalog overlap    --warehouse URL --datasets A,B[,...]
  ei-catalog duplicates --warehouse URL --dataset GLOB
  ei-catalog index      --warehouse URL [--rebuild]

Every command takes --format table|json|csv, --index PATH, --no-refresh, --engine duckdb|spark
[--master URL] [--conf KEY=VALUE] [--spark-reader arrow|hadoop] [--threads N].

Exit codes: 0 an answer (an empty one too), 1 internal error, 2 bad command line or question (unknown
dataset, malformed event list, bit out of range, bad URL), 3 the engine is missing or failed,
4 the warehouse or the index could not be read.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from catalog.bits import parse_bits
from catalog.engines import ENGINES, SPARK_READERS
from catalog.errors import CatalogIndexError, EngineError, QueryError
from catalog.keys import parse_pair, read_events_file, request_table
from catalog.output import FORMATS, render
from catalog.questions import Answer, count, dataset_overlap, duplicates, lookup
from catalog.selection import Range, refuse_damaged
from catalog.session import Session
from eventindex.errors import ConfigError, EventIndexError, StoreError, WarehouseError
from eventindex.exit_codes import OneLineParser
from eventindex.redact import redact

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_ENGINE = 3
EXIT_WAREHOUSE = 4


def _conf(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    common = OneLineParser(add_help=False)
    common.add_argument(
        "--warehouse", required=True, help="file:///dir, s3://bucket/prefix?endpoint=..., webhdfs://nn:port/path"
    )
    common.add_argument("--format", choices=FORMATS, default="table")
    common.add_argument(
        "--index", type=Path, help="the index file (default: one per warehouse under ~/.cache/eventindex/catalog)"
    )
    common.add_argument(
        "--no-refresh", action="store_true", help="answer from the index as it is, without listing the warehouse"
    )
    common.add_argument("--engine", choices=ENGINES, default="duckdb")
    common.add_argument("--master", help="Spark master URL (default local[*])")
    common.add_argument("--conf", type=_conf, action="append", default=[], metavar="KEY=VALUE", help="a Spark setting")
    common.add_argument(
        "--spark-reader",
        choices=SPARK_READERS,
        help="how Spark reads an S3 or WebHDFS warehouse: arrow (default: pyarrow on the executors, no Hadoop "
        "connector needed) or hadoop (Spark's own reader through s3a:// or webhdfs://)",
    )
    common.add_argument("--threads", type=int, help="DuckDB threads (default: one per core)")

    parser = OneLineParser(prog="ei-catalog", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    pick = sub.add_parser("lookup", parents=[common], help="event picking: where each (run, event) is")
    pick.add_argument("--event", nargs="+", action="extend", default=[], metavar="RUN:EVENT")
    # `--event -1:5` is a (bad) value, for parse_pair to refuse, not an unknown option: argparse takes what
    # this matches for a value when no option of the parser looks like a negative number
    pick._negative_number_matcher = re.compile(r"^-\d+(:-?\d+)?$|^-\d*\.\d+$")
    pick.add_argument("--events-file", help="one RUN:EVENT per line ('-': standard input)")
    pick.add_argument("--dataset", action="append", metavar="GLOB", help="only these datasets (repeatable)")
    bits = sub.add_parser("count", parents=[common], help="events per trigger bit, and pairwise overlaps")
    bits.add_argument("--dataset", action="append", required=True, metavar="GLOB")
    bits.add_argument("--bits", required=True, metavar="MASK:BIT[,MASK:BIT...]")
    bits.add_argument("--runs", metavar="A-B")
    bits.add_argument("--lumi", metavar="A-B")
    bits.add_argument("--overlap", action="store_true", help="also the events passing both bits of each pair")
    bits.add_argument(
        "--scan", action="store_true", help="read the masks even where the index holds the counts of the rows"
    )
    both = sub.add_parser("overlap", parents=[common], help="events in each dataset and in each pair")
    both.add_argument("--datasets", required=True, metavar="A,B[,...]")
    dups = sub.add_parser("duplicates", parents=[common], help="every (run, event) held more than once")
    dups.add_argument("--dataset", action="append", required=True, metavar="GLOB")
    index = sub.add_parser("index", parents=[common], help="bring the index up to date (or rebuild it)")
    index.add_argument("--rebuild", action="store_true", help="forget the index and read every marker and footer again")
    return parser


def _requests(args: argparse.Namespace) -> list[tuple[int, int]]:
    if bool(args.event) == bool(args.events_file):
        raise QueryError("lookup: give --event RUN:EVENT ... or --events-file FILE (one of them)")
    if args.events_file:
        return read_events_file(args.events_file)
    return [parse_pair(text, "--event") for item in args.event for text in item.split(",")]  # '' is no event


def _ask(session: Session, args: argparse.Namespace) -> Answer:
    if args.command == "lookup":
        requests = request_table(_requests(args))
        return lookup(session, requests, args.dataset or ["*"])
    if args.command == "count":
        runs = Range.parse(args.runs, "--runs") if args.runs else None
        lumi = Range.parse(args.lumi, "--lumi") if args.lumi else None
        return count(session, args.dataset, parse_bits(args.bits), runs, lumi, args.overlap, args.scan)
    if args.command == "overlap":
        names = [name.strip() for name in args.datasets.split(",") if name.strip()]
        if not names:
            raise QueryError("--datasets: give at least one dataset name")
        return dataset_overlap(session, names)
    if args.command == "duplicates":
        return duplicates(session, args.dataset)
    # `index` is about every dataset: a damaged task fails it (exit 4, after the others were indexed).
    report: dict[str, Any] = {**session.refresh(rebuild=args.rebuild).as_dict(), "index": str(session.index.path)}
    view = session.view()
    refuse_damaged(view.damaged, [damaged.dataset for damaged in view.damaged])
    return Answer(pa.Table.from_pylist([report]), lambda: report)


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise QueryError("--threads: give a positive number")
    if args.engine != "spark" and (args.master or args.conf or args.spark_reader):
        raise QueryError("--master, --conf and --spark-reader are Spark settings: add --engine spark")
    with Session(
        args.warehouse,
        index_path=args.index,
        refresh=not args.no_refresh,
        engine=args.engine,
        master=args.master,
        conf=dict(args.conf),
        threads=args.threads,
        spark_reader=args.spark_reader,
    ) as session:
        render(_ask(session, args), args.format, sys.stdout)
    return EXIT_OK


def _say(text: str) -> None:
    """One line on standard error, redacted: an error may echo a value given, a URL with a password in it."""
    print(f"ei-catalog: {redact(text)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="ei-catalog: %(message)s")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (one line, exit 2) and --help
        return int(exc.code or 0)
    try:
        return run(args)
    except ConfigError as exc:  # QueryError too
        _say(f"error: {exc}")
        return EXIT_USAGE
    except EngineError as exc:
        _say(f"engine: {exc}")
        return EXIT_ENGINE
    except (CatalogIndexError, WarehouseError, StoreError) as exc:
        _say(f"warehouse: {exc}")
        return EXIT_WAREHOUSE
    except EventIndexError as exc:
        _say(str(exc))
        return EXIT_INTERNAL
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line, not a traceback
        _say(f"internal error: {exc.__class__.__name__}: {exc}")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
