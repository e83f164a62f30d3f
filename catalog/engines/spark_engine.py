"""Spark (pyspark): the same questions as DataFrames over the committed files, for catalogues larger than
one machine. `--master` is `local[*]` by default, or a cluster's master URL.

Spark reads a local warehouse itself (`file://`). An S3 or WebHDFS warehouse is read one of two ways
(`reader`, the command line's `--spark-reader`):
- `arrow` (the default): the executors' Python workers read the part files with pyarrow through the
  warehouse's own filesystem (catalog.engines.arrow_parts), as the supersink and DuckDB do, so a
  pip-installed pyspark needs no Hadoop connector; the workers take credentials from their own
  environment or profile. Spark pushes no filter or projection into this scan.
- `hadoop`: Spark's own Parquet reader through Hadoop filesystems, `s3a://` (needs the hadoop-aws
  connector and its settings on the cluster or as `--conf` options) or `webhdfs://` / `swebhdfs://`
  (the first namenode of the URL), with its filter and column pushdown.
Partition values are read as strings (`dataset`, `task`), never as numbers.

Trigger bits are tested in Spark SQL on the executors (no Python there): the rows are grouped by
the pattern of their requested bits, and the driver turns that histogram into counts and overlaps
(catalog.kernels.tally_patterns), in one pass over the data.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from catalog.engines.arrow_parts import FORMAT, SPARK_SCHEMA, PartsSource, listing
from catalog.engines.base import DATA_VIEW, SPARK_READERS, Engine
from catalog.engines.parts import Part
from catalog.errors import EngineError, QueryError
from catalog.index import FileEntry
from catalog.kernels import PATTERN_BITS, BitQuery, Tally, tally_patterns
from eventindex.errors import WarehouseError
from eventindex.warehouse import WarehouseReader

try:
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
except ImportError as exc:  # the optional `spark` extra
    raise EngineError(f"the Spark engine needs pyspark: pip install 'eventindex-collect[spark]' ({exc})") from exc

DEFAULT_MASTER = "local[*]"
#: Settings the engine needs; `--conf` may change the others.
SETTINGS = {
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
}
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}",
}
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

    def __init__(
        self, reader: WarehouseReader, *, master: str | None, conf: Mapping[str, str], read_with: str | None = None
    ) -> None:
        super().__init__(reader)
        if read_with not in (None, *SPARK_READERS):
            raise QueryError(f"--spark-reader {read_with!r}: choose one of {', '.join(SPARK_READERS)}")
        self.arrow = not isinstance(reader.fs, pafs.LocalFileSystem) and (read_with or "arrow") == "arrow"
        if not _java():
            raise EngineError("the Spark engine needs a Java runtime (java on PATH, or JAVA_HOME)")
        master = master or DEFAULT_MASTER
        settings = {**DEFAULTS, **(LOCAL_DEFAULTS if master.startswith("local") else {}), **conf, **SETTINGS}
        builder = SparkSession.builder.master(master).appName("ei-catalog")
        for key, value in settings.items():
            builder = builder.config(key, value)
        self._owned = SparkSession.getActiveSession() is None  # else: the caller's session, left running
        try:
            self.spark = builder.getOrCreate()
        except _SPARK_ERRORS as exc:
            raise EngineError(f"Spark did not start ({master}): {_first_line(exc)}") from exc
        if master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
            # A local master's Python workers run on this machine: with this interpreter and its packages
            # (pyspark's default is the `python3` on PATH).
            self.spark.sparkContext.pythonExec = sys.executable
        if self.arrow:
            try:
                self.spark.dataSource.register(PartsSource)
            except _SPARK_ERRORS as exc:
                raise _failure(exc) from exc

    def use_data(self, files: Sequence[FileEntry]) -> None:
        try:
            if self.arrow:
                files_option = listing([Part(self.path(f), f.task.dataset, f.task.task) for f in files])
                read = self.spark.read.format(FORMAT).schema(SPARK_SCHEMA).option("warehouse", self.reader.url)
                read.option("files", files_option).load().createOrReplaceTempView(DATA_VIEW)
                return
            urls = [hadoop_url(self.reader, self.path(f)) for f in files]
            frame = self.spark.read.option("basePath", hadoop_url(self.reader, self.reader.root)).parquet(*urls)
            frame.select("*", F.col("_metadata.file_path").alias("file")).createOrReplaceTempView(DATA_VIEW)
        except _SPARK_ERRORS as exc:
            raise _failure(exc) from exc

    def register(self, name: str, table: pa.Table) -> None:
        try:
            self.spark.createDataFrame(table).createOrReplaceTempView(name)
        except _SPARK_ERRORS as exc:
            raise _failure(exc) from exc

    def query(self, sql: str) -> pa.Table:
        try:
            table: pa.Table = self.spark.sql(sql).toArrow()
        except _SPARK_ERRORS as exc:
            raise _failure(exc) from exc
        return table

    def tally(self, sql: str, query: BitQuery) -> Tally:
        words = _pattern_words(query)
        names = [f"w{i}" for i in range(len(words))]
        selects = ", ".join(f"{word} AS {name}" for word, name in zip(words, names, strict=True))
        grouped = ", ".join(names)
        try:
            table = self.spark.sql(
                f"SELECT {grouped}, count(*) AS n FROM (SELECT {selects} FROM ({sql}) AS q) AS p GROUP BY {grouped}"
            ).toArrow()
        except _SPARK_ERRORS as exc:
            raise _failure(exc) from exc
        columns = [table.column(name).to_numpy(zero_copy_only=False) for name in names]
        matrix = np.stack(columns, axis=1) if columns else np.zeros((table.num_rows, 0), np.int64)
        return tally_patterns(matrix, table.column("n").to_numpy(zero_copy_only=False), query)

    def close(self) -> None:
        if self._owned:
            self.spark.stop()


def _bit(mask: str, bit: int) -> str:
    """Spark SQL for bit `bit` of a mask (bit i % 8 of byte i // 8): 0 or 1, 0 where the mask is null or shorter."""
    byte = f"conv(hex(substring({mask}, {bit // 8 + 1}, 1)), 16, 10)"
    return f"coalesce(shiftright(cast({byte} AS INT), {bit % 8}) & 1, 0)"


def _pattern_words(query: BitQuery) -> list[str]:
    """Spark SQL for the words of a row's bit pattern: bit i of the query is bit i % 63 of word i // 63."""
    words = []
    for start in range(0, len(query.bits), PATTERN_BITS):
        terms = [
            f"shiftleft(cast({_bit(*bit)} AS BIGINT), {i - start})"
            for i, bit in enumerate(query.bits[start : start + PATTERN_BITS], start)
            if bit is not None
        ]
        words.append(" | ".join(terms) if terms else "cast(0 AS BIGINT)")
    return words


#: In the text of a Spark failure: a data file could not be read (Spark's own reader's error class, or the
#: arrow reader's Python exception).
_READ_FAILURES = ("FAILED_READ_FILE", "PartUnreadableError")
_PART_UNREADABLE = re.compile(r"(?:[\w.]+\.)?PartUnreadableError: (.+)")


def _failure(exc: Exception) -> EngineError | WarehouseError:
    """Spark's error as ours: a part file that could not be read is the warehouse's problem (ei-catalog exit 4,
    as with DuckDB); the rest the engine's."""
    if any(marker in str(exc) for marker in _READ_FAILURES):
        return WarehouseError(f"Spark cannot read a data file: {_read_failure(exc)}")
    return EngineError(f"Spark: {_first_line(exc)}")


def _read_failure(exc: Exception) -> str:
    """What Spark says of a part it could not read (the file, and the first cause), not the driver's wrapper."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        # The arrow reader's exception, as the worker's traceback ends: `<module>.PartUnreadableError: <file>: <why>`
        # (the traceback's lines before it quote the source line raising it, which names no file).
        found = _PART_UNREADABLE.match(line)
        if found is not None:
            return " ".join(found.group(1).split())
    found_line = next((line for line in lines if "FAILED_READ_FILE" in line), None)
    if found_line is not None:  # Spark's own reader
        marker = "[FAILED_READ_FILE"
        text = found_line[found_line.index(marker) :] if marker in found_line else found_line
        causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
        cause = next((line for line in causes if "FAILED_READ_FILE" not in line), None)
        return " ".join((f"{text} ({cause})" if cause else text).split())
    return _first_line(exc)


def _first_line(exc: Exception) -> str:
    """The error in one line: for a Java exception behind py4j, the Java exception and its message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    if lines[0].startswith("An error occurred while calling") and len(lines) > 1:
        return lines[1].lstrip(": ")
    if "Traceback (most recent call last):" in lines:  # a Python worker's: its exception, the traceback's last line
        traceback = lines[lines.index("Traceback (most recent call last):") + 1 :]
        end = next((i for i, line in enumerate(traceback) if line.startswith(("at ", "JVM stacktrace"))), None)
        traceback = traceback[:end]
        if traceback:
            return f"{lines[0].rstrip(':')}: {traceback[-1]}"
    return lines[0]
