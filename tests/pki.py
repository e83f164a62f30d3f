"""Test certificates made with the openssl command: a CA of our own, a server certificate it signed
for 127.0.0.1, and a second, unrelated CA (a wrong `ca=`)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import server_unavailable


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server certificate
    server_cert: Path  # CN and subjectAltName 127.0.0.1, for serverAuth
    server_key: Path
    other_ca: Path  # a CA that signed nothing here


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path, name: str = "eventindex test CA") -> Pki:
    """The certificates under `directory` (made if missing); skipped (failed with CI=true) without openssl."""
    if shutil.which("openssl") is None:
        server_unavailable("openssl is needed to make the test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=directory)  # fmt: skip
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem",
             "-days", "2", "-subj", "/CN=another CA", cwd=directory)  # fmt: skip
    return Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "other.pem")
