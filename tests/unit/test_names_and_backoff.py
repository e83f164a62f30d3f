from __future__ import annotations

import random

import pytest

from eventindex.backoff import compute_backoff
from eventindex.errors import InvalidNameError
from eventindex.names import chunk_key, manifest_key, validate_attempt, validate_name


@pytest.mark.parametrize("name", ["task.123", "data24_13p6TeV.00456000.physics_Main", "a-b_c.d", "x" * 128])
def test_good_names(name: str) -> None:
    assert validate_name("task", name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "empty"),
        ("../x", "outside"),
        ("a/b", "outside"),
        ("a..b", ".."),
        (".", "'.'"),
        ("x" * 129, "longer"),
        ("bad\nname", "outside"),
        ("tab\tname", "outside"),
        ("é", "outside"),
        ("a b", "outside"),
        ("__HIVE_DEFAULT_PARTITION__", "null"),
    ],
)
def test_bad_names(name: str, words: str) -> None:
    with pytest.raises(InvalidNameError, match=words):
        validate_name("job", name)


@pytest.mark.parametrize("attempt", [0, -1, True, 10**7])
def test_bad_attempts(attempt: int) -> None:
    with pytest.raises(InvalidNameError):
        validate_attempt(attempt)


def test_keys_are_deterministic() -> None:
    assert chunk_key("t", "j", 2, 7) == "t/j/2/chunk-000007.eic"
    assert manifest_key("t", "j", 2) == "t/j/2/manifest.eim"
    with pytest.raises(InvalidNameError):
        chunk_key("..", "j", 1, 0)


def test_backoff_is_capped_full_jitter() -> None:
    rng = random.Random(1)
    for attempt in range(1, 40):
        delay = compute_backoff(attempt, base=0.5, cap=10.0, rng=rng)
        assert 0.0 <= delay <= min(10.0, 0.5 * 2 ** (attempt - 1))
    delays = {round(compute_backoff(8, base=1.0, cap=10.0, rng=rng), 6) for _ in range(50)}
    assert len(delays) > 40  # jittered, not synchronised
    with pytest.raises(ValueError):
        compute_backoff(0)
