"""The bounded concurrent uploader, the job's order of effects with it, and S3 multipart (moto in-process)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from eventindex.codec import EncodedObject, decode_manifest
from eventindex.errors import ConfigError, InputError, ObjectExistsError, StoreError
from eventindex.pointers import parse_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store.base import MIB, StoreOptions, open_store
from eventindex.store.s3 import S3Location, S3Store
from eventindex.transport import open_consumer, open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec, check_inputs, store_once
from producer.upload import Chunk, UploadConfig, Uploader

BUCKET = "bucket"


def chunk(seq: int, size: int = 10) -> Chunk:
    data = bytes([seq % 256]) * size
    return Chunk(seq, f"t/j/1/chunk-{seq:06d}.eic", EncodedObject(data, hashlib.sha256(data).digest(), 1))


class Slow:
    """Store callback whose uploads finish in an order the test chooses."""

    def __init__(self, fail: int | None = None) -> None:
        self.release = {seq: threading.Event() for seq in range(100)}
        self.started: list[int] = []
        self.fail = fail
        self.lock = threading.Lock()

    def release_all(self) -> None:
        for event in self.release.values():
            event.set()

    def __call__(self, c: Chunk) -> None:
        with self.lock:
            self.started.append(c.seq)
        assert self.release[c.seq].wait(10)
        if c.seq == self.fail:
            raise StoreError(f"cannot write {c.key}: injected")


def test_announces_in_seq_order_after_each_upload() -> None:
    slow = Slow()
    announced: list[int] = []
    with Uploader(store_one=slow, on_stored=lambda c: announced.append(c.seq), config=UploadConfig(threads=4)) as up:
        for seq in range(4):
            up.submit(chunk(seq))
        for seq in (3, 1, 2):  # later chunks finish first
            slow.release[seq].set()
        time.sleep(0.2)
        up.submit(chunk(4))
        assert announced == [], "nothing before chunk 0 is stored"
        slow.release[0].set()
        slow.release[4].set()
        up.finish()
    assert announced == [0, 1, 2, 3, 4]


def test_the_window_bounds_chunks_and_bytes() -> None:
    slow = Slow()
    announced: list[int] = []
    config = UploadConfig(threads=2, window=3, window_bytes=1000)
    with Uploader(store_one=slow, on_stored=lambda c: announced.append(c.seq), config=config) as up:

        def submit_six() -> None:
            for seq in range(6):
                up.submit(chunk(seq, 300))

        blocked = threading.Thread(target=submit_six)
        blocked.start()
        time.sleep(0.3)
        assert up.in_flight == 3 and blocked.is_alive(), "the fourth submit waits for room"
        for seq in range(6):
            slow.release[seq].set()
        blocked.join(10)
        up.finish()
    assert announced == list(range(6))
    assert up.peak_chunks <= 3 and up.peak_bytes <= 1000
    # one chunk bigger than the byte window still goes, alone
    with Uploader(
        store_one=lambda c: None, on_stored=lambda c: None, config=UploadConfig(threads=2, window_bytes=100)
    ) as up:
        up.submit(chunk(0, 500))
        up.submit(chunk(1, 500))
        up.finish()
    assert up.peak_chunks == 1


def test_a_failed_upload_cancels_the_rest_and_announces_nothing_after_it() -> None:
    slow = Slow(fail=1)
    announced: list[int] = []
    config = UploadConfig(threads=1, window=8)
    with (
        pytest.raises(StoreError, match="injected"),
        Uploader(store_one=slow, on_stored=lambda c: announced.append(c.seq), config=config) as up,
    ):
        for seq in range(6):
            up.submit(chunk(seq))
        slow.release[0].set()
        slow.release[1].set()
        threading.Timer(0.5, slow.release_all).start()
        up.finish()
    assert announced == [0]
    # the one worker may have taken chunk 2 before the failure was seen; the rest were cancelled
    assert slow.started[:2] == [0, 1] and len(slow.started) <= 3, slow.started
    assert not [t for t in threading.enumerate() if t.name.startswith("ei-upload")], "the pool is shut down"


def test_an_interrupt_in_the_caller_waits_for_running_uploads_then_propagates() -> None:
    slow = Slow()
    announced: list[int] = []
    config = UploadConfig(threads=2, window=8)
    with (
        pytest.raises(KeyboardInterrupt),
        Uploader(store_one=slow, on_stored=lambda c: announced.append(c.seq), config=config) as up,
    ):
        for seq in range(5):
            up.submit(chunk(seq))
        threading.Timer(0.2, slow.release_all).start()
        raise KeyboardInterrupt
    assert announced == []
    assert sorted(slow.started) == [0, 1], "the two running uploads finished; the three queued never started"


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"threads": 65}, {"window": -1}, {"window_bytes": 0}])
def test_upload_config_is_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        UploadConfig(**kwargs)


# ------------------------------------------------------------------ the job with concurrent uploads


def test_job_with_threads_stores_everything_and_sends_pointers_in_order(tmp_path: Path) -> None:
    broker = f"sqlite://{tmp_path / 'q.db'}"
    store = open_store((tmp_path / "store").as_uri())
    spec = JobSpec(task="t", job="j", attempt=1, dataset="ds", chunk_events=700)
    with open_publisher(broker) as pub:
        result = JobRunner(spec, store, pub, upload=UploadConfig(threads=4, window=3)).run([SyntheticInput(10_000, 5)])
    assert (result.events, result.chunks) == (10_000, 15)
    kinds, seqs = [], []
    with open_consumer(broker) as consumer:
        while (message := consumer.receive(0.2)) is not None:
            pointer = parse_pointer(message.body)
            kinds.append(pointer.kind)
            seqs.append(pointer.seq)
            consumer.ack(message)
    assert kinds == [pb.POINTER_KIND_CHUNK] * 15 + [pb.POINTER_KIND_MANIFEST], "manifest last"
    assert seqs[:15] == list(range(15))
    manifest = decode_manifest(store.get("t/j/1/manifest.eim"))
    for entry in manifest.chunks:
        data = store.get(entry.key)
        assert hashlib.sha256(data).digest() == entry.sha256 and len(data) == entry.size


def test_job_input_error_stops_uploads_and_writes_no_manifest(tmp_path: Path) -> None:
    store = open_store((tmp_path / "store").as_uri())
    spec = JobSpec(task="t", job="j", attempt=1, dataset="ds", chunk_events=500)

    class Declared(SyntheticInput):
        @property
        def declared_events(self) -> int:
            return 2_999

    with open_publisher(f"sqlite://{tmp_path / 'q.db'}") as pub, pytest.raises(InputError, match="declares 2999"):
        JobRunner(spec, store, pub, upload=UploadConfig(threads=2)).run([Declared(3_000, 5)])
    assert not [k for k in store.list() if k.endswith("manifest.eim")]


def test_dry_run_reads_and_encodes_but_stores_nothing(tmp_path: Path) -> None:
    spec = JobSpec(task="t", job="j", attempt=1, dataset="ds", chunk_events=1_000)
    result = check_inputs(spec, [SyntheticInput(2_500, 3)])
    assert (result.events, result.chunks, result.manifest_url) == (2_500, 3, "")
    assert result.bytes > 0
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- S3 multipart (moto)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def small_parts() -> StoreOptions:
    return StoreOptions(multipart_threshold=5 * MIB, part_size=5 * MIB)


def uploads(client: Any) -> list[Any]:
    return list(client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def test_objects_above_the_threshold_go_in_parts(s3: Any) -> None:
    store = S3Store.from_url(f"s3://{BUCKET}/p", small_parts())
    data = os.urandom(12 * MIB)
    store.put("big", data)
    store.put("small", b"x" * (5 * MIB))  # at the threshold: one PUT
    assert store.get("big") == data
    assert s3.head_object(Bucket=BUCKET, Key="p/big")["ETag"].endswith('-3"'), "three parts"
    assert "-" not in s3.head_object(Bucket=BUCKET, Key="p/small")["ETag"]
    assert uploads(s3) == []
    with pytest.raises(ObjectExistsError):
        store.put("big", os.urandom(6 * MIB))
    assert store.get("big") == data and uploads(s3) == []
    store_once(store, "big", EncodedObject(data, hashlib.sha256(data).digest(), 1))  # identical rerun: fine
    store.close()


def test_a_low_threshold_sends_a_small_object_as_one_part(s3: Any) -> None:
    store = S3Store.from_url(f"s3://{BUCKET}", StoreOptions(multipart_threshold=MIB, part_size=5 * MIB))
    data = os.urandom(2 * MIB)
    store.put("one-part", data)
    assert store.get("one-part") == data
    assert s3.head_object(Bucket=BUCKET, Key="one-part")["ETag"].endswith('-1"')
    store.close()


def test_part_size_grows_to_stay_within_the_part_limit(s3: Any) -> None:
    store = S3Store.from_url(f"s3://{BUCKET}", small_parts())
    assert store.part_size(6 * MIB) == 5 * MIB
    assert store.part_size(100_000 * MIB) == 10 * MIB
    store.close()


@pytest.mark.parametrize("failure", [StoreError, KeyboardInterrupt])
def test_a_failed_multipart_upload_is_aborted(s3: Any, failure: type[BaseException]) -> None:
    store = S3Store.from_url(f"s3://{BUCKET}", small_parts())
    calls = 0

    def second_part_fails(**kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise failure("injected")

    store.client.meta.events.register("before-call.s3.UploadPart", second_part_fails)
    with pytest.raises(failure):
        store.put("k", os.urandom(11 * MIB))
    assert uploads(s3) == [], "no parts left behind"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    store.close()


def test_a_writer_that_completes_first_wins_and_the_loser_aborts(s3: Any) -> None:
    store = S3Store.from_url(f"s3://{BUCKET}", small_parts())

    def other_writer_finishes_first(**kwargs: Any) -> None:
        if not s3.list_objects_v2(Bucket=BUCKET).get("Contents"):
            s3.put_object(Bucket=BUCKET, Key="k", Body=b"the other writer")

    store.client.meta.events.register("before-call.s3.CompleteMultipartUpload", other_writer_finishes_first)
    with pytest.raises(ObjectExistsError):
        store.put("k", os.urandom(6 * MIB))
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"the other writer"
    assert uploads(s3) == []
    store.close()


def test_an_overwrite_right_after_our_completion_is_detected(s3: Any) -> None:
    """SeaweedFS lets a concurrent completion win after ours; the ETag check after completing sees it."""
    store = S3Store.from_url(f"s3://{BUCKET}", small_parts())

    def overwrite(**kwargs: Any) -> None:
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"a concurrent writer")

    store.client.meta.events.register("after-call.s3.CompleteMultipartUpload", overwrite)
    with pytest.raises(ObjectExistsError, match="concurrent writer"):
        store.put("k", os.urandom(6 * MIB))
    store.close()


def test_s3_options_and_ca_are_validated(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    location = S3Location.from_url(f"s3://b/p?endpoint=https://s3.example.org:8443&ca={ca}")
    assert location.ca == str(ca)
    store = S3Store(location)
    client: Any = store.client
    assert client._endpoint.http_session._verify == str(ca), "boto3 verifies against ca="
    store.close()
    with pytest.raises(ConfigError, match="does not exist"):
        S3Location.from_url(f"s3://b/p?endpoint=https://s3.example.org&ca={tmp_path / 'missing.pem'}")
    with pytest.raises(ConfigError, match="https"):
        S3Location.from_url(f"s3://b/p?endpoint=http://127.0.0.1:8333&ca={ca}")
    with pytest.raises(ConfigError, match="https"):
        S3Location.from_url(f"s3://b/p?ca={ca}")
    for bad in ({"part_size": 4 * MIB}, {"multipart_threshold": MIB - 1}, {"connections": 0}):
        with pytest.raises(ConfigError):
            StoreOptions(**bad)
