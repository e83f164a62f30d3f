"""The loader's pieces: grouping chunks by overlapping key ranges, and cutting files and row groups."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eventindex.columns import MASK_COLUMNS, WAREHOUSE_SCHEMA
from eventindex.errors import ConfigError
from producer.inputs.synthetic import SyntheticInput
from supersink.fetch import sort_key
from supersink.ledger import ChunkRecord
from supersink.loader import FileLayout, PartWriter, overlap_groups, trigger_names
from supersink.warehouse import Warehouse


def chunk(seq: int, low: tuple[int, int] | None, high: tuple[int, int] | None, events: int = 10) -> ChunkRecord:
    return ChunkRecord(
        "j", 1, seq, f"k{seq}", 1, b"x" * 32, events,
        sort_key(*low) if low else None, sort_key(*high) if high else None,
    )  # fmt: skip


def test_disjoint_chunks_stream_one_by_one_in_key_order() -> None:
    chunks = [chunk(0, (5, 100), (5, 200)), chunk(1, (1, 1), (1, 9)), chunk(2, (5, 201), (6, 3))]
    assert [[c.seq for c in g] for g in overlap_groups(chunks)] == [[1], [0], [2]]


def test_overlapping_chunks_are_merged_transitively() -> None:
    chunks = [
        chunk(0, (1, 1), (1, 50)),
        chunk(1, (1, 40), (1, 60)),
        chunk(2, (1, 60), (1, 70)),
        chunk(3, (2, 1), (2, 2)),
    ]
    assert [[c.seq for c in g] for g in overlap_groups(chunks)] == [[0, 1, 2], [3]]


def test_a_chunk_without_a_range_makes_one_group_of_the_non_empty_ones() -> None:
    chunks = [chunk(0, (1, 1), (1, 5)), chunk(1, None, None, events=0), chunk(2, None, None)]
    assert [[c.seq for c in g] for g in overlap_groups(chunks)] == [[0, 2]]


def _events(n: int) -> pa.Table:
    table = pa.concat_tables(SyntheticInput(n, 3).batches(n))
    attempt = WAREHOUSE_SCHEMA.field("attempt")
    return (
        table.append_column(WAREHOUSE_SCHEMA.field("task"), pa.repeat("t", n))
        .append_column(WAREHOUSE_SCHEMA.field("job"), pa.repeat("j", n))
        .append_column(attempt, pa.repeat(pa.scalar(1, attempt.type), n))
    )


def _write(
    tmp_path: Path, layout: FileLayout, table: pa.Table, piece: int = 700
) -> tuple[list[dict[str, object]], Path]:
    warehouse = Warehouse.from_url(tmp_path.as_uri())
    warehouse.begin("d", "t")
    writer = PartWriter(warehouse, "d", "t", layout)
    for start in range(0, table.num_rows, piece):
        writer.write(table.slice(start, piece))
    files = writer.close()
    assert not (tmp_path / "dataset=d").exists(), "parts are staged until they are published"
    warehouse.publish("d", "t", [str(f["name"]) for f in files])
    return files, tmp_path / "dataset=d" / "task=t"


def test_files_and_row_groups_are_cut_by_rows(tmp_path: Path) -> None:
    table = _events(5_000)
    files, where = _write(tmp_path, FileLayout(row_group_rows=1_000, rows_per_file=2_000), table)
    assert [f["rows"] for f in files] == [2_000, 2_000, 1_000]
    groups = [pq.ParquetFile(where / str(f["name"])).metadata.num_row_groups for f in files]
    assert groups == [2, 2, 1]
    back = pa.concat_tables(pq.read_table(where / str(f["name"])) for f in files)
    assert back.equals(table)


def test_row_groups_are_also_cut_by_bytes(tmp_path: Path) -> None:
    table = _events(3_000)
    budget = table.slice(0, 1_000).nbytes
    files, where = _write(
        tmp_path, FileLayout(row_group_rows=100_000, rows_per_file=100_000, row_group_bytes=budget), table
    )
    meta = pq.ParquetFile(where / str(files[0]["name"])).metadata
    assert meta.num_row_groups >= 3
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 1_400
    assert pq.read_table(where / str(files[0]["name"])).equals(table)


def test_every_column_but_the_masks_has_statistics_and_the_provenance_strings_are_dictionaries(
    tmp_path: Path,
) -> None:
    files, where = _write(tmp_path, FileLayout(row_group_rows=1_000, rows_per_file=2_000), _events(1_500))
    meta = pq.ParquetFile(where / str(files[0]["name"])).metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    masks = {name for name, _ in MASK_COLUMNS}
    assert {path for path, column in columns.items() if not column.is_stats_set} == masks
    for path in ("run_number", "event_number", "lumi_block", "provenance.list.element.guid", "task", "attempt"):
        assert columns[path].statistics.has_min_max, path
    assert "RLE_DICTIONARY" in columns["provenance.list.element.stream"].encodings
    assert "RLE_DICTIONARY" not in columns["l1_tav"].encodings


@pytest.mark.parametrize(
    "bad", [dict(row_group_rows=0), dict(row_group_rows=10, rows_per_file=5), dict(row_group_bytes=0)]
)
def test_bad_layouts(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        FileLayout(**bad)


def test_trigger_names_in_the_marker_are_one_list_per_column_or_sets_by_input_file() -> None:
    same = ({"guid": "A", "trigger_names": {"hlt_passed_physics": ["HLT_a", "HLT_b"]}, "notes": []},
            {"guid": "B", "trigger_names": {"hlt_passed_physics": ["HLT_a", "HLT_b"]}, "notes": []})  # fmt: skip
    assert trigger_names(same) == {"trigger_names": {"hlt_passed_physics": ["HLT_a", "HLT_b"]}}
    differ = (*same, {"guid": "C", "trigger_names": {"hlt_passed_physics": ["HLT_a", "HLT_c"]}, "notes": []})
    assert trigger_names(differ) == {
        "trigger_name_sets": [
            {"column": "hlt_passed_physics", "names": ["HLT_a", "HLT_b"], "input_guids": ["A", "B"]},
            {"column": "hlt_passed_physics", "names": ["HLT_a", "HLT_c"], "input_guids": ["C"]},
        ]
    }
    assert trigger_names(()) == {}
