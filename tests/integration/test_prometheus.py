"""A real Prometheus server (Debian's `prometheus` package) scraping a running `ei-supersink run` every
second, with the alerting rules of docs/prometheus-rules.yml loaded, asked through its HTTP API what an
operator would ask: the counters follow the events loaded and the messages handled, increase() over the
run is what was loaded, no series resets, every rule evaluates, and a quarantined message fires
SupersinkQuarantineGrowing. On the embedded store and queue, so no other server is needed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventindex.transport import open_publisher
from tests.integration.conftest import construct_server
from tests.integration.faultkit import ROOT, Backend, wait_for
from tests.integration.opskit import produce, samples
from testservers import ServerProcess, ServerUnavailable, free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RULES = ROOT / "docs" / "prometheus-rules.yml"
JOBS, EVENTS = 2, 12_000
Vector = list[dict[str, Any]]


class Prometheus(ServerProcess):
    """A Prometheus server on 127.0.0.1 scraping `targets` every second as the job `ei-supersink`, with
    `rules` loaded and evaluated every second; its data in the work directory."""

    name = "prometheus"

    def __init__(self, workdir: Path, targets: list[str], rules: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise ServerUnavailable("prometheus is not installed (Debian's `prometheus`; scripts/install-servers)")
        super().__init__(workdir, ready_timeout=30.0)
        self.binary = binary
        self.targets = targets
        self.rules = rules
        (self.port,) = free_ports(1)

    def prepare(self) -> None:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.rules)],
            "scrape_configs": [{"job_name": "ei-supersink", "static_configs": [{"targets": self.targets}]}],
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML

    def command(self) -> list[str]:
        return [
            self.binary, f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address={self.host}:{self.port}",
        ]  # fmt: skip

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"http://{self.host}:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as exc:  # a bad query: Prometheus says why
            raise AssertionError(f"{params}: {exc.code} {exc.read().decode()}") from None
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str, at: float | None = None) -> Vector:
        data = self.api("query", query=expr, **({} if at is None else {"time": repr(at)}))
        assert data["resultType"] == "vector", data
        result: Vector = data["result"]
        return result

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The value of a query of one series (None when it has none)."""
        result = self.query(expr, at)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[Backend, int]]:
    """`ei-supersink run` on the embedded store and queue with --metrics-port; stopped with SIGTERM."""
    (tmp_path / "store").mkdir()
    backend = Backend(
        "embedded", (tmp_path / "store").as_uri(), f"sqlite://{tmp_path / 'queue.db'}", (tmp_path / "wh").as_uri()
    )
    (port,) = free_ports(1)
    command = [
        sys.executable, "-m", "supersink.cli", "run", "--broker", backend.broker, "--store", backend.store,
        "--warehouse", backend.warehouse, "--state", str(tmp_path / "ledger.db"), "--metrics-port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EI_SUPERSINK_CRASH_AT", None)
    with (tmp_path / "sink.stderr").open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
    try:
        wait_for(lambda: _answers(port) or proc.poll() is not None, 30, "the supersink's metrics")
        assert proc.poll() is None, (tmp_path / "sink.stderr").read_text()
        yield backend, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.fixture
def prometheus(tmp_path: Path, sink: tuple[Backend, int]) -> Iterator[Prometheus]:
    """A Prometheus scraping `sink`, started and stopped (by its process group) around the test."""
    server = construct_server(lambda: Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{sink[1]}"], RULES))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _answers(port: int) -> bool:
    try:
        samples(port)
    except OSError:
        return False
    return True


def _until(what: str, condition: Callable[[], bool], timeout: float = 20) -> None:
    wait_for(condition, timeout, what)


def test_prometheus_follows_the_supersink_and_its_rules(prometheus: Prometheus, sink: tuple[Backend, int]) -> None:
    backend, port = sink
    loaded = "ei_supersink_events_loaded_total"
    # the idle service's counters at 0, scraped a few times, before any work
    _until("three scrapes", lambda: (prometheus.value(f"count_over_time({loaded}[1m])") or 0) >= 3)
    assert prometheus.value(loaded) == 0
    assert prometheus.value('up{job="ei-supersink"}') == 1

    produce(backend, "task.prom", "data24.prom", JOBS, EVENTS)
    total = JOBS * EVENTS
    _until("the load scraped", lambda: prometheus.value(loaded) == total, 60)
    time.sleep(2)  # a few scrapes after it
    direct = samples(port)
    at = prometheus.value(f"timestamp({loaded})")  # the last scrape: no extrapolation past it
    assert at is not None

    # what was loaded, as an operator asks it: increase() from the idle start is exactly the load
    assert prometheus.value(f"increase({loaded}[5m])", at) == pytest.approx(total)
    assert (prometheus.value(f"rate({loaded}[5m])", at) or 0) > 0
    assert prometheus.value("ei_supersink_tasks_committed_total", at) == 1
    assert prometheus.value('ei_supersink_tasks{state="loaded"}', at) == 1
    recorded = 'sum(increase(ei_supersink_messages_total{outcome="recorded"}[5m]))'
    sent = sum(v for (name, _), v in direct.items() if name == "ei_supersink_messages_total")
    assert sent > JOBS and prometheus.value(recorded, at) == pytest.approx(sent)
    counters = sorted({name for name, _ in direct if name.startswith("ei_supersink_") and name.endswith("_total")})
    assert [c for c in counters if prometheus.value(f"sum(resets({c}[5m]))", at) != 0] == []
    assert prometheus.query("{__name__=~'ei_supersink_.*_created'}") == []

    # the rules: every one evaluates without error; a quarantined message fires its alert
    rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    assert len(rules) == RULES.read_text().count("- alert:")
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []
    with open_publisher(backend.broker) as publisher:
        publisher.send(b"not a pointer", {"ei-kind": "chunk"})

    def firing() -> list[str]:
        alerts = prometheus.api("alerts")["alerts"]
        return [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]

    _until("SupersinkQuarantineGrowing", lambda: "SupersinkQuarantineGrowing" in firing())
    assert firing() == ["SupersinkQuarantineGrowing"]
    assert prometheus.value("ei_supersink_quarantined_messages") == 1
