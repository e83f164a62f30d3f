"""What `ei-supersink run` serves beside its work, for operators and downstream workflows: Prometheus
metrics (`--metrics-port`), the status page (`--http-port`, with Server-Sent Events authorised by
`--tokens`), commit notifications (`--notify`) and the log format (`--log-format`)."""

from __future__ import annotations

import argparse
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from eventindex.errors import ConfigError
from eventindex.transport import Consumer, check_broker_url
from supersink.intake import Counters
from supersink.ledger import Ledger
from supersink.logs import FORMATS, Redactor
from supersink.metrics import LogCounter, MeteredConsumer, SinkMetrics
from supersink.notify import Notifier
from supersink.web import IDLE_SECONDS, BoundedQuietServer, StatusServer, Tokens

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class _MetricsServer(BoundedQuietServer, WSGIServer):
    """prometheus_client's metrics server, bounded and quiet like the status page's."""


class _MetricsRequest(WSGIRequestHandler):
    timeout = IDLE_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics %s " + format, self.address_string(), *args)


def serve_metrics(host: str, port: int, metrics: SinkMetrics) -> WSGIServer:
    """The Prometheus metrics on http://host:port/metrics, served in threads of their own."""
    server_class: type[_MetricsServer] = type(
        "MetricsServer", (_MetricsServer,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET}
    )
    httpd: _MetricsServer = make_server(host, port, make_wsgi_app(metrics.registry), server_class, _MetricsRequest)
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    return httpd


def add_run_arguments(run: argparse.ArgumentParser, port: Callable[[str], int]) -> None:
    run.add_argument(
        "--metrics-port", type=port, default=None, metavar="PORT", help="serve Prometheus metrics on this port"
    )
    run.add_argument(
        "--metrics-host", default=LOOPBACK, metavar="ADDRESS", help="the address metrics are served on (127.0.0.1)"
    )
    run.add_argument(
        "--http-port",
        type=port,
        default=None,
        metavar="PORT",
        help="serve the read-only status page, /api/tasks, /api/quarantine, /metrics and /events (SSE) on this port",
    )
    run.add_argument(
        "--http-host", default=LOOPBACK, metavar="ADDRESS", help="the address the status page is served on (127.0.0.1)"
    )
    run.add_argument(
        "--tokens",
        type=Path,
        default=None,
        metavar="FILE",
        help='bearer tokens for /events: {"clients": [{"name": N, "token": T, "datasets": ["data24.*"]}]}',
    )
    run.add_argument(
        "--notify",
        default=None,
        metavar="URL",
        help="publish a notification of each commit to this broker destination: stomp://host:port/topic/NAME "
        "or amqp://host:port/ROUTING_KEY?exchange=NAME",
    )
    run.add_argument(
        "--log-format", choices=FORMATS, default="text", help="text lines, or one JSON object per line (json)"
    )


@dataclass(frozen=True)
class OpsConfig:
    """What `run` serves beside its work (the options add_run_arguments defines)."""

    broker: str
    metrics_port: int | None = None
    metrics_host: str = LOOPBACK
    http_port: int | None = None
    http_host: str = LOOPBACK
    tokens: Path | None = None
    notify: str | None = None
    #: how long a published commit notification is kept (the ledger forgets its task then too)
    forget_after: float | None = None


class Operations:
    """Set up before the service starts (tokens, notifier; their secrets redacted from the log), started
    with its counters, closed after it."""

    def __init__(self, config: OpsConfig, ledger: Ledger, redact: Redactor) -> None:
        if urlsplit(config.broker).path.startswith("/topic/"):
            raise ConfigError("--broker must be a queue: a topic delivers only to who is subscribed at the time")
        if config.tokens is not None and config.http_port is None:
            raise ConfigError("--tokens authorises /events of the status page: give --http-port too")
        tokens = Tokens.from_file(config.tokens) if config.tokens is not None else None
        if tokens is not None:
            redact.add(tokens.secrets())
        if config.notify is not None:
            check_broker_url(config.notify)
        self.config = config
        self.tokens = tokens
        self.ledger_path = ledger.path
        self.notifier = Notifier(ledger, config.notify, config.forget_after)
        self.logs = LogCounter()
        self.logs.install()
        self.metrics: SinkMetrics | None = None
        self.status: StatusServer | None = None
        self._metrics_server: WSGIServer | None = None

    def start(self, counters: Counters, states: tuple[str, ...]) -> None:
        config = self.config
        if config.metrics_port is None and config.http_port is None:
            return
        self.metrics = SinkMetrics(self.ledger_path, counters, states, self.notifier, self.logs)
        if config.metrics_port is not None:
            try:
                self._metrics_server = serve_metrics(config.metrics_host, config.metrics_port, self.metrics)
            except OSError as exc:
                raise ConfigError(
                    f"--metrics-port {config.metrics_port}: cannot listen on {config.metrics_host}: "
                    f"{exc.strerror or exc}"
                ) from None
            log.info("metrics on http://%s:%d/metrics", config.metrics_host, config.metrics_port)
        if config.http_port is not None:
            self.status = StatusServer(self.ledger_path, config.http_port, config.http_host, self.tokens, self.metrics)
            self.status.start()

    def consumer(self, consumer: Consumer) -> Consumer:
        return consumer if self.metrics is None else MeteredConsumer(consumer, self.metrics)

    def observe_load(self, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.load_seconds.observe(seconds)

    def close(self) -> None:
        self.logs.uninstall()
        if self.status is not None:
            self.status.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self.notifier.close()
