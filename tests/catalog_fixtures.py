"""pytest fixtures for the catalogue tests: the test warehouse (local) and a DuckDB session over it.

Import them into a test module: `from tests.catalog_fixtures import catalog_case, duckdb_session`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from catalog.session import Session
from tests.catalog_warehouse import CatalogCase, build


@pytest.fixture(scope="module")
def catalog_case(tmp_path_factory: pytest.TempPathFactory) -> CatalogCase:
    """The test warehouse on the local filesystem, written by the pipeline (tests.catalog_warehouse)."""
    root = tmp_path_factory.mktemp("catalog")
    return build(root, (root / "wh").as_uri())


@pytest.fixture(scope="module")
def duckdb_session(catalog_case: CatalogCase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    pytest.importorskip("duckdb")
    with Session(catalog_case.url, index_path=tmp_path_factory.mktemp("index") / "index.sqlite") as session:
        yield session
