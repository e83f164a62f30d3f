"""The CLIs never print a credential, and never serve the status page on every interface unasked
(found by a security review).

- a URL with user-info is refused however its password is written (`/`, `?`, `#` in it), in one line
  that shows no part of the secret;
- every error line `ei-producer` and `ei-supersink` print is redacted (eventindex.redact), so a URL
  echoed by a check that is not credential-aware (an unknown scheme) shows `***@`, not the password;
- `--http-host ''` (and `--metrics-host ''`) is refused: an empty address listens on every interface.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import cli, sink_cli

SLASHED_S3 = "s3://AKIAHUNT:wJalr/XUtnFEMI@bucket/p?endpoint=http://127.0.0.1:1"
S3_SECRETS = ("AKIAHUNT", "wJalr", "XUtnFEMI")


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def producer(tmp_path: Path, store: str, broker: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli(
        "producer.cli", "--task", "t", "--job", "1", "--attempt", "1", "--dataset", "d", "--input", "synthetic:10",
        "--dry-run", "--store", store, "--broker", broker or f"sqlite://{tmp_path / 'q.db'}",
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_producer_refuses_an_s3_password_holding_a_slash(tmp_path: Path) -> None:
    """It was accepted (bucket 'AKIAHUNT:wJalr'), and the URL went into pointers, errors and the summary."""
    proc = producer(tmp_path, SLASHED_S3)
    assert proc.returncode == 2, proc.stdout
    line = one_line(proc)
    assert "must not carry credentials" in line
    assert not any(secret in proc.stdout + proc.stderr for secret in S3_SECRETS)


@pytest.mark.parametrize(
    ("broker", "secrets"),
    [
        ("stomp://alice:Super/Secret7@127.0.0.1:61613/queue/q", ("alice", "Super", "Secret7")),
        ("stomp://alice:Super?Secret8@127.0.0.1:61613/queue/q", ("alice", "Super", "Secret8")),
        ("amqp://alice:Super/Secret9@127.0.0.1:5672/q", ("alice", "Super", "Secret9")),
        ("sqlite://alice:SuperSecret10@/tmp/q.db", ("alice", "SuperSecret10")),
    ],
)
def test_the_producer_refuses_broker_credentials_without_echoing_them(
    tmp_path: Path, broker: str, secrets: tuple[str, ...]
) -> None:
    proc = producer(tmp_path, (tmp_path / "store").as_uri(), broker)
    assert proc.returncode == 2
    line = one_line(proc)
    assert "credentials" in line
    assert not any(secret in line for secret in secrets)


def test_every_producer_error_line_is_redacted(tmp_path: Path) -> None:
    """The store dispatcher echoes a URL of an unknown scheme: the error line masks its user-info."""
    proc = producer(tmp_path, "ftp://alice:Super/Secret@host/x")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "scheme must be" in line and "ftp://***@host/x" in line
    assert "alice" not in line and "Super" not in line and "Secret" not in line


def test_every_supersink_error_line_is_redacted() -> None:
    proc = sink_cli("committed", "--warehouse", "ftp://alice:Super/Secret@host/x?aws_secret_access_key=Key5")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "scheme must be" in line
    assert "alice" not in line and "Super" not in line and "Secret@" not in line and "Key5" not in line


@pytest.mark.parametrize(
    ("option", "url"),
    [
        ("--warehouse", "webhdfs://alice:Super/Secret13@127.0.0.1:9870/x"),
        ("--warehouse", "s3://bucket/w?endpoint=ftp://AK:SuperSecret14@127.0.0.1:1"),
        ("--warehouse", "s3://bucket/w?endpoint=http://127.0.0.1:1&secret_key=SuperSecret15"),
    ],
)
def test_the_supersink_refuses_warehouse_credentials_without_echoing_them(option: str, url: str) -> None:
    proc = sink_cli("committed", option, url)
    assert proc.returncode == 2
    line = one_line(proc)
    assert "credentials" in line
    assert "Secret" not in line and "alice" not in line


def test_the_supersink_refuses_an_s3_password_holding_a_slash_before_anything_is_quarantined(tmp_path: Path) -> None:
    """It ran, and every quarantine reason (ledger, /api/quarantine, status page) carried the store URL."""
    (tmp_path / "wh").mkdir()
    proc = sink_cli(
        "run", "--broker", f"sqlite://{tmp_path / 'q.db'}", "--store", SLASHED_S3,
        "--warehouse", (tmp_path / "wh").as_uri(), "--state", str(tmp_path / "ledger.db"), "--until-idle", "1",
    )  # fmt: skip
    assert proc.returncode == 2
    line = one_line(proc)
    assert "must not carry credentials" in line
    assert not any(secret in proc.stdout + proc.stderr for secret in S3_SECRETS)


@pytest.mark.parametrize("option", ["--http-host", "--metrics-host"])
def test_an_empty_listening_address_is_refused(tmp_path: Path, option: str) -> None:
    """`--http-host ''` served the status page on every interface (0.0.0.0); now refused as --metrics-host is."""
    (tmp_path / "store").mkdir()
    port_option = "--http-port" if option == "--http-host" else "--metrics-port"
    proc = sink_cli(
        "run", "--broker", f"sqlite://{tmp_path / 'q.db'}", "--store", (tmp_path / "store").as_uri(),
        "--warehouse", (tmp_path / "wh").as_uri(), "--state", str(tmp_path / "ledger.db"),
        port_option, str(free_port()), option, "", "--until-idle", "1",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert f"{option} is empty" in line
    assert not (tmp_path / "ledger.db").exists(), "refused before anything was created"


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("producer.cli", ["--task", "t", "--job", "1", "--attempt", "1", "--dataset", "d", "--chunk-events"]),
        ("producer.cli", ["--task", "t", "--job", "1", "--attempt", "1", "--dataset", "d", "--mode"]),
        ("supersink.cli", ["run", "--forget-after"]),
        ("catalog.cli", ["lookup", "--warehouse", "file:///tmp", "--event"]),
    ],
)
def test_a_usage_error_does_not_echo_a_password_given_to_the_wrong_option(module: str, args: list[str]) -> None:
    """argparse prints the value it refuses ("invalid int value: 's3://KEY:SECRET@...'"), and so did
    ei-catalog's own check of an event ("--event: '...' is not RUN:EVENT")."""
    proc = cli(module, *args, SLASHED_S3)
    assert proc.returncode == 2, proc.stdout
    line = one_line(proc)
    assert "error:" in line and "***@bucket" in line, line
    assert not any(secret in proc.stdout + proc.stderr for secret in S3_SECRETS)
