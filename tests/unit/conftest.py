from __future__ import annotations

import pyarrow as pa
import pytest

from producer.inputs.synthetic import SyntheticInput


@pytest.fixture(scope="session")
def events() -> pa.Table:
    """2,000 realistic synthetic events."""
    return pa.concat_tables(SyntheticInput(2_000, 7).batches(2_000))
