"""The supersink's read-only HTTP server (`run --http-port`): a status page, its JSON, metrics and
commit notifications as Server-Sent Events.

    GET /                  the status page (server-rendered HTML, refreshes itself every 10 s)
    GET /api/tasks         every task: the same JSON as `ei-supersink status --json`
    GET /api/tasks/<task>  one task (404 when the ledger does not know it)
    GET /api/quarantine    the quarantine: the same entries as `ei-supersink quarantine list --json`
    GET /metrics           the Prometheus metrics (supersink.metrics)
    GET /events            commit notifications (supersink.notify) as W3C Server-Sent Events

Nothing it serves can change state: it answers GET only, and reads the ledger through a read-only
connection of its own in each request's thread, never the service's connection or thread, so it
answers while the service is busy loading.

`/events` needs `Authorization: Bearer TOKEN`, a token of the `--tokens` file, which allows a set of
dataset patterns (shell-style globs, `data24.*`); a client receives the notifications of those
datasets only. A missing or unknown token gets 401 with no data. Each event's `id` is its
notification's sequence number: a client that reconnects with `Last-Event-ID` gets every later
notification it may see, none missed (as long as the ledger keeps them, see supersink.notify). A
client without `Last-Event-ID` gets the notifications from its connection on. Tokens are compared
in constant time and never logged: the request log names the token's client.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hmac
import html
import json
import logging
import re
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from eventindex.errors import ConfigError
from supersink.ledger import LOADED_STATES, Ledger, QuarantineState, TaskState
from supersink.metrics import SinkMetrics
from supersink.notify import since
from supersink.status import status, task_status

log = logging.getLogger(__name__)

#: How often an open event stream looks for new notifications, and sends a keep-alive comment.
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
#: What a client waits before reconnecting (the SSE `retry` field), in milliseconds.
RETRY_MS = 2000
#: A `Last-Event-ID` this server can have sent: a notification's sequence number (ASCII digits, an int64).
_EVENT_ID = re.compile(r"[0-9]{1,18}")
REFRESH_SECONDS = 10
MAX_LISTED_MISSING = 5
#: Connections served at once by each of the status and metrics servers (a thread each); one more is
#: answered 503 and closed. Event streams hold theirs while they last.
MAX_CONNECTIONS = 256
#: A connection that sends nothing (a request cut short, an idle keep-alive) for this long is closed.
IDLE_SECONDS = 30.0


@dataclass(frozen=True)
class Client:
    """A bearer token's holder: its name (for logs) and the dataset patterns it may see."""

    name: str
    token: str
    datasets: tuple[str, ...]

    def may_see(self, dataset: str) -> bool:
        return any(fnmatch.fnmatchcase(dataset, pattern) for pattern in self.datasets)


class Tokens:
    """The `--tokens` file: `{"clients": [{"name": "...", "token": "...", "datasets": ["data24.*", ...]}]}`."""

    MIN_TOKEN = 16

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients

    @classmethod
    def from_file(cls, path: Path) -> Tokens:
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"--tokens {path}: cannot read it: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(f"--tokens {path}: not JSON: {exc}") from None
        entries = data.get("clients") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f'--tokens {path}: expected {{"clients": [{{"name", "token", "datasets"}}, ...]}}')
        clients = []
        for number, entry in enumerate(entries, 1):
            where = f"--tokens {path}: client {number}"
            if not isinstance(entry, dict) or set(entry) != {"name", "token", "datasets"}:
                raise ConfigError(f"{where}: needs exactly name, token and datasets")
            name, token, datasets = entry["name"], entry["token"], entry["datasets"]
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}: name must be a non-empty string")
            if not isinstance(token, str) or len(token) < cls.MIN_TOKEN or not token.isprintable() or " " in token:
                raise ConfigError(f"{where} ({name}): token must be at least {cls.MIN_TOKEN} printable characters")
            if not isinstance(datasets, list) or not all(isinstance(d, str) and d for d in datasets):
                raise ConfigError(f"{where} ({name}): datasets must be a list of dataset patterns")
            clients.append(Client(name, token, tuple(datasets)))
        if len({c.token for c in clients}) != len(clients):
            raise ConfigError(f"--tokens {path}: a token is given twice")
        return cls(clients)

    def secrets(self) -> list[str]:
        return [c.token for c in self.clients]

    def client(self, authorization: str | None) -> Client | None:
        """The client an `Authorization: Bearer TOKEN` header names; None for none or an unknown token."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        found = None
        for client in self.clients:  # every token compared, in constant time: no timing hint
            if hmac.compare_digest(client.token.encode(), token.strip().encode()):
                found = client
        return found


class BoundedQuietServer(socketserver.ThreadingMixIn):
    """A thread per connection, at most MAX_CONNECTIONS at once (one more is answered 503 and closed),
    and a request that fails before its handler can answer (a client resetting its connection, one that
    timed out) is one line in the log, never a traceback on stderr. Mixed into the status page's and
    the metrics' HTTP servers."""

    daemon_threads = True
    _slots: threading.BoundedSemaphore | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots is None:
            self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            assert self._slots is not None
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("HTTP client %s went away: %s", client_address, exc)
        else:
            log.warning("HTTP request from %s failed: %s: %s", client_address, type(exc).__name__, exc)


