"""The webhdfs:// object store and pyarrow filesystem (eventindex.store.webhdfs) through HdfsCLI, against the
WebHDFS test endpoint, or a real cluster with EI_WEBHDFS_URL (tests/webhdfs_fixture.py; the tests that
steer the endpoint's namenodes, faults or TLS are skipped then)."""

from __future__ import annotations

import random
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from eventindex.errors import (
    ForbiddenLocationError,
    ObjectExistsError,
    ObjectNotFoundError,
    OversizedObjectError,
    StoreError,
    StoreUnavailableError,
)
from eventindex.store.webhdfs import (
    MIB,
    WebHdfsError,
    WebHdfsStore,
    WebHdfsUnavailableError,
    webhdfs_warehouse,
)
from producer.inputs.synthetic import SyntheticInput
from tests.pki import make_pki
from testservers.webhdfs import Fault, WebHdfsEndpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def warehouse(webhdfs: str) -> Iterator[tuple[pafs.FileSystem, str, WebHdfsStore]]:
    fs, root, store = webhdfs_warehouse(webhdfs)
    try:
        yield fs, root, store
    finally:
        store.close()


@pytest.fixture(scope="module")
def events() -> pa.Table:
    """20,000 synthetic events with every warehouse column the producer fills."""
    return pa.concat_tables(SyntheticInput(20_000, 11).batches(20_000))


def tree(fs: pafs.FileSystem, root: str) -> list[str]:
    return sorted(info.path[len(root) :] for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)))


def test_write_once_objects(warehouse: tuple[pafs.FileSystem, str, WebHdfsStore]) -> None:
    fs, root, store = warehouse
    store.put("dataset=d/task=t/_SUCCESS.json", b'{"rows": 3}')
    store.put("_staging/dataset=d/task=t/_CLAIM.json", b'{"owner": "a"}')
    with pytest.raises(ObjectExistsError) as caught:
        store.put("dataset=d/task=t/_SUCCESS.json", b'{"rows": 4}')
    assert isinstance(caught.value, FileExistsError)
    assert store.get("dataset=d/task=t/_SUCCESS.json") == b'{"rows": 3}'
    assert list(store.list()) == ["_staging/dataset=d/task=t/_CLAIM.json", "dataset=d/task=t/_SUCCESS.json"]
    assert list(store.list("dataset=d/")) == ["dataset=d/task=t/_SUCCESS.json"]
    assert list(store.list("dataset=d/task=t/_S")) == ["dataset=d/task=t/_SUCCESS.json"]
    assert list(store.list("dataset=e")) == []
    # no temporary file is left next to the objects
    assert tree(fs, root) == [
        "/_staging",
        "/_staging/dataset=d",
        "/_staging/dataset=d/task=t",
        "/_staging/dataset=d/task=t/_CLAIM.json",
        "/dataset=d",
        "/dataset=d/task=t",
        "/dataset=d/task=t/_SUCCESS.json",
    ]

    with pytest.raises(ObjectNotFoundError) as missing:
        store.get("dataset=d/task=t/_AMEND-0001.json")
    assert isinstance(missing.value, FileNotFoundError)
    with pytest.raises(ObjectNotFoundError):
        store.get("dataset=d/task=t")  # a directory is no object
    with pytest.raises(OversizedObjectError):
        store.get("dataset=d/task=t/_SUCCESS.json", max_bytes=10)
    assert store.get("dataset=d/task=t/_SUCCESS.json", max_bytes=11) == b'{"rows": 3}'
    with pytest.raises(StoreError, match="a directory has that name"):
        store.put("dataset=d/task=t", b"x")

    url = store.object_url("dataset=d/task=t/_SUCCESS.json")
    assert url == f"webhdfs://{root}/dataset=d/task=t/_SUCCESS.json"
    assert store.key_for_url(url) == "dataset=d/task=t/_SUCCESS.json"
    for outside in ("webhdfs:///elsewhere/k", "webhdfs://nn:9870" + root + "/k", "s3://b" + root + "/k"):
        with pytest.raises(ForbiddenLocationError):
            store.key_for_url(outside)


def test_racing_writers_one_wins(warehouse: tuple[pafs.FileSystem, str, WebHdfsStore]) -> None:
    """Eight writers of one key: exactly one succeeds, the others get ObjectExistsError, the winner's bytes stay."""
    fs, root, store = warehouse
    results: dict[int, str] = {}
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        start.wait()
        try:
            store.put("_staging/dataset=d/task=race/_CLAIM.json", f'{{"owner": {i}}}'.encode() * 1000)
            results[i] = "won"
        except ObjectExistsError:
            results[i] = "lost"

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [i for i, result in results.items() if result == "won"]
    assert len(results) == 8 and len(winners) == 1
    assert store.get("_staging/dataset=d/task=race/_CLAIM.json") == f'{{"owner": {winners[0]}}}'.encode() * 1000
    assert tree(fs, root)[-1] == "/_staging/dataset=d/task=race/_CLAIM.json"
    assert not [p for p in tree(fs, root) if "/.tmp-" in p]


