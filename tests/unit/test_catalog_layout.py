"""Part files as the loader writes them (and the catalogue benchmark's generator, the same way): the
provenance strings dictionary-encoded, so that a lookup skips the rows before a wanted one quickly."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.catalog_data import generate, rewrite
from catalog.session import Session
from eventindex.columns import PROVENANCE_STRINGS
from tests.catalog_fixtures import catalog_case, duckdb_session
from tests.catalog_warehouse import CatalogCase

__all__ = ["catalog_case", "duckdb_session"]  # fixtures


def dictionary_encoded(path: Path | str) -> dict[str, bool]:
    """For each column of every row group: whether its pages are dictionary-encoded."""
    meta = pq.read_metadata(path)
    found: dict[str, bool] = {}
    for group in range(meta.num_row_groups):
        for i in range(meta.num_columns):
            column = meta.row_group(group).column(i)
            encoded = "RLE_DICTIONARY" in column.encodings or "PLAIN_DICTIONARY" in column.encodings
            found[column.path_in_schema] = found.get(column.path_in_schema, True) and encoded
    return found


def provenance_dictionaries(path: Path | str) -> dict[str, bool]:
    encoded = dictionary_encoded(path)
    return {name: encoded[f"provenance.list.element.{name}"] for name, _ in PROVENANCE_STRINGS}


def test_the_loader_writes_provenance_strings_as_dictionaries(
    catalog_case: CatalogCase, duckdb_session: Session
) -> None:
    files = duckdb_session.view().files
    assert len(files) >= 5
    for entry in files:  # every committed part file, each written by the supersink's loader
        path = f"{catalog_case.warehouse.task_dir(entry.task.dataset, entry.task.task)}/{entry.name}"
        assert provenance_dictionaries(path) == dict.fromkeys((name for name, _ in PROVENANCE_STRINGS), True), path
        assert not dictionary_encoded(path)["provenance.list.element.oid2"]  # numbers stay plain


def test_the_benchmark_generator_writes_them_as_the_loader_does(tmp_path: Path) -> None:
    generate(tmp_path, events=3_000, runs=2, seed=1, workers=1)
    parts = sorted(tmp_path.rglob("part-*.parquet"))
    assert parts
    for path in parts:
        assert provenance_dictionaries(path) == dict.fromkeys((name for name, _ in PROVENANCE_STRINGS), True), path


def test_rewrite_gives_a_catalogue_written_before_the_dictionaries_the_loaders_layout(tmp_path: Path) -> None:
    generate(tmp_path, events=3_000, runs=2, seed=1, workers=1)
    parts = sorted(tmp_path.rglob("part-*.parquet"))
    tables = {}
    for path in parts:  # as the catalogue was written before: provenance strings plain
        tables[path] = pq.read_table(path)
        pq.write_table(tables[path], path, row_group_size=500, compression="zstd", use_dictionary=False)
        assert not any(provenance_dictionaries(path).values())
    groups = {path: pq.read_metadata(path).num_row_groups for path in parts}
    assert max(groups.values()) > 1
    assert rewrite(tmp_path)["rewritten"] == len(parts)
    for path in parts:
        assert provenance_dictionaries(path) == dict.fromkeys((name for name, _ in PROVENANCE_STRINGS), True), path
        assert pq.read_metadata(path).num_row_groups == groups[path]
        assert pq.read_table(path).equals(tables[path])
    assert rewrite(tmp_path)["rewritten"] == 0  # a rerun leaves rewritten files alone
    assert not list(tmp_path.rglob(".*.rewrite"))
