"""Operating the supersink: its metrics, status page, commit notifications and Server-Sent Events, with
`ei-supersink run` as a real process on the real servers (SeaweedFS S3, ActiveMQ STOMP; RabbitMQ for
the AMQP exchange), and the status page read by a real browser (Debian's Chromium, headless,
through Selenium).

The browser test saves its screenshot under the test's temporary directory (printed); with
EI_STATUS_SCREENSHOT=PATH it also saves a copy at PATH (docs/images/status-page.png is made so).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventindex.transport import open_consumer
from supersink.warehouse import Warehouse
from tests.integration.conftest import server_unavailable
from tests.integration.faultkit import ROOT, Backend, backend_env, cli, run_sink, task_state, wait_for
from tests.integration.opskit import EventStream, get, get_json, produce, samples
from testservers import ActiveMQ, RabbitMQ, SeaweedFS
from testservers.base import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SERVERS = pytest.mark.parametrize("backend", ["servers"], indirect=True)
EMBEDDED = pytest.mark.parametrize("backend", ["embedded"], indirect=True)
JOBS, EVENTS = 2, 20_000
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ALICE = "alice-token-" + "a" * 20
BOB = "bob-token-" + "b" * 20


def write_tokens(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "clients": [
                    {"name": "alice", "token": ALICE, "datasets": ["data24.*"]},
                    {"name": "bob", "token": BOB, "datasets": ["data25.*"]},
                ]
            }
        )
    )
    return path


@dataclass
class RunningSink:
    backend: Backend
    state: Path
    proc: subprocess.Popen[str]
    metrics_port: int
    http_port: int
    stderr: Path
    complete: tuple[str, ...]
    waiting: str

    def log(self) -> str:
        return self.stderr.read_text()


def start(backend: Backend, state: Path, workdir: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    """`ei-supersink run` as a process (until SIGTERM), its stderr to a file."""
    stderr = workdir / "sink.stderr"
    command = [
        sys.executable, "-m", "supersink.cli", "run", "--broker", backend.broker, "--store", backend.store,
        "--warehouse", backend.warehouse, "--state", str(state), "--row-group-rows", "2000", "--rows-per-file", "6000",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, **backend.env, "PYTHONPATH": str(ROOT)}
    env.pop("EI_SUPERSINK_CRASH_AT", None)
    with stderr.open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
    return proc, stderr


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    return proc.returncode


def loaded(port: int, tasks: tuple[str, ...]) -> bool:
    states = {t["task"]: t["state"] for t in get_json(port, "/api/tasks")["tasks"]}
    return all(states.get(task) == "loaded" for task in tasks)


@pytest.fixture(scope="module")
def running_sink(
    seaweedfs: SeaweedFS, activemq: ActiveMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSink]:
    """A supersink on SeaweedFS and ActiveMQ with its metrics and status page, two tasks committed and one
    waiting for a job; left running for the module's tests, stopped with SIGTERM after them."""
    workdir = tmp_path_factory.mktemp("ops")
    bucket = f"ei-test-{uuid.uuid4().hex[:16]}"
    seaweedfs.create_bucket(bucket)
    endpoint = f"endpoint={seaweedfs.endpoint}"
    backend = Backend(
        "servers", f"s3://{bucket}/chunks?{endpoint}", activemq.stomp_url(f"ei.test.{uuid.uuid4().hex[:16]}"),
        f"s3://{bucket}/warehouse?{endpoint}", seaweedfs.client_env(),
    )  # fmt: skip
    complete = ("task.ops.one", "task.ops.two")
    for seed, task in enumerate(complete):
        produce(backend, task, "data24.ops", JOBS, EVENTS, seed=100 * seed)
    produce(backend, "task.ops.small", "data24.ops", 1, 5_000, seed=900)
    metrics_port, http_port = free_ports(2)
    state = workdir / "ledger.db"
    proc, stderr = start(
        backend, state, workdir, "--metrics-port", str(metrics_port), "--http-port", str(http_port),
        "--tokens", str(write_tokens(workdir / "tokens.json")),
    )  # fmt: skip
    sink = RunningSink(backend, state, proc, metrics_port, http_port, stderr, complete, "task.ops.late")
    try:
        wait_for(lambda: _answers(http_port) and loaded(http_port, (*complete, "task.ops.small")), 180, "commits")
        with backend_env(backend):
            _waiting_task(backend, sink.waiting)  # 3 jobs expected, 1 produced
        wait_for(lambda: _resolved(http_port, sink.waiting) == 1, 60, "the waiting task's job")
        yield sink
    finally:
        code = stop(proc)
        print(f"supersink log: {stderr}")
        assert code == 0, sink.log()[-3000:]


