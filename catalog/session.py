"""A catalogue session: a warehouse, its index (brought up to date once) and an engine (started when needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from catalog.engines import Engine, open_engine
from catalog.index import CatalogIndex, IndexView, RefreshReport, default_index_path
from eventindex.warehouse import WarehouseReader


class Session:
    """Open with the warehouse URL; `refresh=False` answers from the index as it is (no listing: questions need an
    index built before, which may be read-only; an explicit :meth:`refresh` builds or updates it)."""

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
                create_parent=index_path is None, refresh=refresh,
            )  # fmt: skip
        except BaseException:
            self.reader.close()
            raise
        self.refresh_first = refresh
        #: The dataset globs the index was brought up to date for in this session (None in it: every dataset).
        self._refreshed: set[str | None] = set()
        self.engine_name, self.master, self.conf, self.threads = engine, master, dict(conf or {}), threads
        self.spark_reader = spark_reader
        self._view: IndexView | None = None
        self._engine: Engine | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def refresh(self, dataset_globs: str | Sequence[str] | None = None, *, rebuild: bool = False) -> RefreshReport:
        """Bring the index up to date with the warehouse's commits (those of datasets matching the globs; None:
        all); `rebuild` forgets everything first, in the same transaction."""
        globs = [dataset_globs] if isinstance(dataset_globs, str) else dataset_globs
        report = self.index.refresh(self.reader, globs, rebuild=rebuild)
        self._refreshed.update([None] if globs is None or "*" in globs else globs)
        self._view = None
        return report

    def view(self, dataset_globs: Sequence[str] | None = None) -> IndexView:
        """The index, brought up to date first for the datasets a question is about (matching the globs; None:
        all), once per session, unless the session says not to. Other datasets are not listed: a question is not
        slowed down, nor failed, by what happens in datasets it does not ask about."""
        covered = None in self._refreshed or (dataset_globs is not None and set(dataset_globs) <= self._refreshed)
        if self.refresh_first and not covered:
            self.refresh(dataset_globs)
        if self._view is None:
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