class _StatusHTTPServer(BoundedQuietServer, HTTPServer):
    pass


class StatusServer:
    """The HTTP server, in threads of its own (one per connection, MAX_CONNECTIONS at most)."""

    def __init__(
        self,
        ledger_path: Path,
        port: int,
        host: str = "127.0.0.1",
        tokens: Tokens | None = None,
        metrics: SinkMetrics | None = None,
    ) -> None:
        self.ledger_path = ledger_path
        self.tokens = tokens
        self.metrics = metrics
        self.stopping = threading.Event()
        self.started = time.time()
        handler = type("Handler", (_Handler,), {"server_state": self})
        try:
            self.httpd = _StatusHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"--http-port {port}: cannot listen on {host}: {exc.strerror or exc}") from None
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="status-http", daemon=True)

    def start(self) -> StatusServer:
        self.thread.start()
        log.info("status page on http://%s:%d/", self.httpd.server_address[0], self.port)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def ledger(self) -> Ledger:
        return Ledger.read_only(self.ledger_path)


class _Handler(BaseHTTPRequestHandler):
    server_state: StatusServer
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS
    #: who made the request, for the request log: a token's client name, never the token
    client_name = "-"
    #: whether a status line went out (an error after it can only close the connection)
    _answered = False

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s " + format, self.address_string(), self.client_name, *args)

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        try:
            if path == "/":
                self._page()
            elif path == "/api/tasks":
                self._json(self._status())
            elif path.startswith("/api/tasks/"):
                self._task(path.removeprefix("/api/tasks/"))
            elif path == "/api/quarantine":
                self._json(self._quarantine())
            elif path == "/metrics" and self.server_state.metrics is not None:
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self.server_state.metrics.registry))
            elif path == "/events":
                self._events()
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away
        except Exception as exc:  # one line in the log, never a traceback; the service goes on
            log.warning("status page: GET %s failed: %s: %s", path, type(exc).__name__, exc)
            if not self._answered:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", b"internal error\n")
            self.close_connection = True

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    # ------------------------------------------------------------ plain answers

    def _send(self, code: HTTPStatus, content_type: str, body: bytes, **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, code: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(code, "application/json", (json.dumps(data, indent=2) + "\n").encode())

    def _status(self) -> dict[str, Any]:
        ledger = self.server_state.ledger()
        try:
            return status(ledger)
        finally:
            ledger.close()

    def _quarantine(self) -> list[dict[str, Any]]:
        ledger = self.server_state.ledger()
        try:
            listing = ledger.quarantine_listing()
        finally:
            ledger.close()
        return [asdict(entry) for entry in listing]

    def _task(self, task: str) -> None:
        ledger = self.server_state.ledger()
        try:
            found = ledger.task(task) is not None
            data = task_status(ledger, task) if found else {"error": f"no task {task}"}
        finally:
            ledger.close()
        self._json(data, HTTPStatus.OK if found else HTTPStatus.NOT_FOUND)

    def _page(self) -> None:
        report = self._status()
        quarantine = self._quarantine()
        metrics = self.server_state.metrics
        summary = metrics.summary() if metrics is not None else {}
        body = render_page(report, quarantine, summary, time.time() - self.server_state.started)
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", body.encode())

    # ------------------------------------------------------------ Server-Sent Events

    def _events(self) -> None:
        tokens = self.server_state.tokens
        client = tokens.client(self.headers.get("Authorization")) if tokens is not None else None
        if client is None:
            self._send(
                HTTPStatus.UNAUTHORIZED,
                "text/plain; charset=utf-8",
                b"",
                WWW_Authenticate='Bearer realm="ei-supersink"',
            )
            return
        self.client_name = client.name
        resume = (self.headers.get("Last-Event-ID") or "").strip()
        if resume and not _EVENT_ID.fullmatch(resume):
            self._send(
                HTTPStatus.BAD_REQUEST,
                "text/plain; charset=utf-8",
                b"Last-Event-ID must be the id of an event this server sent (a notification sequence number)\n",
            )
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        ledger = self.server_state.ledger()
        try:
            last = int(resume) if resume else ledger.last_notification_seq()
            self._write(f"retry: {RETRY_MS}\n: {client.name} from event {last}\n\n")
            sent_at = time.monotonic()
            while not self.server_state.stopping.is_set():
                for note in since(ledger, after_seq=last, limit=1000):
                    last = note.seq
                    if client.may_see(note.dataset):
                        self._write(f"id: {note.seq}\nevent: commit\ndata: {note.body}\n\n")
                        sent_at = time.monotonic()
                if time.monotonic() - sent_at >= KEEPALIVE_SECONDS:
                    self._write(": keep-alive\n\n")  # a client gone is noticed here
                    sent_at = time.monotonic()
                self.server_state.stopping.wait(POLL_SECONDS)
        finally:
            ledger.close()

    def _write(self, text: str) -> None:
        self.wfile.write(text.encode())
        self.wfile.flush()


# ------------------------------------------------------------------------------------ the page

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
.meta { color: #555; margin-bottom: 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { font-weight: 600; white-space: nowrap; }
.state-loaded, .state-loaded-partial { color: #176b1e; } .state-waiting, .state-loading { color: #1d4f91; }
.state-damaged, .state-failed, .state-load-failed, .state-claimed-elsewhere { color: #b00020; }
.counters td:first-child { color: #555; } .reason { max-width: 40em; }
"""


def render_page(
    report: dict[str, Any], quarantine: list[dict[str, Any]], counters: dict[str, Any], uptime: float
) -> str:
    """The status page: every task, the quarantine, the service's uptime and counters."""
    now = time.time()
    e = html.escape
    rows = []
    for t in report["tasks"]:
        expected = "?" if t["expected_jobs"] is None else f"{t['expected_jobs']:,}"
        missing = [str(m) for m in t["missing"][:MAX_LISTED_MISSING]]
        if t["missing_total"] > len(missing):
            missing.append(f"… and {t['missing_total'] - len(missing)} more")
        rows.append(
            f'<tr class="task" data-task="{e(t["task"])}" data-state="{e(t["state"])}">'
            f'<td class="name">{e(t["task"])}</td><td>{e(t["dataset"] or "-")}</td>'
            f'<td class="state state-{e(t["state"])}">{e(t["state"])}</td>'
            f'<td class="num jobs">{t["jobs_resolved"]:,} / {expected}</td>'
            f'<td class="num events">{t["events"]:,}</td>'
            f'<td class="reason">{"<br>".join(e(r) for r in _reasons(t))}</td>'
            f'<td class="missing">{"<br>".join(e(m) for m in missing)}</td>'
            f'<td class="num age">{_age(now - t["first_seen"])}</td></tr>'
        )
    held = [q for q in quarantine if q["state"] == QuarantineState.HELD]
    qrows = [
        f'<tr class="quarantined"><td class="num">{q["id"]}</td><td>{_when(q["received"])}</td>'
        f'<td>{e(q["task"] or "-")}</td><td class="reason">{e(q["reason"])}</td><td>{e(q["state"])}</td></tr>'
        for q in quarantine
    ]
    crows = [
        f"<tr><td>{e(name.replace('_', ' '))}</td><td class='num'>{_figure(v)}</td></tr>"
        for name, v in counters.items()
    ]
    states: dict[str, int] = {}
    for t in report["tasks"]:
        states[t["state"]] = states.get(t["state"], 0) + 1
    by_state = ", ".join(f"{n} {e(s)}" for s, n in sorted(states.items())) or "no tasks"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>ei-supersink status</title><style>{_STYLE}</style></head>
<body>
<h1>ei-supersink</h1>
<div class="meta">up {_age(uptime)} · {len(report["tasks"]):,} tasks ({by_state}) · {len(held):,} quarantined ·
page made {_when(now)} (refreshes every {REFRESH_SECONDS} s; read-only)</div>
<h2>Tasks</h2>
<table id="tasks"><thead><tr><th>task</th><th>dataset</th><th>state</th><th>jobs resolved / expected</th>
<th>events</th><th>reason</th><th>missing</th><th>age</th></tr></thead>
<tbody>{"".join(rows) or '<tr><td colspan="8">no tasks</td></tr>'}</tbody></table>
<h2>Quarantine</h2>
<table id="quarantine"><thead><tr><th>#</th><th>received</th><th>task</th><th>reason</th><th>state</th></tr></thead>
<tbody>{"".join(qrows) or '<tr><td colspan="5">empty</td></tr>'}</tbody></table>
<h2>Service</h2>
<table id="counters" class="counters"><tbody>{"".join(crows) or "<tr><td>no counters</td></tr>"}</tbody></table>
</body></html>
"""


def _reasons(t: dict[str, Any]) -> Iterator[str]:
    """Why a task is where it is: its state's detail, what failed, what is wrong (empty when loaded)."""
    if t["state"] in LOADED_STATES:
        if t["partial"]:
            yield "loaded partial"
        return
    if t["detail"] and t["state"] != TaskState.WAITING:
        yield t["detail"]
    if t["failure"] and t["failure"] != t["detail"]:
        yield t["failure"]
    yield from (p for p in t["problems"] if p != t["detail"])


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _figure(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))
