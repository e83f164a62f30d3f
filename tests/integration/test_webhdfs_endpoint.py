"""The WebHDFS REST API as the test endpoint (testservers.webhdfs) answers it, over HTTP and through HdfsCLI.

The protocol tests take `webhdfs` (a URL of an empty directory) and talk to whichever namenode is
active: with EI_WEBHDFS_URL set (see tests/webhdfs_fixture.py) they run unchanged against a real
cluster, which is how the endpoint's answers can be checked against Hadoop's. Tests that steer the
endpoint (standby, stopped namenodes, faults, process mode) need it and are skipped then.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hdfs import HdfsError, InsecureClient

from eventindex.store.webhdfs import WebHdfs, WebHdfsLocation
from testservers.webhdfs import Fault, WebHdfsEndpoint

pytestmark = pytest.mark.integration

FILE_STATUS_FIELDS = {
    "accessTime",
    "blockSize",
    "group",
    "length",
    "modificationTime",
    "owner",
    "pathSuffix",
    "permission",
    "replication",
    "type",
}


@dataclass
class Raw:
    """Plain HTTP against the active namenode, with the session (user, TLS, Kerberos) of the production client."""

    hdfs: WebHdfs
    base: str
    root: str

    def request(self, method: str, path: str, *, follow: bool = False, **params: str) -> requests.Response:
        return self.hdfs.session.request(
            method, f"{self.base}/webhdfs/v1{path}", params=params, allow_redirects=follow, timeout=30
        )

    def to_data_port(self, method: str, path: str, data: bytes, **params: str) -> requests.Response:
        """Both steps of a CREATE or APPEND; the first must be a 307 to another port."""
        first = self.hdfs.session.request(
            method, f"{self.base}/webhdfs/v1{path}", params=params, allow_redirects=False, timeout=30
        )
        assert first.status_code == 307, first.text
        assert first.content == b""
        location = first.headers["Location"]
        assert urlsplit(location).port != urlsplit(self.base).port
        assert f"op={params['op']}" in location
        return self.hdfs.session.request(method, location, data=data, timeout=30)

    def read(self, path: str, **params: str) -> bytes:
        response = self.hdfs.session.request(
            "GET", f"{self.base}/webhdfs/v1{path}", params={"op": "OPEN", **params}, allow_redirects=True, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.content

    @property
    def user(self) -> str | None:
        """The user.name sent (None with Kerberos)."""
        params = self.hdfs.session.params
        assert isinstance(params, dict)
        value = params.get("user.name")
        return str(value) if value is not None else None


def remote_exception(response: requests.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["RemoteException"]
    assert set(body) >= {"exception", "javaClassName", "message"}
    return body


@pytest.fixture
def raw(webhdfs: str) -> Iterator[Raw]:
    hdfs = WebHdfs(WebHdfsLocation.from_url(webhdfs))
    root = hdfs.location.root
    hdfs.mkdirs(root)
    for base in hdfs.location.client_url.split(";"):
        try:
            response = hdfs.session.get(f"{base}/webhdfs/v1/", params={"op": "GETFILESTATUS"}, timeout=10)
        except requests.RequestException:
            continue
        if response.status_code == 200:
            yield Raw(hdfs, base, root)
            hdfs.close()
            return
    pytest.fail(f"no namenode of {webhdfs} answers")


def test_create_and_append_go_through_a_redirect_to_the_data_port(raw: Raw) -> None:
    path = f"{raw.root}/two-step.txt"
    created = raw.to_data_port("PUT", path, b"first", op="CREATE", overwrite="false", permission="640")
    assert created.status_code == 201, created.text
    assert created.headers["Location"].endswith(path)
    appended = raw.to_data_port("POST", path, b" and second", op="APPEND")
    assert appended.status_code == 200, appended.text

    opened = raw.request("GET", path, op="OPEN")
    assert opened.status_code == 307
    assert urlsplit(opened.headers["Location"]).port != urlsplit(raw.base).port
    data = raw.hdfs.session.get(opened.headers["Location"], timeout=30)
    assert (data.status_code, data.content) == (200, b"first and second")
    assert data.headers["Content-Type"] == "application/octet-stream"

    status = raw.request("GET", path, op="GETFILESTATUS").json()["FileStatus"]
    assert (status["type"], status["length"], status["permission"]) == ("FILE", 16, "640")
    if raw.user is not None:
        assert status["owner"] == raw.user

    noredirect = raw.request("GET", path, op="OPEN", noredirect="true")
    assert noredirect.status_code == 200
    assert urlsplit(noredirect.json()["Location"]).port != urlsplit(raw.base).port


def test_create_without_overwrite_refuses_an_existing_file(raw: Raw) -> None:
    path = f"{raw.root}/once.txt"
    assert raw.to_data_port("PUT", path, b"original", op="CREATE").status_code == 201
    refused = raw.to_data_port("PUT", path, b"second writer", op="CREATE", overwrite="false")
    assert refused.status_code == 403
    error = remote_exception(refused)
    assert error["exception"] == "FileAlreadyExistsException"
    assert error["javaClassName"] == "org.apache.hadoop.fs.FileAlreadyExistsException"
    assert path in error["message"]
    assert raw.read(path) == b"original"

    assert raw.to_data_port("PUT", path, b"replaced", op="CREATE", overwrite="true").status_code == 201
    assert raw.read(path) == b"replaced"

    directory = f"{raw.root}/a-directory"
    raw.hdfs.mkdirs(directory)
    onto_dir = raw.to_data_port("PUT", directory, b"x", op="CREATE", overwrite="true")
    assert (onto_dir.status_code, remote_exception(onto_dir)["exception"]) == (403, "FileAlreadyExistsException")

    with pytest.raises(HdfsError) as caught:
        raw.hdfs.client.write(path, data=b"through HdfsCLI", overwrite=False)
    assert caught.value.exception == "FileAlreadyExistsException"


def test_open_reads_the_range_offset_and_length_name(raw: Raw) -> None:
    data = random.Random(5).randbytes(3 * 1024 * 1024 + 17)
    path = f"{raw.root}/ranges.bin"
    raw.hdfs.client.write(path, data=data)
    size = len(data)
    for offset, length in [(0, None), (0, 1), (1, 4096), (size - 17, 17), (size - 5, 100), (123_457, 2_000_000)]:
        params = {"offset": str(offset)} | ({"length": str(length)} if length is not None else {})
        end = size if length is None else offset + length
        assert raw.read(path, **params) == data[offset:end], (offset, length)
    assert raw.read(path, offset=str(size)) == b""
    assert raw.read(path, offset="10", length="0") == b""
    missing = raw.request("GET", f"{raw.root}/missing", op="OPEN")
    assert (missing.status_code, remote_exception(missing)["exception"]) == (404, "FileNotFoundException")
    with raw.hdfs.client.read(path, offset=1_000_000, length=10) as reader:
        assert reader.read() == data[1_000_000:1_000_010]


def test_rename_answers_false_instead_of_replacing_and_moves_into_directories(raw: Raw) -> None:
    def rename(src: str, dst: str) -> bool:
        response = raw.request("PUT", f"{raw.root}/{src}", op="RENAME", destination=f"{raw.root}/{dst}")
        assert response.status_code == 200, response.text
        return bool(response.json()["boolean"])

    client = raw.hdfs.client
    client.write(f"{raw.root}/a.txt", data=b"a")
    client.write(f"{raw.root}/b.txt", data=b"b")
    assert rename("a.txt", "b.txt") is False  # the destination exists: both stay
    assert (raw.read(f"{raw.root}/a.txt"), raw.read(f"{raw.root}/b.txt")) == (b"a", b"b")
    assert rename("a.txt", "c.txt") is True
    assert rename("missing.txt", "d.txt") is False
    assert rename("b.txt", "no-such-dir/b.txt") is False

    client.makedirs(f"{raw.root}/staged/part")
    client.write(f"{raw.root}/staged/part/x.parquet", data=b"x")
    client.makedirs(f"{raw.root}/final")
    assert rename("staged", "final") is True  # onto an existing directory: moved INSIDE it
    assert client.list(f"{raw.root}/final") == ["staged"]
    assert raw.read(f"{raw.root}/final/staged/part/x.parquet") == b"x"
    assert rename("final", "final/staged/part/inside") is False  # into its own subtree
    assert rename("c.txt", "final") is True  # a file onto a directory: inside too
    assert sorted(client.list(f"{raw.root}/final")) == ["c.txt", "staged"]
    with pytest.raises(HdfsError, match="Unable to rename"):
        client.rename(f"{raw.root}/b.txt", f"{raw.root}/final/c.txt")


def test_mkdirs_status_listing_and_delete(raw: Raw) -> None:
    made = raw.request("PUT", f"{raw.root}/d/e", op="MKDIRS", permission="750")
    assert (made.status_code, made.json()) == (200, {"boolean": True})
    raw.hdfs.client.write(f"{raw.root}/d/e/f.txt", data=b"12345", permission="600")
    raw.hdfs.client.write(f"{raw.root}/d/a.txt", data=b"")

    status = raw.request("GET", f"{raw.root}/d/e", op="GETFILESTATUS").json()["FileStatus"]
    assert set(status) >= FILE_STATUS_FIELDS
    assert (status["type"], status["permission"], status["length"], status["pathSuffix"]) == ("DIRECTORY", "750", 0, "")
    assert isinstance(status["modificationTime"], int) and status["modificationTime"] > 1_600_000_000_000

    listing = raw.request("GET", f"{raw.root}/d", op="LISTSTATUS").json()["FileStatuses"]["FileStatus"]
    assert [(s["pathSuffix"], s["type"], s["length"]) for s in listing] == [("a.txt", "FILE", 0), ("e", "DIRECTORY", 0)]
    assert all(set(s) >= FILE_STATUS_FIELDS for s in listing)
    of_file = raw.request("GET", f"{raw.root}/d/e/f.txt", op="LISTSTATUS").json()["FileStatuses"]["FileStatus"]
    assert [(s["pathSuffix"], s["length"], s["permission"]) for s in of_file] == [("", 5, "600")]
    if raw.user is not None:
        assert {s["owner"] for s in (status, *listing, *of_file)} == {raw.user}

    summary = raw.request("GET", f"{raw.root}/d", op="GETCONTENTSUMMARY").json()["ContentSummary"]
    assert (summary["directoryCount"], summary["fileCount"], summary["length"]) == (2, 2, 5)

    not_empty = raw.request("DELETE", f"{raw.root}/d", op="DELETE")
    assert (not_empty.status_code, remote_exception(not_empty)["exception"]) == (
        403,
        "PathIsNotEmptyDirectoryException",
    )
    assert raw.request("DELETE", f"{raw.root}/d", op="DELETE", recursive="true").json() == {"boolean": True}
    assert raw.request("DELETE", f"{raw.root}/d", op="DELETE", recursive="true").json() == {"boolean": False}
    gone = raw.request("GET", f"{raw.root}/d", op="GETFILESTATUS")
    assert gone.status_code == 404
    assert remote_exception(gone) | {"message": ""} == {
        "exception": "FileNotFoundException",
        "javaClassName": "java.io.FileNotFoundException",
        "message": "",
    }


def test_bad_requests_are_illegal_arguments(raw: Raw) -> None:
    unknown = raw.request("GET", raw.root, op="NOSUCHOP")
    assert (unknown.status_code, remote_exception(unknown)["exception"]) == (400, "IllegalArgumentException")
    wrong_method = raw.request("GET", raw.root, op="MKDIRS")
    assert (wrong_method.status_code, remote_exception(wrong_method)["exception"]) == (400, "IllegalArgumentException")
    bad_permission = raw.request("PUT", f"{raw.root}/p", op="MKDIRS", permission="999")
    assert (bad_permission.status_code, remote_exception(bad_permission)["exception"]) == (
        400,
        "IllegalArgumentException",
    )


def test_a_file_being_written_is_held_by_its_writer(raw: Raw) -> None:
    """While a client streams a file (chunked), CREATE without overwrite and APPEND by another fail with
    AlreadyBeingCreatedException; CREATE with overwrite replaces the file, and the first upload then fails."""
    path = f"{raw.root}/held.bin"
    release = threading.Event()
    errors: list[BaseException] = []

    def slow_body() -> Iterator[bytes]:
        yield b"a" * 65536
        release.wait(30)
        for _ in range(47):
            yield b"b" * 65536

    def first_writer() -> None:
        try:
            raw.hdfs.client.write(path, data=slow_body())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first_writer)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while raw.request("GET", path, op="GETFILESTATUS").status_code != 200:
            assert time.monotonic() < deadline, "the first writer's file never appeared"
            time.sleep(0.05)
        for method, params in [("PUT", {"op": "CREATE", "overwrite": "false"}), ("POST", {"op": "APPEND"})]:
            held = raw.to_data_port(method, path, b"second", **params)
            assert (held.status_code, remote_exception(held)["exception"]) == (403, "AlreadyBeingCreatedException")
        replaced = raw.to_data_port("PUT", path, b"second writer", op="CREATE", overwrite="true")
        assert replaced.status_code == 201, replaced.text
    finally:
        release.set()
        thread.join(60)
    assert len(errors) == 1 and isinstance(errors[0], HdfsError), errors
    assert raw.read(path) == b"second writer"


def test_refusals_of_the_endpoint(webhdfs_endpoint: WebHdfsEndpoint) -> None:
    """Answers taken from Hadoop's code rather than its documentation (checked here on the endpoint only)."""
    session = requests.Session()
    session.params = {"user.name": "alice"}
    client = InsecureClient(webhdfs_endpoint.namenode_urls[0], user="alice", root="/")
    client.write("/f.txt", data=b"12345")
    nn0 = webhdfs_endpoint.namenode_urls[0]
    beyond = session.get(f"{nn0}/webhdfs/v1/f.txt", params={"op": "OPEN", "offset": "6"}, timeout=10)
    assert (beyond.status_code, remote_exception(beyond)["exception"]) == (403, "EOFException")
    under_file = session.put(f"{nn0}/webhdfs/v1/f.txt/sub", params={"op": "MKDIRS"}, timeout=10)
    assert (under_file.status_code, remote_exception(under_file)["exception"]) == (403, "ParentNotDirectoryException")
    not_implemented = session.get(f"{nn0}/webhdfs/v1/f.txt", params={"op": "GETFILECHECKSUM"}, timeout=10)
    error = remote_exception(not_implemented)
    assert (not_implemented.status_code, error["exception"]) == (400, "UnsupportedOperationException")
    assert "not implemented by the WebHDFS test endpoint" in error["message"]
    dotdot = session.get(f"{nn0}/webhdfs/v1/a/%2E%2E/f.txt", params={"op": "GETFILESTATUS"}, timeout=10)
    assert (dotdot.status_code, remote_exception(dotdot)["exception"]) == (400, "InvalidPathException")
    skipped = session.get(f"{webhdfs_endpoint.datanode.http_url}/webhdfs/v1/f.txt", params={"op": "OPEN"}, timeout=10)
    assert (skipped.status_code, remote_exception(skipped)["exception"]) == (400, "IllegalArgumentException")


