"""`ei-supersink committed`: the reader-side view of a warehouse, from its commit markers only.

On a filesystem that renames (local, HDFS) the partition tree holds committed parts only, so any
reader may point at the root. On S3 a part is visible as soon as its upload completes, before its
task commits; readers there take the committed files from the markers, which is what this lists:

- `paths`: one committed part file per line (the marker's files and every amendment's);
- `json`: one object per committed task (dataset, task, rows, partial, files, directory);
- `spark-sql`: DDL that creates a partitioned table over the warehouse and registers each
  committed task as a partition, so Spark (or Hive) reads committed tasks only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from eventindex.columns import WAREHOUSE_SCHEMA
from eventindex.errors import ConfigError
from eventindex.warehouse import DATASET_KEY, TASK_KEY, CommittedTask, WarehouseReader

FORMATS = ("paths", "json", "spark-sql")
DEFAULT_TABLE = "eventindex"


def _spark_type(typ: pa.DataType) -> str:
    if pa.types.is_int64(typ):
        return "BIGINT"
    if pa.types.is_int32(typ):
        return "INT"
    if pa.types.is_float32(typ):
        return "FLOAT"
    if pa.types.is_float64(typ):
        return "DOUBLE"
    if pa.types.is_boolean(typ):
        return "BOOLEAN"
    if pa.types.is_binary(typ):
        return "BINARY"
    if pa.types.is_string(typ):
        return "STRING"
    if pa.types.is_list(typ):
        return f"ARRAY<{_spark_type(typ.value_type)}>"
    if pa.types.is_struct(typ):
        return "STRUCT<" + ", ".join(f"{f.name}: {_spark_type(f.type)}" for f in typ) + ">"
    raise ConfigError(f"no Spark SQL type for {typ}")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hadoop_location(warehouse: WarehouseReader, path: str) -> str:
    """A path on the warehouse's filesystem as a URL Hadoop-based readers (Spark, Hive) open."""
    if isinstance(warehouse.fs, pafs.LocalFileSystem):
        return f"file://{path}"
    if isinstance(warehouse.fs, pafs.S3FileSystem):
        return f"s3a://{path}"
    parts = urlsplit(warehouse.url)  # webhdfs://nn1:9870,nn2:9870/path: the first namenode
    return f"{parts.scheme}://{parts.netloc.split(',')[0]}{path}"


def spark_sql(warehouse: WarehouseReader, tasks: Iterable[CommittedTask], table: str = DEFAULT_TABLE) -> str:
    """DDL for a table over the warehouse with only the committed tasks as partitions."""
    if not table.replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"table name {table!r}: letters, digits, '_' and one '.' only")
    data = [f for f in WAREHOUSE_SCHEMA if f.name != TASK_KEY]
    columns = [f"  `{f.name}` {_spark_type(f.type)}" for f in data]
    columns += [f"  `{DATASET_KEY}` STRING", f"  `{TASK_KEY}` STRING"]
    root = _quote(hadoop_location(warehouse, warehouse.root))
    lines = [
        f"CREATE TABLE IF NOT EXISTS {table} (",
        ",\n".join(columns),
        f") USING parquet PARTITIONED BY ({DATASET_KEY}, {TASK_KEY}) LOCATION {root};",
    ]
    for task in tasks:
        lines.append(
            f"ALTER TABLE {table} ADD IF NOT EXISTS PARTITION ({DATASET_KEY}={_quote(task.dataset)}, "
            f"{TASK_KEY}={_quote(task.task)}) LOCATION {_quote(hadoop_location(warehouse, task.directory))};"
        )
    return "\n".join(lines) + "\n"


def render(warehouse: WarehouseReader, fmt: str, table: str = DEFAULT_TABLE) -> str:
    """The committed tasks of a warehouse in one of FORMATS."""
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    tasks = list(warehouse.committed_tasks())
    if fmt == "spark-sql":
        return spark_sql(warehouse, tasks, table)
    if fmt == "paths":
        return "".join(f"{hadoop_location(warehouse, t.directory)}/{name}\n" for t in tasks for name in t.files)
    listing = [
        {
            "dataset": t.dataset,
            "task": t.task,
            "rows": t.rows,
            "partial": t.partial,
            "amendments": len(t.amendments),
            "directory": hadoop_location(warehouse, t.directory),
            "files": [f"{hadoop_location(warehouse, t.directory)}/{name}" for name in t.files],
        }
        for t in tasks
    ]
    return json.dumps(listing, indent=1) + "\n"
