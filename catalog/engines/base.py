"""What an engine does for the questions: a view of committed files, Arrow tables in, SQL, Arrow out.

The questions (catalog.questions) are written once, in SQL both engines run, over:
- `ei_data`: the rows of the committed files given to :meth:`Engine.use_data`, every warehouse column
  plus `dataset` and `task` (from the partition directories) and `file` (the part file's path);
- tables registered from Arrow (:meth:`Engine.register`), such as the requested events.
Trigger bits are counted by the Arrow kernel (catalog.kernels) on the rows a query selects, in this
process (DuckDB) or on the executors (Spark).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import pyarrow as pa

from catalog.index import FileEntry
from catalog.kernels import BitQuery, Tally
from eventindex.warehouse import WarehouseReader

DATA_VIEW = "ei_data"
#: How the Spark engine reads an S3 or WebHDFS warehouse (catalog.engines.spark_engine); the default is the first.
SPARK_READERS = ("arrow", "hadoop")


class Engine(ABC):
    name: str

    def __init__(self, reader: WarehouseReader) -> None:
        self.reader = reader

    def path(self, entry: FileEntry) -> str:
        """The file's path on the warehouse filesystem."""
        return f"{self.reader.task_dir(entry.task.dataset, entry.task.task)}/{entry.name}"

    @abstractmethod
    def use_data(self, files: Sequence[FileEntry]) -> None:
        """(Re)define the view `ei_data` over these committed files (at least one)."""

    @abstractmethod
    def register(self, name: str, table: pa.Table) -> None:
        """Make an Arrow table available to queries under `name`."""

    @abstractmethod
    def query(self, sql: str) -> pa.Table:
        """Run a query; its rows as Arrow."""

    def pick(self, columns: Sequence[str], conditions: Sequence[str], requested: int) -> pa.Table:
        """The rows of `ei_data` whose (run, event) is in the registered table `ei_requests` (`requested` rows):
        their `columns`. `conditions` (SQL on `d`, the data) narrow the scan to the requested runs and events."""
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return self.query(
            f"SELECT /*+ BROADCAST(r) */ {', '.join(f'd.{c}' for c in columns)} FROM {DATA_VIEW} d JOIN ei_requests r "
            f"ON d.run_number = r.run_number AND d.event_number = r.event_number{where}"
        )

    @abstractmethod
    def tally(self, sql: str, query: BitQuery) -> Tally:
        """Count the query's bits over the rows `sql` selects (which holds the query's mask columns)."""

    @abstractmethod
    def close(self) -> None: ...
