"""Fixtures for WebHDFS: `webhdfs` (the URL of a new, empty directory) and `webhdfs_endpoint` (the test endpoint).

By default `webhdfs` points into a :class:`testservers.webhdfs.WebHdfsEndpoint` started for the test: two
namenodes (the first active, the second a standby) and a datanode on free loopback ports, over a
temporary directory: `webhdfs://127.0.0.1:P1,127.0.0.1:P2/ei-test-<random>`.

Set `EI_WEBHDFS_URL` to run the same tests against a real cluster instead, e.g.
`EI_WEBHDFS_URL=webhdfs://nn1:9870,nn2:9870/tmp/eventindex-tests` (or `swebhdfs://...?ca=/path/ca.pem`,
`auth=kerberos`; the user from `HADOOP_USER_NAME`, as for ei-supersink): each test then gets a new
directory `ei-test-<random>` under that path, deleted (recursively) afterwards. Tests that steer the
namenodes (failover, standby, faults, TLS with a CA of their own) take `webhdfs_endpoint` and are
skipped then.

tests/integration/conftest.py imports both; elsewhere, import them into a conftest.py, or name this module
in a test module's `pytest_plugins`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventindex.store.webhdfs import WebHdfs, WebHdfsLocation
from testservers.webhdfs import WebHdfsEndpoint

REAL_CLUSTER_ENV = "EI_WEBHDFS_URL"


def real_cluster_url() -> str | None:
    """EI_WEBHDFS_URL, when the tests are to run against a real cluster."""
    return os.environ.get(REAL_CLUSTER_ENV) or None


@pytest.fixture
def webhdfs_endpoint(tmp_path: Path) -> Iterator[WebHdfsEndpoint]:
    """A started WebHDFS test endpoint with two namenodes (nn0 active); skipped when EI_WEBHDFS_URL is set."""
    if real_cluster_url():
        pytest.skip(f"steers the WebHDFS test endpoint; {REAL_CLUSTER_ENV} points at a real cluster")
    with WebHdfsEndpoint(tmp_path / "webhdfs", namenodes=2) as endpoint:
        yield endpoint


@pytest.fixture
def webhdfs(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty directory: on the test endpoint (the test's `webhdfs_endpoint`), or under
    EI_WEBHDFS_URL."""
    name = f"ei-test-{uuid.uuid4().hex[:12]}"
    real = real_cluster_url()
    if real is None:
        endpoint: WebHdfsEndpoint = request.getfixturevalue("webhdfs_endpoint")
        yield endpoint.url_for(f"/{name}")
        return
    base, _, query = real.partition("?")
    url = f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else "")
    yield url
    hdfs = WebHdfs(WebHdfsLocation.from_url(url))
    try:
        hdfs.delete(hdfs.location.root, recursive=True)
    finally:
        hdfs.close()
