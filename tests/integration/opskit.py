"""Helpers for the operations tests: HTTP and Server-Sent Events clients, metrics parsing, a task of a
chosen dataset produced through the real producer code."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from eventindex.store import open_store
from eventindex.transport import open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec
from tests.integration.faultkit import Backend, backend_env, send_expectation


def get(port: int, path: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_json(port: int, path: str) -> Any:
    status, body = get(port, path)
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics` as {(name, sorted labels): value}."""
    status, body = get(port, "/metrics")
    assert status == 200
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def produce(backend: Backend, task: str, dataset: str, jobs: int, events: int, seed: int = 0) -> None:
    """A complete task: its expectation and `jobs` jobs of `events` synthetic events each."""
    with backend_env(backend):
        store = open_store(backend.store)
        try:
            with open_publisher(backend.broker) as publisher:
                send_expectation(publisher, task, jobs, jobs * events)
                for job in range(1, jobs + 1):
                    spec = JobSpec(task=task, job=f"job{job}", attempt=1, dataset=dataset, chunk_events=5_000)
                    JobRunner(spec, store, publisher).run([SyntheticInput(events, seed + job)])
        finally:
            store.close()


@dataclass
class EventStream:
    """A Server-Sent Events client in a thread of its own: `events` gets (id, event, data) of each event."""

    port: int
    token: str | None
    last_event_id: str | None = None
    events: queue.Queue[tuple[str, str, dict[str, Any]]] = field(default_factory=queue.Queue)
    status: int | None = None
    body: bytes = b""

    def __post_init__(self) -> None:
        self.connected = threading.Event()
        self._closing = False
        self._response: http.client.HTTPResponse | None = None
        self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.connected.wait(30), "the event stream did not answer"

    def _run(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        self._conn.request("GET", "/events", headers=headers)
        response = self._response = self._conn.getresponse()
        self.status = response.status
        if response.status != 200:
            self.body = response.read()
            self.connected.set()
            return
        self.connected.set()
        fields: dict[str, str] = {}
        try:
            while True:
                raw = response.fp.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\n")
                if not line:
                    if "data" in fields:
                        self.events.put((fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"])))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
        except (OSError, ValueError, AttributeError):  # AttributeError: http.client's file gone at close
            if not self._closing:
                raise

    def take(self, count: int, timeout: float) -> list[tuple[str, str, dict[str, Any]]]:
        """The next `count` events; fewer if they did not come within `timeout` seconds."""
        got: list[tuple[str, str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.append(self.events.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                break
        return got

    def close(self) -> None:
        self._closing = True
        sock = self._conn.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        if self._response is not None:
            self._response.close()
        self._conn.close()
