"""Both store adapters against one contract: local files, and S3 through moto in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from eventindex.errors import (
    ConfigError,
    ForbiddenLocationError,
    ObjectExistsError,
    ObjectNotFoundError,
    OversizedObjectError,
    StoreAccessError,
    StoreError,
    StoreUnavailableError,
)
from eventindex.store import ObjectStore, open_store
from eventindex.store.local import LocalStore
from eventindex.store.s3 import S3Location


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, aws_env: None) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield open_store((tmp_path / "store").as_uri())
        return
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        boto3.client("s3").create_bucket(Bucket="bucket")
        s = open_store("s3://bucket/some/prefix")
        yield s
        s.close()


def test_put_get_list(store: ObjectStore) -> None:
    store.put("t/j/1/chunk-000001.eic", b"one")
    store.put("t/j/1/chunk-000000.eic", b"zero")
    store.put("t/k/1/manifest.eim", b"m")
    assert store.get("t/j/1/chunk-000000.eic") == b"zero"
    assert list(store.list("t/j/")) == ["t/j/1/chunk-000000.eic", "t/j/1/chunk-000001.eic"]
    assert len(list(store.list())) == 3


def test_write_once(store: ObjectStore) -> None:
    store.put("a/b", b"first")
    with pytest.raises(ObjectExistsError, match="already exists"):
        store.put("a/b", b"second")
    assert store.get("a/b") == b"first"


def test_missing_and_oversized(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.get("no/such")
    store.put("big", b"x" * 100)
    with pytest.raises(OversizedObjectError):
        store.get("big", max_bytes=10)


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\nb"])
def test_unclean_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ForbiddenLocationError):
        store.put(key, b"x")


def test_urls_round_trip_and_foreign_urls_are_forbidden(store: ObjectStore) -> None:
    url = store.object_url("t/j/1/manifest.eim")
    assert store.key_for_url(url) == "t/j/1/manifest.eim"
    for foreign in [
        "s3://other-bucket/some/prefix/t/j/1/manifest.eim",
        "s3://bucket/elsewhere/x",
        "file:///etc/passwd",
        "http://evil/x",
        url + "/../../../x",
        "s3://bucket/some/prefix/x?endpoint=http://evil:1",
    ]:
        with pytest.raises(ForbiddenLocationError):
            store.key_for_url(foreign)


def test_s3_url_parsing() -> None:
    loc = S3Location.from_url("s3://b/p/q?endpoint=http://127.0.0.1:8333&region=eu")
    assert (loc.bucket, loc.prefix, loc.endpoint, loc.region) == ("b", "p/q", "http://127.0.0.1:8333", "eu")
    for bad in [
        "s3://key:secret@b/p",
        "s3:///p",
        "s3://b/p?endpoint=ftp://x",
        "s3://b?color=red",
        "s3://b/p?endpoint=http://u:pw@host",
    ]:
        with pytest.raises(ConfigError):
            S3Location.from_url(bad)
    with pytest.raises(ConfigError):
        open_store("ftp://x/y")
    with pytest.raises(ConfigError):
        open_store("file://host/relative")


def test_boto3_is_imported_only_for_s3(tmp_path: Path) -> None:
    """A local store or warehouse, and the producer's CLI, start without boto3/botocore (~0.2 CPU-s to import)."""
    code = (
        "import sys\n"
        "import producer.cli\n"
        "from eventindex.store import open_store\n"
        "from eventindex.warehouse import WarehouseReader\n"
        f"open_store({(tmp_path / 'store').as_uri()!r}).close()\n"
        f"WarehouseReader.from_url({tmp_path.as_uri()!r}).close()\n"
        "assert not {'boto3', 'botocore'} & set(sys.modules), sorted({'boto3', 'botocore'} & set(sys.modules))\n"
        "open_store('s3://bucket/prefix?endpoint=http://127.0.0.1:9')\n"
        "assert 'boto3' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "AWS_ACCESS_KEY_ID": "x",
                   "AWS_SECRET_ACCESS_KEY": "y", "AWS_EC2_METADATA_DISABLED": "true"})  # fmt: skip


