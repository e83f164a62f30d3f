"""Remote part files as the rows of `ei_data`, read by pyarrow through the warehouse's own filesystem:
one Arrow dataset over the files, in the warehouse schema (a column a file predates is null), with each
file's dataset and path as the constant columns `dataset` and `file` (and its task asserted, so a filter
on any of the three skips whole files). DuckDB scans it for an S3 or WebHDFS warehouse; Spark's arrow
reader (catalog.engines.arrow_parts) reads one file of it per partition on its executors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from eventindex.columns import WAREHOUSE_SCHEMA

#: The columns of a remote warehouse's rows: the files' own, and dataset and file from where each file is.
DATA_SCHEMA = pa.schema([*WAREHOUSE_SCHEMA, pa.field("dataset", pa.string()), pa.field("file", pa.string())])


class Part(NamedTuple):
    """A committed part file: its path on the warehouse filesystem, and the task it belongs to."""

    path: str
    dataset: str
    task: str


def parts_dataset(fs: pafs.FileSystem, parts: Sequence[Part]) -> pads.FileSystemDataset:
    """The rows of `parts` (at least one), in DATA_SCHEMA."""
    where = [
        (pc.field("dataset") == p.dataset) & (pc.field("task") == p.task) & (pc.field("file") == p.path) for p in parts
    ]
    return pads.FileSystemDataset.from_paths(
        [p.path for p in parts], schema=DATA_SCHEMA, format=pads.ParquetFileFormat(), filesystem=fs, partitions=where
    )
