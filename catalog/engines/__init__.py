"""The query engines: DuckDB (embedded, the default) and Spark (`--engine spark [--master URL]`)."""

from __future__ import annotations

from collections.abc import Mapping

from catalog.engines.base import DATA_VIEW, SPARK_READERS, Engine
from catalog.errors import QueryError
from eventindex.warehouse import WarehouseReader

ENGINES = ("duckdb", "spark")

__all__ = ["DATA_VIEW", "ENGINES", "SPARK_READERS", "Engine", "open_engine"]


def open_engine(
    name: str,
    reader: WarehouseReader,
    *,
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    threads: int | None = None,
    spark_reader: str | None = None,
) -> Engine:
    """Start the named engine over a warehouse."""
    if name == "duckdb":
        from catalog.engines.duckdb_engine import DuckDBEngine

        return DuckDBEngine(reader, threads=threads)
    if name == "spark":
        from catalog.engines.spark_engine import SparkEngine

        return SparkEngine(reader, master=master, conf=conf or {}, read_with=spark_reader)
    raise QueryError(f"engine {name!r}: choose one of {', '.join(ENGINES)}")