def test_a_standby_namenode_answers_standby_exception(webhdfs_endpoint: WebHdfsEndpoint) -> None:
    ep = webhdfs_endpoint
    nn0, nn1 = ep.namenode_urls
    session = requests.Session()
    session.params = {"user.name": "alice"}
    for method, op, category in [("GET", "GETFILESTATUS", "READ"), ("PUT", "MKDIRS", "WRITE")]:
        answer = session.request(method, f"{nn1}/webhdfs/v1/x", params={"op": op}, timeout=10)
        error = remote_exception(answer)
        assert (answer.status_code, error["exception"], error["javaClassName"]) == (
            403,
            "StandbyException",
            "org.apache.hadoop.ipc.StandbyException",
        )
        assert f"Operation category {category} is not supported in state standby" in error["message"]
    assert session.put(f"{nn0}/webhdfs/v1/x", params={"op": "MKDIRS"}, timeout=10).json() == {"boolean": True}

    client = InsecureClient(f"{nn0};{nn1}", user="alice", root="/")
    client.write("/x/before.txt", data=b"before")
    ep.failover(1)
    assert session.get(f"{nn0}/webhdfs/v1/x", params={"op": "GETFILESTATUS"}, timeout=10).status_code == 403
    client.write("/x/after.txt", data=b"after")  # HdfsCLI moves on to nn1 after nn0's StandbyException
    with client.read("/x/before.txt") as reader:
        assert reader.read() == b"before"
    served = [(r.node, r.status) for r in ep.requests if r.path == "/x/after.txt" and r.op == "CREATE"]
    assert served[:2] == [("nn0", 403), ("nn1", 307)]


