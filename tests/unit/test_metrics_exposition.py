"""What a Prometheus server scrapes from the supersink: the series docs/operations.md lists and no others,
counters that never go down, and (when Prometheus's `promtool` is installed: Debian's `prometheus`
package, which scripts/install-servers installs) an exposition promtool accepts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventindex.transport import Consumer, Message
from supersink.intake import Counters
from supersink.ledger import Ledger
from supersink.metrics import MeteredConsumer, SinkMetrics
from supersink.notify import Notifier
from supersink.service import STATES
from tests.unit.test_metrics_rules import promtool

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
#: What prometheus_client serves of the process itself (the docs say so, without listing them).
STANDARD = ("process_", "python_")


class _PutBack(Consumer):
    """A consumer whose messages are all put back (the service's store-failure path)."""

    def __init__(self) -> None:
        self.released: list[Message] = []

    def receive(self, timeout: float) -> Message | None:
        return None

    def ack(self, message: Message) -> None:
        raise AssertionError("nothing is acked here")

    def release(self, message: Message) -> None:
        self.released.append(message)

    def close(self) -> None:
        pass


def _metrics(tmp_path: Path, counters: Counters | None = None) -> tuple[SinkMetrics, Ledger]:
    """The metrics of a supersink with --notify (every family the docs list), on a ledger with a task
    committed and a message quarantined."""
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.transaction():
        ledger.touch_task("t1", "data24.a")
        ledger.mark_loaded("t1", events=10, location="file:///wh/t1", marker={"rows": 10})
    notifier = Notifier(ledger, "stomp://127.0.0.1:1/topic/commits", None)
    metrics = SinkMetrics(ledger.path, counters or Counters(), STATES, notifier)
    metrics.load_seconds.observe(2.5)
    return metrics, ledger


def _families(metrics: SinkMetrics) -> dict[str, str]:
    """{family name as scraped: type} of one scrape."""
    text = generate_latest(metrics.registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name if family.type != "histogram" else family.name] = family.type
    return found


def _documented() -> set[str]:
    """The metric names of the Metrics table of docs/operations.md."""
    text = OPERATIONS.read_text()
    table = text[text.index("| metric | type | meaning |") : text.index("### Alerts")]
    names = set()
    for row in table.splitlines()[2:]:
        if row.startswith("|"):
            names.update(re.findall(r"`(ei_supersink_[a-z_]+)", row.split("|")[1]))
    return names


def test_the_metrics_served_are_those_the_docs_list(tmp_path: Path) -> None:
    """Every `ei_supersink_*` series a scrape returns is in the docs' table and every one there is served:
    no undocumented `_created` series beside the counters and the histogram."""
    metrics, ledger = _metrics(tmp_path)
    try:
        served = _families(metrics)
    finally:
        ledger.close()
    ours = {name for name in served if not name.startswith(STANDARD)}
    assert all(name.startswith("ei_supersink_") for name in ours), ours
    assert ours == _documented()
    assert not [name for name in served if name.endswith("_created")]


def test_load_failures_never_go_down_when_a_message_is_put_back(tmp_path: Path) -> None:
    """A message put back after a store failure counts as a store error; the service counts it with its
    transient failures only afterwards, and a scrape in between must not see load failures go down (a
    counter that decreases is a reset to Prometheus, so rate() and increase() would jump)."""
    counters = Counters()
    counters.transient_failures = 3  # three loads failed so far
    metrics, ledger = _metrics(tmp_path, counters)
    consumer = MeteredConsumer(_PutBack(), metrics)

    def scrape() -> dict[str, float]:
        families = text_string_to_metric_families(generate_latest(metrics.registry).decode())
        return {s.name: s.value for f in families for s in f.samples if s.name.endswith("_failures_total")}

    try:
        assert scrape() == {"ei_supersink_load_failures_total": 3}
        consumer.release(Message(b"pointer", {"ei-kind": "chunk"}))
        during = scrape()  # the service has put the message back, not yet counted it
        counters.transient_failures += 1
        after = scrape()
    finally:
        ledger.close()
    assert during["ei_supersink_load_failures_total"] >= 3, "the counter went down"
    assert after["ei_supersink_load_failures_total"] == 3, "a store failure is no load failure"


def test_the_supersink_exposition_passes_promtool(tmp_path: Path) -> None:
    tool = promtool()
    metrics, ledger = _metrics(tmp_path)
    try:
        text = generate_latest(metrics.registry)
    finally:
        ledger.close()
    result = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result
