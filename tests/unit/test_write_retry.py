"""Riding out a store outage: whole-write retries until --store-outage, and which S3 errors are outages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from eventindex.codec import decode_manifest
from eventindex.errors import (
    ConfigError,
    InputError,
    ObjectExistsError,
    StoreAccessError,
    StoreError,
    StoreUnavailableError,
)
from eventindex.store.base import open_store
from eventindex.store.local import LocalStore
from eventindex.store.s3 import S3Location, S3Store
from eventindex.transport import open_publisher
from producer.cli import main
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec
from producer.write_retry import WriteRetrier, WriteRetryPolicy
from tests.faultstore import Fault, FaultyStore


class Clock:
    """A clock that only moves when the retrier sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int, error: type[StoreError] = StoreUnavailableError) -> tuple[list[int], object]:
    calls: list[int] = []

    def action() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error(f"cannot write k: failure {len(calls)}")
        return "done"

    return calls, action


def test_a_write_is_retried_until_the_store_is_back() -> None:
    clock = Clock()
    retry = WriteRetrier(WriteRetryPolicy(60), clock=clock, sleep=clock.sleep)
    calls, action = failing(5)
    assert retry("k", action) == "done"  # type: ignore[arg-type]
    assert len(calls) == 6 and retry.retries == 5
    assert all(0 <= s <= 10 for s in clock.sleeps)
    assert sum(clock.sleeps) < 60


def test_the_store_down_longer_than_the_outage_limit_fails_with_how_long(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    retry = WriteRetrier(WriteRetryPolicy(30), clock=clock, sleep=clock.sleep)
    calls, action = failing(10**6)
    with pytest.raises(StoreUnavailableError) as info:
        retry("k", action)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("cannot write k: failure") and message.endswith("(--store-outage 30)")
    assert "store unavailable for 30 s" in message
    assert clock.now - 1000.0 == pytest.approx(30), "waited exactly the outage limit, not more"
    assert len(calls) > 5, "backoff capped at 10 s: several tries in 30 s"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "retrying each write for up to 30 s" in warnings[0]


def test_a_zero_outage_limit_fails_at_the_first_error() -> None:
    clock = Clock()
    calls, action = failing(1)
    with pytest.raises(StoreUnavailableError, match="unavailable for 0 s"):
        WriteRetrier(WriteRetryPolicy(0), clock=clock, sleep=clock.sleep)("k", action)  # type: ignore[arg-type]
    assert len(calls) == 1 and clock.sleeps == []


@pytest.mark.parametrize("error", [StoreError, ObjectExistsError])
def test_errors_that_waiting_cannot_fix_fail_at_once(error: type[StoreError]) -> None:
    clock = Clock()
    calls, action = failing(1, error)
    with pytest.raises(error):
        WriteRetrier(WriteRetryPolicy(60), clock=clock, sleep=clock.sleep)("k", action)  # type: ignore[arg-type]
    assert len(calls) == 1 and clock.sleeps == []


@pytest.mark.parametrize("seconds", [-1, 10**6])
def test_the_retry_policy_is_validated(seconds: float) -> None:
    with pytest.raises(ConfigError, match="--store-outage"):
        WriteRetryPolicy(seconds)


def test_the_cli_rejects_a_negative_outage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broker = f"sqlite://{tmp_path / 'q.db'}"
    argv = ["--task", "t", "--job", "j", "--attempt", "1", "--dataset", "d", "--input", "synthetic:10",
            "--store", tmp_path.as_uri(), "--broker", broker, "--store-outage", "-5"]  # fmt: skip
    assert main(argv) == 2
    assert "--store-outage must be in" in capsys.readouterr().err


# ------------------------------------------------------------------ classification of S3 failures


def s3_error(exc: Exception) -> StoreError:
    store = S3Store(S3Location("b", "", "http://127.0.0.1:9", None), client=object())
    return store._fail("cannot write", "k", exc)


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
    ],
)
def test_connection_failures_and_timeouts_are_outages(exc: Exception) -> None:
    assert isinstance(s3_error(exc), StoreUnavailableError)