def test_delete_removes_objects_and_the_directories_they_emptied(
    warehouse: tuple[pafs.FileSystem, str, WebHdfsStore],
) -> None:
    fs, root, store = warehouse
    for key in ("t/j1/1/chunk-000000.eic", "t/j1/1/manifest.eim", "t/j2/1/chunk-000000.eic", "u/j1/1/m.eim"):
        store.put(key, key.encode())
    store.delete(["t/j1/1/chunk-000000.eic", "t/j1/1/manifest.eim", "t/j1/1/never-written.eic"])
    assert list(store.list()) == ["t/j2/1/chunk-000000.eic", "u/j1/1/m.eim"]
    assert "/t/j1" not in tree(fs, root) and "/t/j2/1" in tree(fs, root)
    store.delete(["t/j2/1/chunk-000000.eic"])
    assert tree(fs, root) == ["/u", "/u/j1", "/u/j1/1", "/u/j1/1/m.eim"]


def test_parquet_written_and_read_through_the_pyarrow_filesystem(
    warehouse: tuple[pafs.FileSystem, str, WebHdfsStore], events: pa.Table
) -> None:
    fs, root, _store = warehouse
    task_dir = f"{root}/dataset=data18.AOD/task=task.000001"
    fs.create_dir(task_dir, recursive=True)
    path = f"{task_dir}/part-00000.parquet"
    with pq.ParquetWriter(path, events.schema, filesystem=fs, compression="zstd") as writer:
        for start in range(0, events.num_rows, 2_500):
            writer.write_table(events.slice(start, 2_500))
    info = fs.get_file_info(path)
    assert info.type == pafs.FileType.File and info.size > 0 and info.mtime is not None

    assert pq.read_table(path, filesystem=fs).equals(events)
    parquet = pq.ParquetFile(path, filesystem=fs)  # random access: footer, then one row group
    assert parquet.metadata.num_row_groups == 8
    assert parquet.read_row_group(5).equals(events.slice(5 * 2_500, 2_500))

    discovered = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive")
    table = discovered.to_table()
    assert table.column("dataset").unique().to_pylist() == ["data18.AOD"]
    assert table.column("task").unique().to_pylist() == ["task.000001"]
    assert table.drop_columns(["dataset", "task"]).equals(events)

    with fs.open_input_stream(path) as stream:  # a sequential read in small pieces, through the read-ahead
        head = stream.read(4)
        rest = b"".join(iter(lambda: stream.read(100_000), b""))
    with fs.open_input_file(path) as whole:
        assert whole.size() == info.size
        assert head + rest == whole.read()
    assert head == b"PAR1"


def test_filesystem_listing_and_deleting(warehouse: tuple[pafs.FileSystem, str, WebHdfsStore]) -> None:
    fs, root, _store = warehouse
    fs.create_dir(f"{root}/a/b", recursive=True)
    with pytest.raises(FileNotFoundError):
        fs.create_dir(f"{root}/x/y", recursive=False)
    fs.create_dir(f"{root}/a/c", recursive=False)
    with fs.open_output_stream(f"{root}/a/b/f.bin") as out:
        out.write(b"12345")
    with fs.open_append_stream(f"{root}/a/b/f.bin") as out:
        out.write(b"678")
    fs.copy_file(f"{root}/a/b/f.bin", f"{root}/a/c/g.bin")
    assert fs.open_input_file(f"{root}/a/c/g.bin").read() == b"12345678"
    with fs.open_output_stream(f"{root}/a/c/empty"):
        pass
    assert fs.get_file_info(f"{root}/a/c/empty").size == 0

    infos = fs.get_file_info([f"{root}/a", f"{root}/a/b/f.bin", f"{root}/nothing"])
    assert [i.type for i in infos] == [pafs.FileType.Directory, pafs.FileType.File, pafs.FileType.NotFound]
    assert infos[1].size == 8
    flat = fs.get_file_info(pafs.FileSelector(f"{root}/a"))
    assert sorted(i.path for i in flat) == [f"{root}/a/b", f"{root}/a/c"]
    deep = fs.get_file_info(pafs.FileSelector(f"{root}/a", recursive=True))
    assert sorted(i.path[len(root) :] for i in deep) == ["/a/b", "/a/b/f.bin", "/a/c", "/a/c/empty", "/a/c/g.bin"]
    assert fs.get_file_info(pafs.FileSelector(f"{root}/nothing", allow_not_found=True)) == []
    with pytest.raises(FileNotFoundError):
        fs.get_file_info(pafs.FileSelector(f"{root}/nothing"))
    with pytest.raises(OSError, match="not a directory"):
        fs.get_file_info(pafs.FileSelector(f"{root}/a/b/f.bin"))

    with pytest.raises(OSError, match="it is a directory"):
        fs.delete_file(f"{root}/a/b")
    fs.delete_file(f"{root}/a/b/f.bin")
    with pytest.raises(FileNotFoundError):
        fs.delete_file(f"{root}/a/b/f.bin")
    fs.delete_dir_contents(f"{root}/a")
    assert tree(fs, root) == ["/a"]
    fs.delete_dir_contents(f"{root}/gone", missing_dir_ok=True)
    fs.delete_dir(f"{root}/a")
    assert tree(fs, root) == []
    with pytest.raises(OSError, match="refusing"):
        fs.delete_dir_contents("/", accept_root_dir=True)


