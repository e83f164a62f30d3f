"""Spark (pyspark): the same questions as DataFrames over the committed files, for catalogues larger than
one machine. `--master` is `local[*]` by default, or a cluster's master URL.

Spark reads the files itself, through Hadoop filesystems: `file://` for a local warehouse,
`webhdfs://` / `swebhdfs://` (the first namenode of the URL) for HDFS, and `s3a://` for S3, which
needs the hadoop-aws connector and its settings (endpoint, credentials provider) on the cluster or as
`--conf` options. Partition values are read as strings (`dataset`, `task`), never as numbers.

Trigger bits are counted on the executors by the Arrow kernel (catalog.kernels, shipped by value
through `mapInArrow`); each partition returns its tally and the driver adds them up.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from catalog import kernels
from catalog.engines.base import DATA_VIEW, Engine
from catalog.errors import EngineError
from catalog.index import FileEntry
from catalog.kernels import BitQuery, Tally, tally_partition, tally_rows
from eventindex.warehouse import WarehouseReader

try:
    from py4j.protocol import Py4JError
    from pyspark import cloudpickle
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
except ImportError as exc:  # the optional `spark` extra
    raise EngineError(f"the Spark engine needs pyspark: pip install 'eventindex-collect[spark]' ({exc})") from exc

DEFAULT_MASTER = "local[*]"
TALLY_DDL = "events BIGINT, counts ARRAY<BIGINT>, pairs ARRAY<BIGINT>"
#: Settings the engine needs; `--conf` may change the others.
SETTINGS = {
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
}
DEFAULTS = {"spark.ui.enabled": "false", "spark.log.level": "ERROR"}
LOCAL_DEFAULTS = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
_SPARK_ERRORS = (PySparkException, Py4JError)


def hadoop_url(reader: WarehouseReader, path: str) -> str:
    """A path on the warehouse's filesystem as the URL Hadoop filesystems open."""
    if isinstance(reader.fs, pafs.LocalFileSystem):
        return f"file://{path}"
    if isinstance(reader.fs, pafs.S3FileSystem):
        return f"s3a://{path}"
    parts = urlsplit(reader.url)  # webhdfs://nn1:9870,nn2:9870/path: the first namenode
    return f"{parts.scheme}://{parts.netloc.split(',')[0]}{path}"


def _java() -> bool:
    home = os.environ.get("JAVA_HOME")
    return bool(home and os.path.exists(os.path.join(home, "bin", "java"))) or shutil.which("java") is not None


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, reader: WarehouseReader, *, master: str | None, conf: Mapping[str, str]) -> None:
        super().__init__(reader)
        if not _java():
            raise EngineError("the Spark engine needs a Java runtime (java on PATH, or JAVA_HOME)")
        master = master or DEFAULT_MASTER
        settings = {**DEFAULTS, **(LOCAL_DEFAULTS if master.startswith("local") else {}), **conf, **SETTINGS}
        builder = SparkSession.builder.master(master).appName("ei-catalog")
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            self.spark = builder.getOrCreate()
        except _SPARK_ERRORS as exc:
            raise EngineError(f"Spark did not start ({master}): {_first_line(exc)}") from exc
        cloudpickle.register_pickle_by_value(kernels)  # type: ignore[no-untyped-call]  # executors need not install it

    def use_data(self, files: Sequence[FileEntry]) -> None:
        urls = [hadoop_url(self.reader, self.path(f)) for f in files]
        try:
            frame = self.spark.read.option("basePath", hadoop_url(self.reader, self.reader.root)).parquet(*urls)
            frame.select("*", F.col("_metadata.file_path").alias("file")).createOrReplaceTempView(DATA_VIEW)
        except _SPARK_ERRORS as exc:
            raise EngineError(f"Spark: {_first_line(exc)}") from exc

    def register(self, name: str, table: pa.Table) -> None:
        try:
            self.spark.createDataFrame(table).createOrReplaceTempView(name)
        except _SPARK_ERRORS as exc:
            raise EngineError(f"Spark: {_first_line(exc)}") from exc

    def query(self, sql: str) -> pa.Table:
        try:
            table: pa.Table = self.spark.sql(sql).toArrow()
        except _SPARK_ERRORS as exc:
            raise EngineError(f"Spark: {_first_line(exc)}") from exc
        return table

    def tally(self, sql: str, query: BitQuery) -> Tally:
        try:
            rows: list[Any] = self.spark.sql(sql).mapInArrow(tally_partition(query), TALLY_DDL).collect()
        except _SPARK_ERRORS as exc:
            raise EngineError(f"Spark: {_first_line(exc)}") from exc
        return tally_rows([(row.events, row.counts, row.pairs) for row in rows], query)

    def close(self) -> None:
        self.spark.stop()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
