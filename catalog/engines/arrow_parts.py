"""Part files read by pyarrow where Spark runs its Python (the executors' Python workers): how the Spark
engine reads an S3 or WebHDFS warehouse without a Hadoop connector (`--spark-reader arrow`).

A Spark Python data source (pyspark.sql.datasource, Spark 4): the driver lists the committed part
files the index leaves (the `files` option: JSON [[path, dataset], ...]), each becomes a partition, and
an executor's Python worker reads it by :func:`part_batches`: it opens the warehouse from its URL as
the supersink does (the same endpoint, CA and TLS settings; credentials from the worker's own
environment or profile, never from the driver) and streams the file's rows in the warehouse schema,
with `dataset` and `file` (the path on the warehouse filesystem) added, as `ei_data` has them.
Arrow batches go to Spark as they are: no pandas anywhere (an installed pandas would be imported by
every pyarrow user's first `pa.array`, ~0.5 CPU-s per process).

"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from eventindex.columns import WAREHOUSE_SCHEMA
from eventindex.warehouse import WarehouseReader

#: The data source's name in `spark.read.format`.
FORMAT = "eventindex_parts"
#: Rows per batch handed to Spark.
BATCH_ROWS = 65_536
#: The rows of `ei_data` as the workers stream them.
PARTS_SCHEMA = pa.schema(
    [*WAREHOUSE_SCHEMA, pa.field("dataset", pa.string(), nullable=False), pa.field("file", pa.string(), nullable=False)]
)

#: One open warehouse per URL and worker process: Spark reuses its Python workers, and opening a warehouse
#: (an S3 or HDFS client) costs more than reading a small part file.
_OPEN: dict[str, WarehouseReader] = {}

Batches = Iterator[pa.RecordBatch]


def warehouse(url: str) -> WarehouseReader:
    reader = _OPEN.get(url)
    if reader is None:
        reader = _OPEN[url] = WarehouseReader.from_url(url)
    return reader


def part_batches(fs: pafs.FileSystem, path: str, dataset: str) -> Batches:
    """A part file's rows in PARTS_SCHEMA; a column the file predates is null."""
    with fs.open_input_file(path) as stream:
        parquet = pq.ParquetFile(stream)
        present = set(parquet.schema_arrow.names)
        names = [name for name in WAREHOUSE_SCHEMA.names if name in present]
        for batch in parquet.iter_batches(BATCH_ROWS, columns=names):
            n = batch.num_rows
            columns = [
                batch.column(field.name).cast(field.type) if field.name in present else pa.nulls(n, field.type)
                for field in WAREHOUSE_SCHEMA
            ]
            where = [pa.array([dataset], pa.string()).take([0] * n), pa.array([path], pa.string()).take([0] * n)]
            yield pa.RecordBatch.from_arrays([*columns, *where], schema=PARTS_SCHEMA)


def listing(files: Sequence[tuple[str, str]]) -> str:
    """The `files` option: (path, dataset) of each part file to read."""
    return json.dumps([list(item) for item in files])


class PartsReader(DataSourceReader):
    """Reads the listed part files: one partition each."""

    def __init__(self, options: Mapping[str, str]) -> None:
        self.url = options["warehouse"]
        self.files = [(str(path), str(dataset)) for path, dataset in json.loads(options["files"])]

    def partitions(self) -> Sequence[InputPartition]:
        return [InputPartition(item) for item in self.files]

    def read(self, partition: InputPartition) -> Batches:
        path, dataset = partition.value
        yield from part_batches(warehouse(self.url).fs, path, dataset)


class PartsSource(DataSource):
    """`spark.read.format(FORMAT).option("warehouse", URL).option("files", listing(...))`."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> StructType:
        return SPARK_SCHEMA

    def reader(self, schema: StructType) -> PartsReader:
        return PartsReader(self.options)


SPARK_SCHEMA = from_arrow_schema(PARTS_SCHEMA)