def test_move_replaces_like_pyarrow_where_a_bare_rename_would_move_inside(
    warehouse: tuple[pafs.FileSystem, str, WebHdfsStore],
) -> None:
    fs, root, store = warehouse

    def write(path: str, data: bytes) -> None:
        with fs.open_output_stream(f"{root}/{path}") as out:
            out.write(data)

    write("_staging/p.staged", b"new part")
    write("final/p.parquet", b"old part")
    fs.move(f"{root}/_staging/p.staged", f"{root}/final/p.parquet")  # a file onto a file: replaced
    assert fs.open_input_file(f"{root}/final/p.parquet").read() == b"new part"

    fs.create_dir(f"{root}/staged-task", recursive=True)
    write("staged-task/part-00000.parquet", b"p0")
    fs.create_dir(f"{root}/task-empty", recursive=True)
    fs.move(f"{root}/staged-task", f"{root}/task-empty")  # onto an empty directory: replaced, not moved inside
    assert fs.get_file_info(pafs.FileSelector(f"{root}/task-empty"))[0].path == f"{root}/task-empty/part-00000.parquet"

    fs.create_dir(f"{root}/other", recursive=True)
    write("other/x", b"x")
    with pytest.raises(OSError, match="non-empty directory"):
        fs.move(f"{root}/other", f"{root}/task-empty")
    with pytest.raises(OSError, match="not both files or directories"):
        fs.move(f"{root}/other/x", f"{root}/task-empty")
    with pytest.raises(FileNotFoundError):
        fs.move(f"{root}/missing", f"{root}/elsewhere")
    with pytest.raises(OSError, match="refused the rename"):
        fs.move(f"{root}/other/x", f"{root}/no/parent/x")
    assert store.hdfs.rename(f"{root}/other", f"{root}/task-empty")  # the bare HDFS rename, for contrast
    assert store.hdfs.status(f"{root}/task-empty/other/x") is not None


def test_output_streams_upload_as_they_are_written(webhdfs_endpoint: WebHdfsEndpoint, tmp_path: Path) -> None:
    """The data reaches the datanode while the stream is open, and a 48 MiB stream holds a few MiB in memory."""
    fs, root, store = webhdfs_warehouse(webhdfs_endpoint.url_for("/streams"))
    local = webhdfs_endpoint.namespace.local("/streams/big.bin")
    piece = random.Random(3).randbytes(64 * 1024)
    tracemalloc.start()
    try:
        with fs.open_output_stream(f"{root}/big.bin") as out:
            for i in range(768):
                out.write(piece)
                if i == 255:  # 16 MiB written: most of it must have arrived already
                    deadline = time.monotonic() + 10
                    while local.stat().st_size < 8 * MIB:
                        assert time.monotonic() < deadline, f"only {local.stat().st_size} bytes arrived"
                        time.sleep(0.02)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB while streaming 48 MiB"
    assert local.stat().st_size == 48 * MIB
    with fs.open_input_file(f"{root}/big.bin") as back:
        assert back.read(64 * 1024) == piece and back.seek(47 * MIB) == 47 * MIB and back.read() == piece * 16
    store.close()


