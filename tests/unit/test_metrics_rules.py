"""The alerting rules docs/operations.md points operators to (docs/prometheus-rules.yml): valid, each alert
unit-tested by docs/prometheus-rules-test.yml, and written against metrics the supersink and the producer
really serve. promtool comes with Debian's `prometheus` package (scripts/install-servers installs it);
without it the promtool tests are skipped locally and fail with CI=true."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from producer.metrics import FIGURES
from producer.metrics import PREFIX as PRODUCER
from supersink.intake import Counters
from supersink.ledger import Ledger
from supersink.metrics import SinkMetrics
from supersink.notify import Notifier
from supersink.service import STATES

DOCS = Path(__file__).resolve().parents[2] / "docs"
RULES = DOCS / "prometheus-rules.yml"
RULE_TESTS = DOCS / "prometheus-rules-test.yml"
OPERATIONS = DOCS / "operations.md"


def promtool() -> str:
    """The promtool binary; skipped locally when it is not installed, a failure with CI=true."""
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian's `prometheus` package; scripts/install-servers installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def _alerts() -> list[str]:
    return re.findall(r"^\s*- alert: (\S+)$", RULES.read_text(), re.MULTILINE)


def test_the_rules_are_valid() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_test_where_it_fires() -> None:
    text = RULE_TESTS.read_text()
    firing = set(re.findall(r"exp_labels: \{alertname: (\w+),", text))
    assert set(_alerts()) <= firing, set(_alerts()) - firing


def test_the_rules_use_only_metrics_that_are_served(tmp_path: Path) -> None:
    """A rule on a metric that does not exist never fires, and promtool cannot tell."""
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.transaction():
        ledger.touch_task("t1", "data24.a")
        ledger.mark_loaded("t1", events=1, location="file:///wh/t1", marker={"rows": 1})
    try:
        notifier = Notifier(ledger, "stomp://127.0.0.1:1/topic/commits", None)  # with --notify: every metric
        metrics = SinkMetrics(ledger.path, Counters(), STATES, notifier)
        text = generate_latest(metrics.registry).decode()
    finally:
        ledger.close()
    served = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    served |= {f"{PRODUCER}_{name}" for name in (*FIGURES, "exit_code", "end_timestamp_seconds")}
    used = set(re.findall(r"\b(ei_(?:supersink|producer)_[a-z_]+)", RULES.read_text()))
    assert used and used <= served, used - served


def test_the_operations_page_points_to_the_rules() -> None:
    text = OPERATIONS.read_text()
    assert "prometheus-rules.yml" in text and "prometheus-rules-test.yml" in text
    assert [name for name in _alerts() if f"`{name}`" not in text] == []
