"""A catalogue session: a warehouse, its index (brought up to date once) and an engine (started when needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from catalog.engines import Engine, open_engine
from catalog.index import CatalogIndex, IndexView, RefreshReport, default_index_path
from eventindex.warehouse import WarehouseReader


class Session:
    """Open with the warehouse URL; `refresh=False` answers from the index as it is (no listing)."""

    def __init__(
        self,
        warehouse_url: str,
        *,
        index_path: Path | None = None,
        refresh: bool = True,
        engine: str = "duckdb",
        master: str | None = None,
        conf: Mapping[str, str] | None = None,
        threads: int | None = None,
        spark_reader: str | None = None,
    ) -> None:
        self.reader = WarehouseReader.from_url(warehouse_url)
        try:
            self.index = CatalogIndex(
                index_path or default_index_path(self.reader.url), self.reader.url, self.reader,
                create_parent=index_path is None,
            )  # fmt: skip
        except BaseException:
            self.reader.close()
            raise
        self.refresh_first = refresh
        self.engine_name, self.master, self.conf, self.threads = engine, master, dict(conf or {}), threads
        self.spark_reader = spark_reader
        self._view: IndexView | None = None
        self._engine: Engine | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def refresh(self, dataset_glob: str | None = None) -> RefreshReport:
        """Bring the index up to date with the warehouse's commits (those of matching datasets)."""
        report = self.index.refresh(self.reader, dataset_glob)
        self._view = None
        return report

    def view(self) -> IndexView:
        """The index, brought up to date first (once per session) unless the session says not to."""
        if self._view is None:
            if self.refresh_first:
                self.refresh()
                self.refresh_first = False
            self._view = self.index.load()
        return self._view

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(
                self.engine_name,
                self.reader,
                master=self.master,
                conf=self.conf,
                threads=self.threads,
                spark_reader=self.spark_reader,
            )
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.index.close()
        self.reader.close()