def test_a_namenode_failover_in_the_middle_of_a_load(webhdfs_endpoint: WebHdfsEndpoint, events: pa.Table) -> None:
    """A part being written, a claim, a failover to the standby (then the old active gone for good): every
    operation carries on through HdfsCLI's failover, and the data read back is the data written."""
    ep = webhdfs_endpoint
    fs, root, store = webhdfs_warehouse(ep.url_for("/wh"))
    staged = f"{root}/_staging/dataset=d/task=t/part-00000.parquet.staged"
    fs.create_dir(f"{root}/_staging/dataset=d/task=t", recursive=True)
    with pq.ParquetWriter(staged, events.schema, filesystem=fs) as writer:
        writer.write_table(events.slice(0, 10_000))
        ep.failover(1)
        store.put("_staging/dataset=d/task=t/_CLAIM.json", b'{"owner": "me"}')
        writer.write_table(events.slice(10_000))
    ep.stop_namenode(0)
    fs.create_dir(f"{root}/dataset=d/task=t", recursive=True)
    fs.move(staged, f"{root}/dataset=d/task=t/part-00000.parquet")
    store.put("dataset=d/task=t/_SUCCESS.json", b'{"rows": 20000}')
    assert pq.read_table(f"{root}/dataset=d/task=t/part-00000.parquet", filesystem=fs).equals(events)
    assert list(store.list()) == [
        "_staging/dataset=d/task=t/_CLAIM.json",
        "dataset=d/task=t/_SUCCESS.json",
        "dataset=d/task=t/part-00000.parquet",
    ]
    answered = {(r.node, r.status) for r in ep.requests}
    assert ("nn0", 403) in answered and ("nn1", 200) in answered  # nn0 said StandbyException, nn1 served
    store.close()


def test_no_active_namenode_is_waited_out_then_reported(webhdfs_endpoint: WebHdfsEndpoint) -> None:
    ep = webhdfs_endpoint
    _fs, _root, store = webhdfs_warehouse(ep.url_for("/wh"))
    ep.set_state(0, "standby")  # a failover in progress: both namenodes standby
    timer = threading.Timer(1.0, ep.failover, args=(1,))
    started = time.monotonic()
    timer.start()
    try:
        store.put("k", b"written once a namenode became active")
    finally:
        timer.join()
    assert time.monotonic() - started >= 1.0
    assert store.get("k") == b"written once a namenode became active"
    store.close()

    ep.set_state(1, "standby")
    _fs, _root, impatient = webhdfs_warehouse(ep.url_for("/wh"), attempts=2)
    with pytest.raises(WebHdfsUnavailableError, match=r"StandbyException.*\(2 attempts\)") as caught:
        impatient.get("k")
    assert isinstance(caught.value, StoreUnavailableError) and isinstance(caught.value, OSError)
    impatient.close()


def test_truncated_reads_are_never_taken_whole(webhdfs_endpoint: WebHdfsEndpoint, events: pa.Table) -> None:
    ep = webhdfs_endpoint
    fs, root, store = webhdfs_warehouse(ep.url_for("/wh"), attempts=3)
    data = random.Random(9).randbytes(3 * MIB)
    store.put("chunk.eic", data)
    ep.inject(Fault(node="datanode", op="OPEN", after_bytes=100_000))
    assert store.get("chunk.eic") == data  # the cut answer was retried
    ep.inject(Fault(node="datanode", op="OPEN", after_bytes=100_000, count=3))
    with pytest.raises(WebHdfsUnavailableError, match="3 attempts"):
        store.get("chunk.eic")

    pq.write_table(events, f"{root}/e.parquet", filesystem=fs)
    ep.inject(Fault(node="datanode", op="OPEN", after_bytes=10, count=2))
    assert pq.read_table(f"{root}/e.parquet", filesystem=fs).equals(events)
    store.close()


def test_a_datanode_refusal_reaches_the_writer_as_a_typed_oserror(
    webhdfs_endpoint: WebHdfsEndpoint, events: pa.Table
) -> None:
    ep = webhdfs_endpoint
    fs, root, store = webhdfs_warehouse(ep.url_for("/wh"))
    ep.inject(Fault(node="datanode", op="CREATE", exception="IOException", message="No space left on device"))
    with pytest.raises(WebHdfsError, match="No space left on device") as caught:
        pq.write_table(events, f"{root}/p.parquet", filesystem=fs)
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, OSError)
    store.close()


def test_swebhdfs_verifies_against_the_ca_of_the_url(
    tmp_path: Path, events: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path / "pki", "eventindex webhdfs test CA")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.other_ca))  # ca= must win over it
    with WebHdfsEndpoint(tmp_path / "tree", namenodes=2, certfile=pki.server_cert, keyfile=pki.server_key) as ep:
        assert ep.url.startswith("swebhdfs://")
        fs, root, store = webhdfs_warehouse(f"{ep.url_for('/tls')}?ca={pki.ca}")
        store.put("_CLAIM.json", b"{}")
        pq.write_table(events, f"{root}/p.parquet", filesystem=fs)
        ep.failover(1)
        assert pq.read_table(f"{root}/p.parquet", filesystem=fs).equals(events)
        assert store.get("_CLAIM.json") == b"{}"
        store.close()

        _fs, _root, unverified = webhdfs_warehouse(ep.url_for("/tls"), attempts=5)  # the other CA only
        started = time.monotonic()
        with pytest.raises(WebHdfsError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            unverified.get("_CLAIM.json")
        assert not isinstance(caught.value, StoreUnavailableError)  # not retried: waiting will not fix it
        assert time.monotonic() - started < 5
        unverified.close()