def test_a_stopped_namenode_refuses_connections_and_comes_back_on_its_port(
    webhdfs_endpoint: WebHdfsEndpoint,
) -> None:
    ep = webhdfs_endpoint
    nn0, nn1 = ep.namenode_urls
    client = InsecureClient(f"{nn0};{nn1}", user="alice", root="/")
    client.makedirs("/kept")
    ep.failover(1)
    ep.stop_namenode(0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{nn0}/webhdfs/v1/", params={"op": "GETFILESTATUS"}, timeout=5)
    assert client.status("/kept")["type"] == "DIRECTORY"  # nn0 refused: HdfsCLI went on to nn1
    ep.start_namenode(0)
    assert ep.namenode_urls == [nn0, nn1]
    assert requests.get(f"{nn0}/webhdfs/v1/", params={"op": "GETFILESTATUS"}, timeout=5).status_code == 403


def test_faults_answer_errors_reset_connections_and_cut_writes(webhdfs_endpoint: WebHdfsEndpoint) -> None:
    ep = webhdfs_endpoint
    client = InsecureClient(ep.namenode_urls[0], user="alice", root="/")
    ep.inject(Fault(node="nn0", op="MKDIRS", exception="AccessControlException", message="Permission denied: x"))
    with pytest.raises(HdfsError) as caught:
        client.makedirs("/denied")
    assert (caught.value.exception, caught.value.message) == ("AccessControlException", "Permission denied: x")
    client.makedirs("/denied")  # the fault applied once

    ep.inject(Fault(node="namenode", op="GETFILESTATUS", reset=True))
    with pytest.raises(requests.ConnectionError):
        client.status("/denied")

    ep.inject(Fault(node="datanode", op="CREATE", after_bytes=100_000))
    with pytest.raises(requests.ConnectionError):
        client.write("/cut.bin", data=b"z" * 1_000_000)
    # what reached the datanode stays, as on HDFS when a writer's connection dies
    assert client.status("/cut.bin")["length"] == 100_000
    client.write("/cut.bin", data=b"whole", overwrite=True)  # and the file is not held any more
    with client.read("/cut.bin") as reader:
        assert reader.read() == b"whole"
    assert ep.pending_faults() == []


def test_the_endpoint_runs_as_a_process(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "testservers.webhdfs", "--dir", str(tmp_path / "tree"), "--namenodes", "2"]
    root = Path(__file__).resolve().parents[2]
    with (
        (tmp_path / "endpoint.log").open("w") as log,
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, cwd=root) as proc,
    ):
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            nn0, nn1 = ready["namenodes"]
            assert ready["url"] == f"webhdfs://{urlsplit(nn0).netloc},{urlsplit(nn1).netloc}"
            client = InsecureClient(f"{nn0};{nn1}", user="bob", root="/")
            client.write("/p/file.txt", data=b"from a process")
            assert (tmp_path / "tree" / "p" / "file.txt").read_bytes() == b"from a process"
            os.kill(proc.pid, signal.SIGUSR1)  # fail over to nn1
            deadline = time.monotonic() + 10
            while requests.get(f"{nn0}/webhdfs/v1/", params={"op": "GETFILESTATUS"}, timeout=5).status_code != 403:
                assert time.monotonic() < deadline, "SIGUSR1 did not fail over"
                time.sleep(0.05)
            with client.read("/p/file.txt") as reader:
                assert reader.read() == b"from a process"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, (tmp_path / "endpoint.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