def _resolved(port: int, task: str) -> int | None:
    return next((t["jobs_resolved"] for t in get_json(port, "/api/tasks")["tasks"] if t["task"] == task), None)


def _answers(port: int) -> bool:
    try:
        return get(port, "/api/tasks", timeout=2)[0] == 200
    except OSError:
        return False


def _waiting_task(backend: Backend, task: str) -> None:
    from eventindex.store import open_store
    from eventindex.transport import open_publisher
    from producer.inputs.synthetic import SyntheticInput
    from producer.job import JobRunner, JobSpec
    from tests.integration.faultkit import send_expectation

    store = open_store(backend.store)
    try:
        with open_publisher(backend.broker) as publisher:
            send_expectation(publisher, task, 3, 15_000)
            spec = JobSpec(task=task, job="job1", attempt=1, dataset="data24.ops", chunk_events=5_000)
            JobRunner(spec, store, publisher).run([SyntheticInput(5_000, 777)])
    finally:
        store.close()


def committed_events(backend: Backend, ledger_path: Path) -> tuple[int, int, int, int]:
    """(tasks committed, events committed, chunks verified, their bytes) as the ledger says."""
    db = sqlite3.connect(f"{ledger_path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        tasks = db.execute("SELECT count(*), sum(events_loaded) FROM tasks WHERE state = 'loaded'").fetchone()
        chunks = db.execute("SELECT count(*), sum(size) FROM chunks WHERE key NOT LIKE 'spool:%'").fetchone()
    finally:
        db.close()
    return int(tasks[0]), int(tasks[1]), int(chunks[0]), int(chunks[1])


def test_metrics_scraped_during_a_run_match_the_run(running_sink: RunningSink) -> None:
    """The metrics say what the run did: events loaded, tasks committed and by state, chunks verified,
    messages by kind; and the page, its JSON and the metrics answer quickly while a big task loads."""
    sink = running_sink
    m = samples(sink.metrics_port)
    tasks, events, chunks, chunk_bytes = committed_events(sink.backend, sink.state)
    assert (tasks, events) == (3, 2 * JOBS * EVENTS + 5_000)
    assert m[("ei_supersink_tasks_committed_total", ())] == 3
    assert m[("ei_supersink_events_loaded_total", ())] == 2 * JOBS * EVENTS + 5_000
    assert m[("ei_supersink_tasks", (("state", "loaded"),))] == 3
    assert m[("ei_supersink_tasks", (("state", "waiting"),))] == 1
    assert m[("ei_supersink_chunks_verified_total", ())] == chunks == 2 * JOBS * EVENTS // 5_000 + 1 + 1
    assert m[("ei_supersink_verified_bytes_total", ())] == chunk_bytes
    recorded = {
        dict(labels)["kind"]: value
        for (name, labels), value in m.items()
        if name == "ei_supersink_messages_total" and dict(labels)["outcome"] == "recorded" and value
    }
    # the two jobs of one chunk (task.ops.small and the waiting task) send their manifest's pointer alone
    assert recorded == {"task-expectation": 4, "manifest": 2 * JOBS + 2, "chunk": chunks - 2}
    assert m[("ei_supersink_quarantined_messages", ())] == 0
    assert m[("ei_supersink_load_duration_seconds_count", ())] == 3
    assert 0 <= m[("ei_supersink_seconds_since_last_commit", ())] < 600
    assert m[("ei_supersink_ledger_bytes", ())] > 0
    assert not any(name.startswith("ei_supersink_notifications") for name, _ in m), "only with --notify"
    # the same registry on the status server
    assert samples(sink.http_port)[("ei_supersink_tasks_committed_total", ())] == 3

    # a big task (many small part files on S3): the page and the metrics answer while it loads
    big = "task.ops.big"
    produce(sink.backend, big, "data24.ops", 4, 100_000, seed=500)
    seen: set[str] = set()
    slowest = 0.0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        started = time.monotonic()
        state = next((t["state"] for t in get_json(sink.http_port, "/api/tasks")["tasks"] if t["task"] == big), None)
        assert get(sink.http_port, "/")[0] == 200
        assert get(sink.metrics_port, "/metrics")[0] == 200
        slowest = max(slowest, time.monotonic() - started)
        seen.add(str(state))
        if state == "loaded":
            break
        time.sleep(0.2)
    assert "loading" in seen and "loaded" in seen, seen
    assert slowest < 3.0, f"the status server took {slowest:.1f}s to answer during a load"
    after = samples(sink.metrics_port)
    assert after[("ei_supersink_events_loaded_total", ())] == 2 * JOBS * EVENTS + 5_000 + 400_000
    assert after[("ei_supersink_tasks_committed_total", ())] == 4
    progress = [line for line in sink.log().splitlines() if f"task {big}: loading," in line]
    assert progress, "no progress line during the big load"
    assert "of 400,000 events read" in progress[0] and "events/s" in progress[0], progress[0]


def test_status_page_in_a_real_browser(running_sink: RunningSink, tmp_path: Path) -> None:
    """Chromium loads the page during the run; the task rows in its DOM are the ledger's tasks, with
    their states, jobs and events; the screenshot is kept among the test's artefacts."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        server_unavailable("Chromium or chromium-driver is not installed (scripts/install-browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"http://127.0.0.1:{running_sink.http_port}/")
        rows = driver.find_elements(By.CSS_SELECTOR, "#tasks tr.task")
        seen = {
            row.get_attribute("data-task"): (
                row.find_element(By.CSS_SELECTOR, "td.state").text,
                row.find_element(By.CSS_SELECTOR, "td.jobs").text,
                row.find_element(By.CSS_SELECTOR, "td.events").text,
                row.find_element(By.CSS_SELECTOR, "td.missing").text,
            )
            for row in rows
        }
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, max(600, int(height) + 200))
        shot = tmp_path / "status-page.png"
        assert driver.save_screenshot(str(shot))
        title = driver.title
    finally:
        driver.quit()
    print(f"status page screenshot: {shot}")
    copy = os.environ.get("EI_STATUS_SCREENSHOT")
    if copy:
        shutil.copyfile(shot, copy)
    assert title == "ei-supersink status"
    expected = {
        t["task"]: (t["state"], t["jobs_resolved"], t["expected_jobs"], t["events"])
        for t in get_json(running_sink.http_port, "/api/tasks")["tasks"]
    }
    assert set(seen) == set(expected)
    for task, (state, jobs, events, _missing) in seen.items():
        want_state, resolved, expected_jobs, want_events = expected[task]
        assert state == want_state
        assert jobs == f"{resolved:,} / {expected_jobs:,}"
        assert events == f"{want_events:,}"
    for task in running_sink.complete:
        assert seen[task][:3] == ("loaded", f"{JOBS} / {JOBS}", f"{JOBS * EVENTS:,}")
    assert seen[running_sink.waiting][:3] == ("waiting", "1 / 3", "5,000")
    late = get_json(running_sink.http_port, f"/api/tasks/{running_sink.waiting}")
    assert late["missing"] and seen[running_sink.waiting][3] == "\n".join(late["missing"][:5])
    assert shot.stat().st_size > 10_000


def test_the_http_server_changes_nothing_and_refuses_bad_tokens(running_sink: RunningSink) -> None:
    """Only GET is served; the JSON is `status --json`'s; /events without a valid token is 401 with no data."""
    port = running_sink.http_port
    for method in ("POST", "PUT", "DELETE"):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, "/api/tasks")
        assert conn.getresponse().status == 501
        conn.close()
    api = get_json(port, "/api/tasks")
    proc = cli("status", "--state", str(running_sink.state), "--json", env=running_sink.backend.env)
    assert proc.returncode == 0, proc.stderr
    assert [t["task"] for t in api["tasks"]] == [t["task"] for t in json.loads(proc.stdout)["tasks"]]
    one = get_json(port, f"/api/tasks/{running_sink.complete[0]}")
    assert one["state"] == "loaded" and one["events_loaded"] == JOBS * EVENTS
    assert get(port, "/api/tasks/no.such.task")[0] == 404
    assert get_json(port, "/api/quarantine") == []
    for headers in ({}, {"Authorization": "Bearer not-a-token-at-all-xx"}, {"Authorization": f"Basic {ALICE}"}):
        status, body = get(port, "/events", headers)
        assert (status, body) == (401, b"")
    for bad in ("\xb2", "9" * 23, "abc", "-1", "1.5"):  # '²'.isdigit() is true, int('²') is not
        status, body = get(port, "/events", {"Authorization": f"Bearer {ALICE}", "Last-Event-ID": bad})
        assert status == 400 and body.startswith(b"Last-Event-ID must be"), (bad, status, body)
    assert ALICE not in running_sink.log() and BOB not in running_sink.log()
    assert "Traceback" not in running_sink.log()


