"""DuckDB, embedded: reads the committed part files with its own Parquet reader.

Local files are read directly. Files on S3 or WebHDFS are read through the warehouse's own pyarrow
filesystem (the one the supersink writes with: same endpoint, CA and credentials from the
environment), handed to DuckDB as an fsspec filesystem under the `eiwarehouse://` protocol; DuckDB
needs no extension and no credentials of its own.

DuckDB pushes the questions' conditions into the scan: row groups whose statistics exclude them
are skipped, and within a row group only the vectors holding wanted rows are decoded (a join with
one requested event reads a few thousand rows of a 131,072-row group).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from catalog.engines.base import DATA_VIEW, Engine
from catalog.errors import EngineError
from catalog.index import FileEntry
from catalog.kernels import BitQuery, Tally, tally_batches
from eventindex.warehouse import WarehouseReader

try:
    import duckdb
    from fsspec.implementations.arrow import ArrowFSWrapper
except ImportError as exc:  # the optional `catalog` extra
    raise EngineError(
        f"the DuckDB engine needs duckdb and fsspec: pip install 'eventindex-collect[catalog]' ({exc})"
    ) from exc

PROTOCOL = "eiwarehouse"
#: Rows per Arrow batch streamed to the bit-counting kernel.
BATCH_ROWS = 1 << 20


class WarehouseFileSystem(ArrowFSWrapper):  # type: ignore[misc]
    """A pyarrow filesystem as fsspec, under `eiwarehouse://` + its own paths."""

    protocol = PROTOCOL

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        prefix = f"{PROTOCOL}://"
        if isinstance(path, str) and path.startswith(prefix):
            return path[len(prefix) :]
        return path


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, reader: WarehouseReader, *, threads: int | None = None) -> None:
        super().__init__(reader)
        config: dict[str, str | bool | int | float | list[str]] = {"threads": threads} if threads else {}
        try:
            self.con = duckdb.connect(config=config)
            if isinstance(reader.fs, pafs.LocalFileSystem):
                self.prefix = ""
            else:
                self.con.register_filesystem(WarehouseFileSystem(reader.fs))
                self.prefix = f"{PROTOCOL}://"
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB: {exc}") from exc

    def use_data(self, files: Sequence[FileEntry]) -> None:
        listing = ", ".join(_literal(self.prefix + self.path(f)) for f in files)
        self._run(
            f"CREATE OR REPLACE TEMP VIEW {DATA_VIEW} AS SELECT * EXCLUDE (filename), filename AS file "
            f"FROM read_parquet([{listing}], hive_partitioning = true, hive_types_autocast = false, filename = true)"
        )

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def _run(self, sql: str) -> None:
        try:
            self.con.execute(sql)
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB: {_first_line(exc)}") from exc

    def query(self, sql: str) -> pa.Table:
        try:
            table: pa.Table = self.con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB: {_first_line(exc)}") from exc
        return table

    def tally(self, sql: str, query: BitQuery) -> Tally:
        try:
            return tally_batches(self.con.sql(sql).to_arrow_reader(BATCH_ROWS), query)
        except (duckdb.Error, pa.ArrowException) as exc:
            raise EngineError(f"DuckDB: {_first_line(exc)}") from exc

    def close(self) -> None:
        self.con.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
