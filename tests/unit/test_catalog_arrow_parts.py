"""The data source Spark's executors read a remote warehouse with (catalog.engines.arrow_parts): a partition
per listed file, every row of it in the warehouse schema with its dataset and path, in batches; a column
a file predates is null; and a Python worker's failure reaches the user as one line naming the exception."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark")
from catalog.engines.arrow_parts import PartsReader, PartsSource, listing
from catalog.engines.parts import DATA_SCHEMA, Part
from eventindex.columns import WAREHOUSE_SCHEMA
from eventindex.warehouse import partition
from supersink.loader import PARQUET_OPTIONS
from tests.catalog_warehouse import synthetic_events


def _part(root: Path, dataset: str, task: str, seed: int, drop: str | None = None) -> tuple[str, pa.Table]:
    table = synthetic_events(seed)
    n = table.num_rows
    table = (
        table.append_column("task", pa.array([task] * n))
        .append_column("job", pa.array([f"j{i % 3}" for i in range(n)]))
        .append_column("attempt", pa.array(np.ones(n, np.int32)))
        .cast(WAREHOUSE_SCHEMA)
    )
    path = root / partition(dataset, task) / "part-00000.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table.drop_columns([drop]) if drop else table, path, row_group_size=300, **PARQUET_OPTIONS)
    return str(path), table


def test_the_listed_files_rows_with_dataset_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("catalog.engines.arrow_parts.BATCH_ROWS", 256)
    first, a = _part(tmp_path, "dsA", "t1", 1)
    second, b = _part(tmp_path, "dsB", "t2", 2, drop="mc_event_weight")  # a file older than the column
    source = PartsSource(
        {"warehouse": tmp_path.as_uri(), "files": listing([Part(first, "dsA", "t1"), Part(second, "dsB", "t2")])}
    )
    reader = source.reader(source.schema())
    assert isinstance(reader, PartsReader)
    batches = [batch for partition in reader.partitions() for batch in reader.read(partition)]
    assert len(batches) > 2 and all(batch.num_rows <= 256 for batch in batches)
    assert all(batch.schema.equals(DATA_SCHEMA) for batch in batches)
    got = pa.Table.from_batches(batches)
    assert got.column("dataset").to_pylist() == ["dsA"] * a.num_rows + ["dsB"] * b.num_rows
    assert got.column("file").to_pylist() == [first] * a.num_rows + [second] * b.num_rows
    rows = got.select(WAREHOUSE_SCHEMA.names)
    assert rows.slice(0, a.num_rows).to_pylist() == a.to_pylist()
    older = rows.slice(a.num_rows).to_pylist()
    assert all(row["mc_event_weight"] is None for row in older)
    want = b.to_pylist()
    for row in want:
        row["mc_event_weight"] = None
    assert older == want


def test_a_python_worker_failure_is_one_line() -> None:
    from catalog.engines.spark_engine import _first_line

    text = (
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        '  File "/x/warehouse.py", line 26, in <module>\n    import pyarrow.fs as pafs\n'
        "ModuleNotFoundError: No module named 'pyarrow'\n\n"
        "JVM stacktrace:\norg.apache.spark.SparkException: Job aborted\n\tat org.apache.spark.Foo(Foo.scala:1)\n"
    )
    assert _first_line(Exception(text)) == (
        "An exception was thrown from the Python worker: ModuleNotFoundError: No module named 'pyarrow'"
    )


def test_a_part_a_worker_cannot_read_is_the_warehouses_failure(tmp_path: Path) -> None:
    from catalog.engines.arrow_parts import PartUnreadableError
    from catalog.engines.spark_engine import _failure
    from catalog.errors import EngineError
    from eventindex.errors import WarehouseError

    path, _ = _part(tmp_path, "dsA", "t1", 1)
    Path(path).write_bytes(b"not parquet any more" * 100)
    source = PartsSource({"warehouse": tmp_path.as_uri(), "files": listing([Part(path, "dsA", "t1")])})
    reader = source.reader(source.schema())
    with pytest.raises(PartUnreadableError, match=r"part-00000\.parquet") as raised:
        list(reader.read(reader.partitions()[0]))
    # as Spark passes it on: the worker's traceback inside the JVM's error
    spark_text = (
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        f'  File "/x/arrow_parts.py", line 80, in read\n'
        f"catalog.engines.arrow_parts.PartUnreadableError: {raised.value}\n\nJVM stacktrace:\n"
    )
    assert isinstance(_failure(Exception(spark_text)), WarehouseError)
    spark_own = "[FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///w/part-00000.parquet. SQLSTATE"
    assert isinstance(_failure(Exception(spark_own)), WarehouseError)
    assert isinstance(_failure(Exception("[UNRESOLVED_COLUMN] A column cannot be resolved")), EngineError)


def test_a_part_a_worker_cannot_read_is_named_by_its_path(tmp_path: Path) -> None:
    """Spark's one line was a line of Python source, `raise PartUnreadableError(f"{part.path}: ...") from exc`
    (the traceback quotes the line raising it before the exception's own line), not the file."""
    from catalog.engines.spark_engine import _failure

    path = tmp_path / "dataset=dsA" / "task=t1" / "part-00001.parquet"
    spark_text = (  # as Spark 4 passed it on, for a part file deleted after it was indexed
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        '  File "/x/catalog/engines/arrow_parts.py", line 71, in read\n'
        "    raise PartUnreadableError(f\"{part.path}: {' '.join(str(exc).split())}\") from exc\n"
        f"catalog.engines.arrow_parts.PartUnreadableError: {path}: [Errno 2] Failed to open local file '{path}'. "
        "Detail: [errno 2] No such file or directory\n"
    )
    assert str(_failure(Exception(spark_text))) == (
        f"Spark cannot read a data file: {path}: [Errno 2] Failed to open local file '{path}'. Detail: [errno 2] No "
        "such file or directory"
    )
