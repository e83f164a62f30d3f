"""Fixtures every tier shares."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from producer.inputs.synthetic import SyntheticInput
from tests.helpers import Pipeline


@pytest.fixture(scope="session")
def events() -> pa.Table:
    """2,000 realistic synthetic events."""
    return pa.concat_tables(SyntheticInput(2_000, 7).batches(2_000))


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    """The embedded pipeline (file:// store, sqlite:// queue, local warehouse) in a fresh directory."""
    return Pipeline(tmp_path)
