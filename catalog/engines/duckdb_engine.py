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

import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.fs as pafs

from catalog.engines.base import DATA_VIEW, Engine
from catalog.errors import EngineError
from catalog.index import FileEntry
from catalog.kernels import BitQuery, Tally, tally_batches
from catalog.rows import take_rows
from eventindex.errors import WarehouseError
from eventindex.warehouse import WarehouseReader

try:
    import duckdb
except ImportError as exc:  # the optional `catalog` extra
    raise EngineError(f"the DuckDB engine needs duckdb: pip install 'eventindex-collect[catalog]' ({exc})") from exc

#: Rows per Arrow batch streamed to the bit-counting kernel.
BATCH_ROWS = 1 << 20
#: A pick of more events than this reads local files in two phases (:meth:`DuckDBEngine.pick`); a smaller one
#: in one join, with the requested events pushed into the scan, which is cheaper for a few events.
TWO_PHASE_EVENTS = 1_000
#: Files read at once in the second phase of a pick (each is one DuckDB scan, on one thread).
PICK_THREADS = os.cpu_count() or 1


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parquet(listing: str, row_numbers: bool = False) -> str:
    """The rows of local part files as `ei_data` has them: the file's path as `file`, dataset and task from the
    partition directories (and, if asked, each row's position in its file as `file_row_number`)."""
    numbers = ", file_row_number = true" if row_numbers else ""
    return (
        f"SELECT * EXCLUDE (filename), filename AS file FROM read_parquet([{listing}], hive_partitioning = true, "
        f"hive_types_autocast = false, filename = true{numbers})"
    )


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, reader: WarehouseReader, *, threads: int | None = None) -> None:
        super().__init__(reader)
        config: dict[str, str | bool | int | float | list[str]] = {"threads": threads} if threads else {}
        self.threads = threads or PICK_THREADS
        self.listing: str | None = None
        self.entries: dict[str, FileEntry] = {}
        try:
            self.con = duckdb.connect(config=config)
            self.con.execute("SET parquet_metadata_cache = true")  # committed files never change
        except duckdb.Error as exc:
            raise EngineError(f"DuckDB: {exc}") from exc
        self.local = isinstance(reader.fs, pafs.LocalFileSystem)

    def use_data(self, files: Sequence[FileEntry]) -> None:
        self.entries = {self.path(f): f for f in files}
        if self.local:
            self.listing = ", ".join(_literal(self.path(f)) for f in files)
            self._run(f"CREATE OR REPLACE TEMP VIEW {DATA_VIEW} AS {_parquet(self.listing)}")
            return
        from catalog.engines.parts import Part, parts_dataset  # remote only: a local warehouse starts without it

        parts = [Part(self.path(f), f.task.dataset, f.task.task) for f in files]
        dataset = parts_dataset(self.reader.fs, parts)
        self.con.register("ei_files", dataset)
        self._run(f"CREATE OR REPLACE TEMP VIEW {DATA_VIEW} AS SELECT * FROM ei_files")

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def _run(self, sql: str) -> None:
        try:
            self.con.execute(sql)
        except duckdb.Error as exc:
            raise _failure(exc) from exc

    def query(self, sql: str) -> pa.Table:
        try:
            table: pa.Table = self.con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise _failure(exc) from exc
        except (OSError, pa.ArrowException) as exc:  # pyarrow's, reading a remote warehouse's Arrow dataset
            raise WarehouseError(f"DuckDB cannot read a data file: {_one_line(str(exc))}") from exc
        return table

    def pick(self, columns: Sequence[str], conditions: Sequence[str], requested: int) -> pa.Table:
        """Many events from local files in two phases: where the requested rows are (a scan of the run and
        event columns only, semi-joined with the requests), then all the columns of those rows, file by file
        on several threads, by pyarrow from the row groups holding them, with the provenance strings read as
        dictionaries (catalog.rows). A single join carrying every column would build each scanned row's
        provenance list before matching it; DuckDB reading the files again with their wanted row numbers
        (a semi-join) decoded every string of the row groups, taking 1.3x the CPU time."""
        if not self.local or self.listing is None or requested <= TWO_PHASE_EVENTS:
            return super().pick(columns, conditions, requested)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        found = self.query(
            f"SELECT d.file, d.file_row_number FROM ({_parquet(self.listing, row_numbers=True)}) d SEMI JOIN "
            f"ei_requests r ON d.run_number = r.run_number AND d.event_number = r.event_number{where}"
        )
        rows: dict[str, list[int]] = defaultdict(list)
        for path, number in zip(
            found.column("file").to_pylist(), found.column("file_row_number").to_pylist(), strict=True
        ):
            rows[path].append(number)
        select = ", ".join(f"d.{c}" for c in columns)
        if not rows:
            return self.query(f"SELECT {select} FROM {DATA_VIEW} d LIMIT 0")

        stored = [c for c in columns if c not in ("dataset", "file")]

        def read(path: str) -> pa.Table:
            entry = self.entries[path]
            table = take_rows(self.reader.fs, path, sorted(rows[path]), stored)
            n = table.num_rows
            table = table.set_column(table.schema.get_field_index("task"), "task", pa.array([entry.task.task] * n))
            table = table.append_column("dataset", pa.array([entry.task.dataset] * n))
            return table.append_column("file", pa.array([path] * n)).select(list(columns))

        try:
            with ThreadPoolExecutor(min(self.threads, len(rows))) as pool:
                return pa.concat_tables(pool.map(read, sorted(rows)))
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise WarehouseError(f"reading the picked rows: {_one_line(str(exc))}") from exc

    def tally(self, sql: str, query: BitQuery) -> Tally:
        try:
            return tally_batches(self.con.sql(sql).to_arrow_reader(BATCH_ROWS), query)
        except duckdb.Error as exc:
            raise _failure(exc) from exc
        except (OSError, pa.ArrowException) as exc:
            # The batches streamed back: a remote warehouse's file that pyarrow cannot open or read fails the stream
            # with OSError (pyarrow's IOError, not an ArrowException), naming the file.
            raise WarehouseError(f"DuckDB cannot read a data file: {_one_line(str(exc))}") from exc

    def close(self) -> None:
        self.con.close()


def _failure(exc: Exception) -> EngineError | WarehouseError:
    """DuckDB's error as ours: a data file it could not open or read (missing, not Parquet, damaged) is the
    warehouse's problem (ei-catalog exit 4, as when the index reads the same file); the rest the engine's."""
    if isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)):
        return WarehouseError(f"DuckDB cannot read a data file: {_first_line(exc)}")
    return EngineError(f"DuckDB: {_first_line(exc)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