@pytest.mark.parametrize(
    "exc",
    [SSLError(endpoint_url="https://127.0.0.1:9", error=OSError("CERTIFICATE_VERIFY_FAILED")), NoCredentialsError()],
)
def test_a_refused_certificate_or_missing_credentials_is_not_an_outage(exc: Exception) -> None:
    error = s3_error(exc)
    assert type(error) is StoreAccessError, "the store refuses this client: not retried, by a job or a service"
    assert str(error).startswith("cannot write k in s3://b: ")


# ------------------------------------------------------------------------- a job through an outage

REFUSED = "cannot write {key}: connection refused"


def flaky_store(root: Path, failures: int | None) -> FaultyStore:
    """A local store whose first `failures` puts (every put: None) fail with StoreUnavailableError."""
    return FaultyStore(LocalStore(root), Fault("put", "unavailable", times=failures, message=REFUSED))


def test_a_job_rides_out_failed_writes_and_stores_everything(tmp_path: Path) -> None:
    store = flaky_store(tmp_path / "store", failures=40)
    spec = JobSpec(task="t", job="j", attempt=1, dataset="ds", chunk_events=1_000)
    with open_publisher(f"sqlite://{tmp_path / 'q.db'}") as pub:
        runner = JobRunner(spec, store, pub, retry_policy=WriteRetryPolicy(30, base=0.001, cap=0.01))
        result = runner.run([SyntheticInput(10_000, 5)])
    assert (result.events, result.chunks) == (10_000, 10)
    assert runner.retry.retries == 40
    manifest = decode_manifest(open_store((tmp_path / "store").as_uri()).get("t/j/1/manifest.eim"))
    assert [c.seq for c in manifest.chunks] == list(range(10))


def test_a_job_whose_store_stays_down_fails_without_a_manifest(tmp_path: Path) -> None:
    store = flaky_store(tmp_path / "store", failures=None)
    spec = JobSpec(task="t", job="j", attempt=1, dataset="ds", chunk_events=1_000)
    with (
        open_publisher(f"sqlite://{tmp_path / 'q.db'}") as pub,
        pytest.raises(StoreUnavailableError, match=r"--store-outage 0\.2"),
    ):
        JobRunner(spec, store, pub, retry_policy=WriteRetryPolicy(0.2, base=0.01, cap=0.05)).run(
            [SyntheticInput(3_000, 5)]
        )
    assert not list(store.list())


def test_a_cancelled_write_retrier_gives_up_at_the_next_failure() -> None:
    clock = Clock()
    retry = WriteRetrier(WriteRetryPolicy(60), clock=clock, sleep=clock.sleep)
    retry.cancel()
    calls, action = failing(3)
    with pytest.raises(StoreUnavailableError, match="not retried: the job is stopping"):
        retry("k", action)  # type: ignore[arg-type]
    assert len(calls) == 1 and clock.sleeps == []


def test_a_job_that_fails_stops_waiting_for_the_store_at_once(tmp_path: Path) -> None:
    """An input error while uploads wait out an outage: the job fails now, not when the outage budget ends."""
    store = flaky_store(tmp_path / "store", failures=None)
    spec = JobSpec(task="t", job="j", attempt=1, dataset="ds", chunk_events=1_000)

    class Declared(SyntheticInput):
        @property
        def declared_events(self) -> int:
            return 2_999

    started = time.monotonic()
    with open_publisher(f"sqlite://{tmp_path / 'q.db'}") as pub, pytest.raises(InputError, match="declares 2999"):
        JobRunner(spec, store, pub, retry_policy=WriteRetryPolicy(600)).run([Declared(3_000, 5)])
    assert time.monotonic() - started < 10, "the uploads gave up when the job failed"
    assert not list(store.list())
