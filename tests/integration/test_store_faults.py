"""What a storage administrator meets on the real S3 stores: a store killed -9 mid multipart upload, a bucket
name with a typo, a versioned bucket (Ceph RGW). Each test starts and stops its own servers through fixtures.

The Ceph tests run only with ``EI_WITH_CEPH=1`` (as in test_ceph.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from eventindex.errors import ObjectExistsError, StoreAccessError, StoreUnavailableError
from eventindex.store.base import MIB, StoreOptions
from eventindex.store.s3 import S3Store
from testservers import CephRGW, SeaweedFS

pytestmark = pytest.mark.integration

WITH_CEPH = os.environ.get("EI_WITH_CEPH") == "1"
needs_ceph = pytest.mark.skipif(
    not WITH_CEPH, reason="Ceph tests run only with EI_WITH_CEPH=1 (EI_WITH_CEPH=1 scripts/install-servers)"
)


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def private_seaweedfs(seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test alone, to kill -9 and start again (`seaweedfs` checks that it is installed);
    the AWS environment points at it."""
    server = SeaweedFS(tmp_path / "seaweedfs")
    server.start()
    try:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            monkeypatch.delenv(var, raising=False)
        for var, value in server.client_env().items():
            monkeypatch.setenv(var, value)
        yield server
    finally:
        server.stop()


def _uploads(client: Any, bucket: str) -> list[str]:
    return [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def _killed_at_the_first_part(server: SeaweedFS, prefix: str) -> tuple[str, S3Store]:
    """A new bucket, and a store on it (multipart above 1 MiB, 5 MiB parts) whose first UploadPart kills
    the server (kill -9) before it is sent."""
    bucket = f"ei-test-{uuid.uuid4().hex[:16]}"
    server.create_bucket(bucket)
    options = StoreOptions(multipart_threshold=MIB, part_size=5 * MIB, max_attempts=2)
    store = S3Store.from_url(f"s3://{bucket}/{prefix}?endpoint={server.endpoint}".replace("/?", "?"), options)
    killed: list[bool] = []

    def crash(**_: object) -> None:
        if not killed:
            killed.append(True)
            server.kill()

    store.client.meta.events.register("before-send.s3.UploadPart", crash)
    return bucket, store


# ---------------------------------------------------------------- SeaweedFS
def test_a_multipart_upload_cut_by_a_store_crash_is_aborted_once_the_store_is_back(
    private_seaweedfs: SeaweedFS, caplog: pytest.LogCaptureFixture
) -> None:
    """kill -9 of the store during UploadPart: the write fails as unavailable (the producer retries it whole),
    the abort cannot reach the store; once the store is back the retried write succeeds and the orphaned
    upload (its parts) is aborted, not left for a lifecycle rule."""
    server = private_seaweedfs
    bucket, store = _killed_at_the_first_part(server, "transit")
    admin = server.s3_client()
    data = os.urandom(11 * MIB)  # three parts
    try:
        with pytest.raises(StoreUnavailableError, match=r"cannot upload a part of t/j/1/chunk-000000\.eic"):
            store.put("t/j/1/chunk-000000.eic", data)
        assert "could not abort the multipart upload" in caplog.text
        server.start()
        assert len(_uploads(admin, bucket)) == 1, "the cut upload survives the restart"
        store.put("t/j/1/chunk-000000.eic", data)  # what producer.write_retry does once the store answers
        assert _uploads(admin, bucket) == [], "the orphaned multipart upload is aborted"
        assert admin.get_object(Bucket=bucket, Key="transit/t/j/1/chunk-000000.eic")["Body"].read() == data
    finally:
        store.close()
        admin.close()


def test_close_aborts_an_upload_the_outage_left(private_seaweedfs: SeaweedFS) -> None:
    server = private_seaweedfs
    bucket, store = _killed_at_the_first_part(server, "")
    admin = server.s3_client()
    try:
        with pytest.raises(StoreUnavailableError):
            store.put("t/j/1/chunk-000000.eic", os.urandom(6 * MIB))
        server.start()
    finally:
        store.close()
    try:
        assert _uploads(admin, bucket) == []
    finally:
        admin.close()


def test_a_bucket_typo_is_refused_not_created(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    """SeaweedFS creates a missing bucket on the first PutObject of an Admin identity: the producer must
    not fill a new bucket that no supersink reads. One line, exit 4, no secret, no bucket made."""
    typo = f"ei-typo-{uuid.uuid4().hex[:12]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **seaweedfs.client_env(),
    }
    argv = [sys.executable, "-m", "producer.cli", "--task", "t1", "--job", "j1", "--attempt", "1",
            "--dataset", "d", "--input", "synthetic:500", "--quiet", "--no-spool",
            "--store", f"s3://{typo}/chunks?endpoint={seaweedfs.endpoint}",
            "--broker", f"sqlite://{tmp_path / 'queue.db'}"]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"no such bucket '{typo}'" in done.stderr
    assert seaweedfs.secret_key not in done.stderr + done.stdout
    client = seaweedfs.s3_client()
    try:
        assert typo not in {b["Name"] for b in client.list_buckets()["Buckets"]}
    finally:
        client.close()


# ---------------------------------------------------------------- Ceph RGW
@needs_ceph
def test_ceph_ignores_if_none_match_in_a_versioned_bucket(ceph: CephRGW, ceph_env: str) -> None:
    """The quirk the refusal below rests on: with versioning enabled, RGW 16 takes a second conditional
    write of a key as a new version (suspended versioning: 412 again)."""
    s3 = ceph.s3_client()
    try:
        s3.put_bucket_versioning(Bucket=ceph_env, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket=ceph_env, Key="k", Body=b"first", IfNoneMatch="*")
        s3.put_object(Bucket=ceph_env, Key="k", Body=b"second", IfNoneMatch="*")
        assert s3.get_object(Bucket=ceph_env, Key="k")["Body"].read() == b"second"
        s3.put_bucket_versioning(Bucket=ceph_env, VersioningConfiguration={"Status": "Suspended"})
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=ceph_env, Key="k", Body=b"third", IfNoneMatch="*")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    finally:
        s3.close()


