"""Fixtures every tier shares."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from producer.inputs.synthetic import SyntheticInput
from supersink.warehouse import Warehouse
from tests.helpers import Pipeline

#: ``user_properties`` name of the integration tests' fault-injection lines (see ``fault_report``).
FAULT_LINE = "fault_report"
FAULT_REPORT: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        FAULT_REPORT.extend(str(value) for name, value in report.user_properties if name == FAULT_LINE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FAULT_REPORT:
        terminalreporter.section("fault injection: events per scenario")
        for line in FAULT_REPORT:
            terminalreporter.line(line)


@pytest.fixture(scope="session")
def events() -> pa.Table:
    """2,000 realistic synthetic events."""
    return pa.concat_tables(SyntheticInput(2_000, 7).batches(2_000))


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    """The embedded pipeline (file:// store, sqlite:// queue, local warehouse) in a fresh directory."""
    return Pipeline(tmp_path)


@pytest.fixture
def two_tasks(tmp_path: Path) -> Pipeline:
    """task1 committed; task2 complete but claimed by a supersink that died mid-load (staged parts)."""
    pipe = Pipeline(tmp_path)
    pipe.produce("j1", 1)
    pipe.produce("j2", 2)
    pipe.expect(2)
    pipe.run_supersink()
    warehouse = Warehouse.from_url((tmp_path / "wh").as_uri())
    warehouse.claim("ds", "task2", "a-supersink-that-died")
    warehouse.begin("ds", "task2")
    staged = Path(warehouse.staging_dir("ds", "task2"))
    (staged / "part-00000.parquet.staged").write_bytes((pipe.task_dir() / "part-00000.parquet").read_bytes())
    return pipe
