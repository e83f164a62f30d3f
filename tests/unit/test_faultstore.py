"""The test kit's fault injection (tests/faultstore.py): each kind, key patterns, counts, conditions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from eventindex.errors import (
    BrokerConnectionError,
    ObjectExistsError,
    ObjectNotFoundError,
    StoreError,
    StoreUnavailableError,
    TransportError,
)
from eventindex.store.local import LocalStore
from tests.faultstore import Fault, FaultyPublisher, FaultyStore
from tests.helpers import Recorder


def test_store_faults_by_operation_key_pattern_and_count(tmp_path: Path) -> None:
    store = FaultyStore(
        LocalStore(tmp_path),
        Fault("put", "unavailable", key="t/*/chunk-*", times=2, message="cannot write {key}: refused"),
        Fault("get", "not-found", key="*manifest*"),
    )
    with pytest.raises(StoreUnavailableError, match="cannot write t/j/chunk-1: refused"):
        store.put("t/j/chunk-1", b"a")
    with pytest.raises(StoreUnavailableError):
        store.put("t/j/chunk-1", b"a")
    store.put("t/j/chunk-1", b"a")  # the third put goes through
    store.put("t/j/manifest", b"m")  # puts of other keys never fail
    assert store.get("t/j/chunk-1") == b"a"
    with pytest.raises(ObjectNotFoundError):
        store.get("t/j/manifest")
    assert list(store.list()) == ["t/j/chunk-1", "t/j/manifest"]
    assert [(f.seen, f.fired) for f in store.faults.faults] == [(3, 2), (1, 1)]


def test_store_exists_error_corrupt_and_delay(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path)
    inner.put("k", b"0123456789")
    store = FaultyStore(
        inner,
        Fault("put", "exists", key="k"),
        Fault("put", "error", key="x"),
        Fault("get", "corrupt", times=1),
        Fault("list", "delay", seconds=0.2),
    )
    with pytest.raises(ObjectExistsError):
        store.put("k", b"other")
    with pytest.raises(StoreError) as caught:
        store.put("x", b"x")
    assert type(caught.value) is StoreError
    damaged = store.get("k")
    assert len(damaged) == 10 and damaged != b"0123456789" and damaged[:5] == b"01234"
    assert store.get("k") == b"0123456789", "corrupt once, then the real bytes"
    started = time.monotonic()
    assert list(store.list()) == ["k"]
    assert time.monotonic() - started >= 0.2
    assert store.object_url("k") == inner.object_url("k")


def test_publisher_faults_after_n_while_a_condition_holds_and_duplicates() -> None:
    recorder = Recorder()
    down = {"t"}
    pub = FaultyPublisher(
        recorder,
        Fault("send", "disconnected", key="t", after=1, when=lambda: "t" in down),
        Fault("send", "duplicate", key="d"),
    )
    pub.send(b"1", group="t")  # the first is let through
    with pytest.raises(BrokerConnectionError):
        pub.send(b"2", group="t")
    down.clear()
    pub.send(b"3", group="t")
    pub.send(b"4", group="d")
    assert [body for body, _, _ in recorder.sent] == [b"1", b"3", b"4", b"4"]
    refusing = FaultyPublisher(Recorder(), Fault("send", "refused"))
    with pytest.raises(TransportError) as caught:
        refusing.send(b"x")
    assert not isinstance(caught.value, BrokerConnectionError)


def test_a_fault_that_does_not_apply_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not apply"):
        FaultyPublisher(Recorder(), Fault("send", "unavailable"))
    with pytest.raises(ValueError, match="does not apply"):
        FaultyStore(LocalStore(tmp_path), Fault("put", "duplicate"))
    with pytest.raises(ValueError, match="applies to get"):
        Fault("put", "corrupt")