@SERVERS
def test_notifications_on_a_topic_survive_a_sigkill_between_commit_and_publish(
    backend: Backend, activemq: ActiveMQ, tmp_path: Path
) -> None:
    """A subscriber of the topic receives one notification per committed task, and only after the commit:
    the supersink killed after recording a commit, before announcing it, announces it when restarted."""
    topic = f"stomp://127.0.0.1:{activemq.stomp_port}/topic/ei.commits.{uuid.uuid4().hex[:8]}"
    state = tmp_path / "ledger.db"
    with open_consumer(topic) as subscriber:
        produce(backend, "task.notify.a", "data24.notify", JOBS, 6_000, seed=10)
        died = run_sink(backend, state, 2.0, "notify.before_publish", "--notify", topic)
        assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
        assert task_state(state, "task.notify.a", backend.env)["state"] == "loaded"
        assert subscriber.receive(2.0) is None, "announced before the ledger said it was published"
        produce(backend, "task.notify.b", "data24.notify", JOBS, 6_000, seed=20)
        done = run_sink(backend, state, 2.0, None, "--notify", topic)
        assert done.returncode == 0, done.stderr[-2000:]
        received = []
        while (message := subscriber.receive(3.0)) is not None:
            received.append(json.loads(message.body))
            subscriber.ack(message)
    assert sorted(n["task"] for n in received) == ["task.notify.a", "task.notify.b"]
    assert len({n["id"] for n in received}) == 2
    with backend_env(backend):
        warehouse = Warehouse.from_url(backend.warehouse)
        try:
            for note in received:
                marker = warehouse.read_marker("data24.notify", note["task"])
                assert marker is not None
                location = warehouse.location("data24.notify", note["task"])
                assert note["rows"] == marker["rows"] == JOBS * 6_000
                assert note["files"] == [f"{location}/{f['name']}" for f in marker["files"]]
                assert note["marker"] == f"{location}/_SUCCESS.json"
                assert (note["dataset"], note["partial"], note["committed_at"]) == (
                    "data24.notify", False, marker["committed_at"],
                )  # fmt: skip
        finally:
            warehouse.close()
    replayed = cli("notifications", "--state", str(state), "--since", "1h", env=backend.env)
    assert replayed.returncode == 0, replayed.stderr
    lines = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert [(n["task"], n["id"]) for n in lines] == [(n["task"], n["id"]) for n in received]
    assert all(n["published"] is not None for n in lines)


