"""Fixtures that run real servers on 127.0.0.1 for integration tests.

When a server is not installed the dependent tests are skipped locally, but fail
when ``CI=true`` (so a CI machine without the servers cannot go green by skipping).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from tests.conftest import FAULT_LINE
from tests.integration.faultkit import Backend
from tests.webhdfs_fixture import webhdfs, webhdfs_endpoint  # noqa: F401 - fixtures
from testservers import ActiveMQ, CephRGW, RabbitMQ, SeaweedFS, ServerUnavailable


def server_unavailable(reason: str) -> NoReturn:
    """Skip (locally) or fail (``CI=true``) because a server cannot be run here."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


_S = TypeVar("_S")


def construct_server(factory: Callable[[], _S]) -> _S:
    """Call ``factory``; skip or fail (see :func:`server_unavailable`) on ServerUnavailable."""
    try:
        return factory()
    except ServerUnavailable as exc:
        reason = str(exc)
    server_unavailable(reason)


@pytest.fixture(scope="session")
def activemq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActiveMQ]:
    """One ActiveMQ broker (STOMP on a free loopback port) for the whole session."""
    with construct_server(lambda: ActiveMQ(tmp_path_factory.mktemp("activemq"))) as server:
        yield server


@pytest.fixture(scope="module")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephRGW]:
    """One single-node Ceph cluster (mon, memstore OSD, radosgw) for the module that asks for it; modules
    using it run only with EI_WITH_CEPH=1, and then a missing Ceph fails them."""
    try:
        server = CephRGW(tmp_path_factory.mktemp("ceph"))
    except ServerUnavailable as exc:
        pytest.fail(f"EI_WITH_CEPH=1 but {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def ceph_env(ceph: CephRGW, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the AWS SDK environment at ``ceph``; return a new, empty bucket's name."""
    return _new_bucket(ceph, monkeypatch)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS (``weed mini``, S3 with random real credentials) for the whole session."""
    with construct_server(lambda: SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))) as server:
        yield server


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point AWS SDK environment variables at ``seaweedfs``; yield a new, empty bucket's name.

    The endpoint is not in the environment: use ``seaweedfs.endpoint``.
    """
    yield _new_bucket(seaweedfs, monkeypatch)


def _new_bucket(server: SeaweedFS | CephRGW, monkeypatch: pytest.MonkeyPatch) -> str:
    """The AWS SDK environment pointed at `server` (its credentials; no profile, token or endpoint of the
    machine's), and a new, empty bucket's name."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    for var, value in server.client_env().items():
        monkeypatch.setenv(var, value)
    bucket = f"ei-test-{uuid.uuid4().hex[:16]}"
    server.create_bucket(bucket)
    return bucket


@pytest.fixture
def stomp_queue(activemq: ActiveMQ) -> str:
    """A queue URL (``stomp://127.0.0.1:PORT/queue/<unique>``) no other test uses."""
    return activemq.stomp_url(f"ei.test.{uuid.uuid4().hex[:16]}")


# ---------------------------------------------------------------- the fault-injection report


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record one line per scenario; printed in the terminal summary.

    The line travels in the test's report (``user_properties``), so it reaches the summary from a pytest-xdist
    worker as well as from this process.
    """

    def record(line: str) -> None:
        request.node.user_properties.append((FAULT_LINE, f"{request.node.name}: {line}"))

    return record


@pytest.fixture(params=["embedded", "servers"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The embedded default; the real servers: SeaweedFS S3 (chunks and warehouse) + ActiveMQ STOMP; or, where a
    test asks for it (indirect parametrisation), "webhdfs": the embedded store and queue with a WebHDFS warehouse
    (the test endpoint, or the cluster EI_WEBHDFS_URL names)."""
    if request.param in ("embedded", "webhdfs"):
        warehouse = request.getfixturevalue("webhdfs") if request.param == "webhdfs" else (tmp_path / "wh").as_uri()
        (tmp_path / "store").mkdir(exist_ok=True)  # the supersink refuses a store directory that does not exist
        return Backend(request.param, (tmp_path / "store").as_uri(), f"sqlite://{tmp_path / 'queue.db'}", warehouse)
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    bucket: str = request.getfixturevalue("s3_env")
    queue: str = request.getfixturevalue("stomp_queue")
    endpoint = f"endpoint={seaweedfs.endpoint}"
    return Backend(
        "servers", f"s3://{bucket}/chunks?{endpoint}", queue, f"s3://{bucket}/warehouse?{endpoint}",
        seaweedfs.client_env(),
    )  # fmt: skip


# ---------------------------------------------------------------- RabbitMQ (AMQP and STOMP)


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One RabbitMQ node (AMQP + STOMP on free loopback ports, a generated user) for the whole session."""
    with construct_server(lambda: RabbitMQ(tmp_path_factory.mktemp("rabbitmq"))) as server:
        yield server


@pytest.fixture
def rabbit_env(rabbitmq: RabbitMQ, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Put ``rabbitmq``'s credentials (EI_BROKER_USERNAME/PASSWORD) in this process's environment."""
    env = rabbitmq.client_env()
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return env


@pytest.fixture
def amqp_queue(rabbitmq: RabbitMQ, rabbit_env: dict[str, str]) -> str:
    """An ``amqp://127.0.0.1:PORT/<unique>`` queue URL no other test uses (credentials in the environment)."""
    return rabbitmq.amqp_url(f"ei.test.{uuid.uuid4().hex[:16]}")


@pytest.fixture
def rabbit_stomp_queue(rabbitmq: RabbitMQ, rabbit_env: dict[str, str]) -> str:
    """A ``stomp://127.0.0.1:PORT/queue/<unique>?vhost=/`` URL on RabbitMQ (credentials in the environment)."""
    return rabbitmq.stomp_url(f"ei.test.{uuid.uuid4().hex[:16]}")


# ---------------------------------------------------------------- brokers of one test or module, to restart or stop


@pytest.fixture
def private_activemq(activemq: ActiveMQ, tmp_path: Path) -> Iterator[ActiveMQ]:
    """An ActiveMQ of this test alone, to restart, freeze or stop (`activemq` checks that ActiveMQ is installed)."""
    server = ActiveMQ(tmp_path / "activemq")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _private_rabbit(rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    server = RabbitMQ(tmp_path_factory.mktemp("private-rabbitmq"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_rabbit(_private_rabbit: RabbitMQ) -> RabbitMQ:
    """A second RabbitMQ node, to restart, freeze or stop (started again if a test left it stopped)."""
    if not _private_rabbit.running:
        _private_rabbit.start()
    return _private_rabbit