@needs_ceph
@pytest.mark.parametrize("size", [1000, 2 * MIB], ids=["put", "multipart"])
def test_a_versioned_bucket_is_refused_before_any_write(ceph: CephRGW, ceph_env: str, size: int) -> None:
    s3 = ceph.s3_client()
    s3.put_bucket_versioning(Bucket=ceph_env, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=ceph_env, Key="chunks/t/j/1/chunk-000000.eic", Body=b"someone else's")
    store = S3Store.from_url(f"s3://{ceph_env}/chunks?endpoint={ceph.endpoint}", StoreOptions(multipart_threshold=MIB))
    try:
        with pytest.raises(StoreAccessError, match="has versioning enabled"):
            store.put("t/j/1/chunk-000000.eic", os.urandom(size))
        body = s3.get_object(Bucket=ceph_env, Key="chunks/t/j/1/chunk-000000.eic")["Body"].read()
        assert body == b"someone else's", "write-once held"
        assert _uploads(s3, ceph_env) == []
        versions = s3.list_object_versions(Bucket=ceph_env).get("Versions", [])
        assert len(versions) == 1
        # suspended versioning: RGW honours If-None-Match again, and the store writes
        s3.put_bucket_versioning(Bucket=ceph_env, VersioningConfiguration={"Status": "Suspended"})
        fresh = S3Store.from_url(f"s3://{ceph_env}/chunks?endpoint={ceph.endpoint}")
        try:
            with pytest.raises(ObjectExistsError):
                fresh.put("t/j/1/chunk-000000.eic", b"x")
            fresh.put("t/j/1/chunk-000001.eic", b"x")
        finally:
            fresh.close()
    finally:
        store.close()
        s3.close()