def test_a_local_store_whose_directory_went_away_is_unavailable_not_empty(tmp_path: Path) -> None:
    """An unmounted or moved store directory is the store failing (retried), not every object missing; a write
    does not recreate the directory under the mount point."""
    root = tmp_path / "store"
    store = open_store(root.as_uri())
    store.put("t/j/1/chunk-000000.eic", b"data")
    root.rename(tmp_path / "store.moved")
    with pytest.raises(StoreUnavailableError, match="is gone"):
        store.get("t/j/1/chunk-000000.eic")
    with pytest.raises(StoreUnavailableError, match="is gone"):
        list(store.list("t/"))
    with pytest.raises(StoreUnavailableError, match="is gone"):
        store.put("t/j/1/chunk-000001.eic", b"more")
    assert not root.exists()
    (tmp_path / "store.moved").rename(root)
    assert store.get("t/j/1/chunk-000000.eic") == b"data"
    with pytest.raises(ObjectNotFoundError):
        store.get("t/j/1/chunk-000009.eic")


def test_a_local_store_directory_gone_between_the_check_and_the_write_is_not_recreated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a grid job met: the directory unmounted after `put` checked it. Before, the write made the
    directories again (mkdir parents) under the bare mount point and the job ended 0 with its chunks there."""
    root = tmp_path / "store"
    store = open_store(root.as_uri())
    assert isinstance(store, LocalStore)
    real_check = LocalStore._check_root
    calls = []

    def check_late(self: LocalStore) -> None:
        calls.append(1)
        if len(calls) > 1:  # the first check passes, as it did just before the unmount
            real_check(self)

    monkeypatch.setattr(LocalStore, "_check_root", check_late)
    root.rename(tmp_path / "store.moved")
    with pytest.raises(StoreUnavailableError, match="is gone"):
        store.put("t/j/1/chunk-000001.eic", b"more")
    assert not root.exists()


def test_a_job_run_with_a_restrictive_umask_does_not_lock_its_task_directory(tmp_path: Path) -> None:
    store = open_store((tmp_path / "store").as_uri())
    old = os.umask(0o277)
    try:
        store.put("t/j1/1/chunk-000000.eic", b"one")
        store.put("t/j2/1/chunk-000000.eic", b"two")  # a later job of the task, the same account
    finally:
        os.umask(old)
    for directory in ("t", "t/j1", "t/j1/1", "t/j2/1"):
        assert (tmp_path / "store" / directory).stat().st_mode & 0o700 == 0o700, directory
    assert store.get("t/j2/1/chunk-000000.eic") == b"two"


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [(404, "NoSuchBucket", "no such bucket"), (403, "AccessDenied", None), (500, "InternalError", None)],
)
def test_check_bucket_names_a_missing_bucket_and_leaves_a_refusal_to_the_reads(
    status: int, code: str, outcome: str | None
) -> None:
    """A HEAD of the bucket: 404 is a typo (ConfigError); anything else cannot tell (a policy may grant
    reading a prefix and not HeadBucket; a failing store), so the operations themselves report it."""
    from botocore.exceptions import ClientError

    from eventindex.store.s3 import S3Store

    class Client:
        def head_bucket(self, Bucket: str) -> None:
            response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
            raise ClientError(response, "HeadBucket")

    store = S3Store(S3Location.from_url("s3://typo/warehouse"), client=Client())
    if outcome is None:
        store.check_bucket()
    else:
        with pytest.raises(ConfigError, match=outcome):
            store.check_bucket()


def test_a_store_opened_without_create_refuses_a_missing_bucket(aws_env: None) -> None:
    """What `run`, `load`, `reconcile` and every warehouse reader open: the bucket must exist."""
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        boto3.client("s3").create_bucket(Bucket="bucket")
        open_store("s3://bucket/p", create=False).close()
        with pytest.raises(ConfigError, match="no such bucket 'typo'"):
            open_store("s3://typo/p", create=False)
        open_store("s3://typo/p").close()  # a writer's: the store answers its writes


def test_a_bucket_gone_while_in_use_is_not_an_object_missing_nor_an_outage(aws_env: None) -> None:
    """Found by deleting the store's bucket under a running supersink (SeaweedFS): every GET said
    NoSuchBucket, a StoreError the service put back and retried for ever. It fails every request alike,
    as wrong credentials do (StoreAccessError: `run` exits 4)."""
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="bucket")
        store = open_store("s3://bucket/p", create=False)
        store.put("t/j/1/chunk-000000.eic", b"zero")
        client.delete_object(Bucket="bucket", Key="p/t/j/1/chunk-000000.eic")
        client.delete_bucket(Bucket="bucket")
        with pytest.raises(StoreAccessError, match="NoSuchBucket"):
            store.get("t/j/1/chunk-000000.eic")
        with pytest.raises(StoreAccessError, match="NoSuchBucket"):
            list(store.list("t/"))
        store.close()


def test_a_local_store_follows_no_symbolic_link_below_its_directory(tmp_path: Path) -> None:
    """Anyone who may write to a shared store could link a task's directory to another store: the
    supersink would load that store's objects, then its retention would delete them."""
    victim = LocalStore(tmp_path / "victim")
    victim.put("T/j1/1/chunk-000000.eic", b"theirs")
    victim.put("T/j1/1/manifest.eim", b"theirs too")
    ours = LocalStore(tmp_path / "ours")
    (ours.root / "T").symlink_to(victim.root / "T")
    with pytest.raises(ObjectNotFoundError, match="symbolic link"):
        ours.get("T/j1/1/chunk-000000.eic")
    assert list(ours.list("T/")) == [] and list(ours.list("T/j1/1/")) == []
    ours.delete(["T/j1/1/chunk-000000.eic", "T/j1/1/manifest.eim"])
    assert sorted(victim.list()) == ["T/j1/1/chunk-000000.eic", "T/j1/1/manifest.eim"], "nothing of theirs deleted"
    # Nor does writing: a job's objects would land in the other store (found when `put` still followed links).
    for key in ("T/j2/1/chunk-000000.eic", "T/j1/1/chunk-000001.eic"):
        with pytest.raises(StoreError, match=r"^cannot write .*: a directory on its path is a symbolic link"):
            ours.put(key, b"ours")
    assert sorted(victim.list()) == ["T/j1/1/chunk-000000.eic", "T/j1/1/manifest.eim"], "nothing written there"
    assert not list((victim.root / "T").rglob(".tmp-*")) and not (victim.root / "T/j2").exists()
    # A link in place of an object, and a FIFO: not found, and nothing blocks.
    ours.put("U/j1/1/manifest.eim", b"ours")
    os.symlink(victim.root / "T/j1/1/chunk-000000.eic", ours.root / "U/j1/1/chunk-000000.eic")
    os.mkfifo(ours.root / "U/j1/1/chunk-000001.eic")
    for key in ("U/j1/1/chunk-000000.eic", "U/j1/1/chunk-000001.eic"):
        with pytest.raises(ObjectNotFoundError):
            ours.get(key)
    ours.delete(["U/j1/1/chunk-000000.eic"])
    assert victim.get("T/j1/1/chunk-000000.eic") == b"theirs", "the link went, not its target"
    assert ours.get("U/j1/1/manifest.eim") == b"ours"
    # The store's own directory may be a link.
    (tmp_path / "alias").symlink_to(ours.root)
    linked = LocalStore(tmp_path / "alias")
    assert linked.get("U/j1/1/manifest.eim") == b"ours"
    linked.delete(["U/j1/1/manifest.eim", "U/j1/1/chunk-000001.eic"])
    assert not (ours.root / "U").exists(), "emptied directories go, through the linked root too"
