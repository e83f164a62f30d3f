"""Part files read by pyarrow where Spark runs its Python (the executors' Python workers): how the Spark
engine reads an S3 or WebHDFS warehouse without a Hadoop connector (`--spark-reader arrow`).

The driver makes a DataFrame of (path, dataset) rows, one partition per part file, and
`DataFrame.mapInArrow` runs :func:`read_parts` on them: each worker opens the warehouse from its URL,
as the supersink does (the same endpoint, CA and TLS settings; credentials from the worker's own
environment or profile, never from the driver), and streams the files' rows in the warehouse schema
with `dataset` and `file` (the path on the warehouse filesystem) added, as `ei_data` has them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from eventindex.columns import WAREHOUSE_SCHEMA
from eventindex.warehouse import WarehouseReader

#: Rows per batch handed to Spark.
BATCH_ROWS = 65_536
#: The rows of `ei_data` as the workers stream them.
PARTS_SCHEMA = pa.schema(
    [*WAREHOUSE_SCHEMA, pa.field("dataset", pa.string(), nullable=False), pa.field("file", pa.string(), nullable=False)]
)
#: The listing the workers read: one row per part file.
LISTING_SCHEMA = "path string, dataset string"

#: One open warehouse per URL and worker process: Spark reuses its Python workers, and opening a warehouse
#: (an S3 or HDFS client) costs more than reading a small part file.
_OPEN: dict[str, WarehouseReader] = {}

Batches = Iterator[pa.RecordBatch]


def read_parts(url: str) -> Callable[[Batches], Batches]:
    """What `mapInArrow` runs on batches of listing rows: the rows of the part files they name."""

    def read(listing: Batches) -> Batches:
        reader = _OPEN.get(url)
        if reader is None:
            reader = _OPEN[url] = WarehouseReader.from_url(url)
        for batch in listing:
            paths, datasets = batch.column("path").to_pylist(), batch.column("dataset").to_pylist()
            for path, dataset in zip(paths, datasets, strict=True):
                yield from part_batches(reader.fs, path, dataset)

    return read


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
