"""DuckDB, embedded.

Local files are read by DuckDB's own Parquet reader, which takes the questions' conditions into the
scan: row groups whose statistics exclude them are skipped, and within a row group only the vectors
holding wanted rows are decoded (a join with one requested event reads a few thousand rows of a
131,072-row group).

Files on S3 or WebHDFS are read by pyarrow through the warehouse's own filesystem (the one the
supersink writes with: same endpoint, CA and credentials from the environment) as an Arrow dataset
DuckDB scans, pushing its projections and filters into pyarrow (row groups are skipped by their
statistics there too). DuckDB needs no extension and no credentials of its own. (DuckDB's fsspec
bridge was tried and dropped: it returned corrupt reads, even on one thread.)
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from catalog.engines.base import DATA_VIEW, Engine
from catalog.errors import EngineError
from catalog.index import FileEntry
from catalog.kernels import BitQuery, Tally, tally_batches
from eventindex.columns import WAREHOUSE_SCHEMA
from eventindex.warehouse import WarehouseReader

try:
    import duckdb
except ImportError as exc:  # the optional `catalog` extra
    raise EngineError(f"the DuckDB engine needs duckdb: pip install 'eventindex-collect[catalog]' ({exc})") from exc

#: Rows per Arrow batch streamed to the bit-counting kernel.
BATCH_ROWS = 1 << 20
#: The columns of a remote warehouse's rows: the files' own, and dataset, task and file from where each file is.
REMOTE_SCHEMA = pa.schema([*WAREHOUSE_SCHEMA, pa.field("dataset", pa.string()), pa.field("file", pa.string())])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, reader: WarehouseReader, *, threads: int | None = None) -> None:
        super().__init__(reader)
        config: dict[str, str | bool | int | float | list[str]] = {"threads": threads} if threads else {}
        try:
            self.con = duckdb.connect(config=config)
            self.con.execute("SET parquet_metadata_cache = true")  # committed files never change
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB: {exc}") from exc
        self.local = isinstance(reader.fs, pafs.LocalFileSystem)

    def use_data(self, files: Sequence[FileEntry]) -> None:
        if self.local:
            listing = ", ".join(_literal(self.path(f)) for f in files)
            self._run(
                f"CREATE OR REPLACE TEMP VIEW {DATA_VIEW} AS SELECT * EXCLUDE (filename), filename AS file FROM "
                f"read_parquet([{listing}], hive_partitioning = true, hive_types_autocast = false, filename = true)"
            )
            return
        paths = [self.path(f) for f in files]
        where = [
            (pc.field("dataset") == f.task.dataset) & (pc.field("task") == f.task.task) & (pc.field("file") == path)
            for f, path in zip(files, paths, strict=True)
        ]
        dataset = pads.FileSystemDataset.from_paths(
            paths, schema=REMOTE_SCHEMA, format=pads.ParquetFileFormat(), filesystem=self.reader.fs, partitions=where
        )
        self.con.register("ei_files", dataset)
        self._run(f"CREATE OR REPLACE TEMP VIEW {DATA_VIEW} AS SELECT * FROM ei_files")

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
