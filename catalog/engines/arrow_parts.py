"""Part files read by pyarrow where Spark runs its Python (the executors' Python workers): how the Spark
engine reads an S3 or WebHDFS warehouse without a Hadoop connector (`--spark-reader arrow`).

A Spark Python data source (pyspark.sql.datasource, Spark 4): the driver lists the committed part
files the index leaves (the `files` option: JSON [[path, dataset, task], ...]), each becomes a
partition, and an executor's Python worker reads it as DuckDB reads a remote warehouse
(catalog.engines.parts): it opens the warehouse from its URL as the supersink does (the same
endpoint, CA and TLS settings; credentials from the worker's own environment or profile, never from
the driver) and streams the file's rows as `ei_data` has them. Arrow batches go to Spark as they
are: no pandas anywhere (an installed pandas would be imported by every pyarrow user's first
`pa.array`, ~0.5 CPU-s per process).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from catalog.engines.parts import DATA_SCHEMA, Part, parts_dataset
from eventindex.warehouse import WarehouseReader

#: The data source's name in `spark.read.format`.
FORMAT = "eventindex_parts"
#: Rows per batch handed to Spark.
BATCH_ROWS = 65_536
#: The rows of `ei_data` as Spark has them.
SPARK_SCHEMA = from_arrow_schema(DATA_SCHEMA)

#: One open warehouse per URL and worker process: Spark reuses its Python workers, and opening a warehouse
#: (an S3 or HDFS client) costs more than reading a small part file.
_OPEN: dict[str, WarehouseReader] = {}


def warehouse(url: str) -> WarehouseReader:
    reader = _OPEN.get(url)
    if reader is None:
        reader = _OPEN[url] = WarehouseReader.from_url(url)
    return reader


def listing(parts: Sequence[Part]) -> str:
    """The `files` option: the part files to read."""
    return json.dumps([list(part) for part in parts])


class PartUnreadableError(Exception):
    """A part file a Python worker could not read (missing, not Parquet, damaged, access refused). Its name is
    how the driver tells the warehouse's failure from the engine's in the text Spark passes on."""


class PartsReader(DataSourceReader):
    """Reads the listed part files: one partition each."""

    def __init__(self, options: Mapping[str, str]) -> None:
        self.url = options["warehouse"]
        self.parts = [Part(*map(str, item)) for item in json.loads(options["files"])]

    def partitions(self) -> Sequence[InputPartition]:
        return [InputPartition(part) for part in self.parts]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        part = Part(*partition.value)
        try:
            yield from parts_dataset(warehouse(self.url).fs, [part]).to_batches(batch_size=BATCH_ROWS)
        except (OSError, pa.ArrowException) as exc:
            raise PartUnreadableError(f"{part.path}: {' '.join(str(exc).split())}") from exc


class PartsSource(DataSource):
    """`spark.read.format(FORMAT).option("warehouse", URL).option("files", listing(...))`."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> StructType:
        return SPARK_SCHEMA

    def reader(self, schema: StructType) -> PartsReader:
        return PartsReader(self.options)