@EMBEDDED
def test_notifications_to_an_amqp_exchange(
    backend: Backend, rabbitmq: RabbitMQ, rabbit_env: dict[str, str], tmp_path: Path
) -> None:
    """`--notify amqp://…/KEY?exchange=NAME`: a queue bound to the exchange gets the commit's notification."""
    name = uuid.uuid4().hex[:8]
    url = f"amqp://127.0.0.1:{rabbitmq.amqp_port}/ei.notes.{name}?exchange=ei.commits.{name}"
    with open_consumer(url) as bound:  # declares the queue and binds it to the exchange
        produce(backend, "task.amqp", "data24.amqp", 1, 3_000, seed=30)
        done = run_sink(backend, tmp_path / "ledger.db", 2.0, None, "--notify", url)
        assert done.returncode == 0, done.stderr[-2000:]
        message = bound.receive(10.0)
        assert message is not None
        bound.ack(message)
        assert bound.receive(1.0) is None
    note = json.loads(message.body)
    assert (note["task"], note["rows"], note["type"]) == ("task.amqp", 3_000, "eventindex.commit.v1")
    assert message.headers["ei-notification-id"] == note["id"]


@EMBEDDED
def test_server_sent_events_per_dataset_and_resumed_with_last_event_id(backend: Backend, tmp_path: Path) -> None:
    """Two clients see only their datasets' commits; one that disconnects and reconnects with
    Last-Event-ID gets what was committed meanwhile, nothing twice; a bad token gets 401."""
    (http_port,) = free_ports(1)
    proc, stderr = start(
        backend, tmp_path / "ledger.db", tmp_path, "--http-port", str(http_port),
        "--tokens", str(write_tokens(tmp_path / "tokens.json")), "--log-format", "json",
    )  # fmt: skip
    try:
        wait_for(lambda: _answers(http_port), 60, "the status server")
        alice, bob = EventStream(http_port, ALICE), EventStream(http_port, BOB)
        intruder = EventStream(http_port, "x" * 30)
        assert (alice.status, bob.status, intruder.status, intruder.body) == (200, 200, 401, b"")
        intruder.close()
        produce(backend, "task.sse.24a", "data24.sse", 1, 2_000, seed=1)
        produce(backend, "task.sse.25a", "data25.sse", 1, 2_000, seed=2)
        first_alice, first_bob = alice.take(1, 60), bob.take(1, 60)
        assert [e[2]["task"] for e in first_alice] == ["task.sse.24a"]
        assert [e[2]["task"] for e in first_bob] == ["task.sse.25a"]
        alice.close()
        produce(backend, "task.sse.24b", "data24.sse", 1, 2_000, seed=3)
        produce(backend, "task.sse.25b", "data25.sse", 1, 2_000, seed=4)
        produce(backend, "task.sse.24c", "data24.sse", 1, 2_000, seed=5)
        assert [e[2]["task"] for e in bob.take(1, 60)] == ["task.sse.25b"]
        wait_for(lambda: loaded(http_port, ("task.sse.24b", "task.sse.24c")), 60, "the commits")
        again = EventStream(http_port, ALICE, last_event_id=first_alice[0][0])
        resumed = again.take(3, 10)
        assert [e[2]["task"] for e in resumed] == ["task.sse.24b", "task.sse.24c"]
        assert all(e[1] == "commit" and int(e[0]) > int(first_alice[0][0]) for e in resumed)
        assert bob.take(1, 1) == []
        again.close()
        bob.close()
    finally:
        code = stop(proc)
    log = stderr.read_text()
    assert code == 0, log[-3000:]
    for line in log.splitlines():
        entry = json.loads(line)  # every line one JSON object
        assert {"timestamp", "level", "logger", "message"} <= set(entry)
        assert ALICE not in line and BOB not in line
    assert any(json.loads(line).get("task") == "task.sse.24a" for line in log.splitlines())
