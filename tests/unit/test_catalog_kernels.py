"""The trigger-bit kernel against bit tests done byte by byte in Python, on every shape a mask column takes:
one width, nulls, shorter masks, slices, large_binary; the pattern histogram Spark returns; and the per-bit
counts the index stores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from catalog.kernels import BitQuery, bit_counts, tally_batch, tally_batches, tally_patterns


def _masks(rng: np.random.Generator, n: int, width: int, nulls: bool, ragged: bool) -> list[bytes | None]:
    masks: list[bytes | None] = []
    for _ in range(n):
        if nulls and rng.random() < 0.2:
            masks.append(None)
            continue
        size = int(rng.integers(0, width + 1)) if ragged else width
        masks.append(bytes((rng.random(size) < 0.3) * rng.integers(0, 256, size)))
    return masks


def _expected(
    columns: dict[str, list[bytes | None]], bits: list[tuple[str, int] | None]
) -> tuple[list[int], list[list[int]]]:
    n = len(next(iter(columns.values())))
    hit = [[bit is not None and (m := columns[bit[0]][r]) is not None and len(m) > bit[1] // 8
            and bool(m[bit[1] // 8] >> (bit[1] % 8) & 1) for bit in bits] for r in range(n)]  # fmt: skip
    counts = [sum(row[i] for row in hit) for i in range(len(bits))]
    pairs = [[sum(row[i] and row[j] for row in hit) for j in range(len(bits))] for i in range(len(bits))]
    return counts, pairs


@pytest.mark.parametrize(("nulls", "ragged", "large", "offset"), [
    (False, False, False, 0), (True, False, False, 0), (False, True, False, 0), (True, True, True, 0),
    (False, False, False, 37), (True, True, False, 11)])  # fmt: skip
def test_counts_and_pairs_match_the_bytes(nulls: bool, ragged: bool, large: bool, offset: int) -> None:
    rng = np.random.default_rng(offset + 10 * nulls + 100 * ragged)
    n = 700
    columns = {"a": _masks(rng, n, 8, nulls, ragged), "b": _masks(rng, n, 3, nulls, ragged)}
    kind = pa.large_binary() if large else pa.binary()
    batch = pa.record_batch({name: pa.array(values, kind) for name, values in columns.items()}).slice(offset)
    columns = {name: values[offset:] for name, values in columns.items()}
    bits: list[tuple[str, int] | None] = [("a", 0), ("a", 7), ("a", 63), ("b", 9), ("b", 23), ("b", 40), None, ("a", 8)]
    tally = tally_batch(batch, BitQuery(tuple(bits), overlap=True))
    counts, pairs = _expected(columns, bits)
    assert tally.events == n - offset
    assert tally.counts.tolist() == counts and tally.pairs is not None and tally.pairs.tolist() == pairs
    assert sum(counts) > 0
    alone = tally_batch(batch, BitQuery(tuple(bits), overlap=False))
    assert (alone.events, alone.counts.tolist(), alone.pairs) == (n - offset, counts, None)


@pytest.mark.parametrize("overlap", [False, True])
def test_a_column_whose_masks_are_all_null_or_empty_counts_nothing(overlap: bool) -> None:
    """A task whose inputs carry no L1 masks (CMS NanoAOD): the column holds only nulls, or empty masks."""
    columns: dict[str, list[bytes | None]] = {"a": [None] * 5, "b": [b"", None, b"", b"", None], "c": [b"\x01"] * 5}
    batch = pa.record_batch({name: pa.array(values, pa.binary()) for name, values in columns.items()})
    bits: list[tuple[str, int] | None] = [("a", 0), ("b", 5), ("c", 0)]
    tally = tally_batch(batch, BitQuery(tuple(bits), overlap=overlap))
    counts, pairs = _expected(columns, bits)
    assert tally.events == 5 and tally.counts.tolist() == counts == [0, 0, 5]
    assert tally.pairs is None if not overlap else tally.pairs is not None and tally.pairs.tolist() == pairs


def test_batches_add_up_and_an_empty_batch_counts_nothing() -> None:
    rng = np.random.default_rng(5)
    table = pa.table({"m": pa.array(_masks(rng, 300, 4, True, False), pa.binary())})
    query = BitQuery((("m", 1), ("m", 30)), overlap=True)
    whole = tally_batch(table.combine_chunks().to_batches()[0], query)
    parts = tally_batches(table.to_batches(max_chunksize=64), query)
    assert whole.pairs is not None and parts.pairs is not None
    assert (parts.events, parts.counts.tolist(), parts.pairs.tolist()) == (
        whole.events, whole.counts.tolist(), whole.pairs.tolist())  # fmt: skip
    empty = tally_batch(pa.record_batch({"m": pa.array([], pa.binary())}), query)
    assert empty.events == 0 and empty.counts.tolist() == [0, 0]


def test_a_pattern_histogram_gives_the_same_tally() -> None:
    rng = np.random.default_rng(9)
    masks = _masks(rng, 500, 16, True, True)
    bits = tuple(("m", int(b)) for b in rng.choice(128, 70, replace=False))  # 70 bits: two pattern words
    query = BitQuery(bits, overlap=True)
    direct = tally_batch(pa.record_batch({"m": pa.array(masks, pa.binary())}), query)
    patterns: dict[tuple[int, int], int] = {}
    for mask in masks:
        words = [0, 0]
        for i, (_, bit) in enumerate(bits):
            if mask is not None and len(mask) > bit // 8 and mask[bit // 8] >> (bit % 8) & 1:
                words[i // 63] |= 1 << (i % 63)
        patterns[(words[0], words[1])] = patterns.get((words[0], words[1]), 0) + 1
    histogram = tally_patterns(np.array(list(patterns), np.int64), np.array(list(patterns.values())), query)
    assert histogram.events == direct.events == 500
    assert histogram.counts.tolist() == direct.counts.tolist()
    assert histogram.pairs is not None and direct.pairs is not None
    assert histogram.pairs.tolist() == direct.pairs.tolist()
    nothing = tally_patterns(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), query)  # a query without rows
    assert nothing.events == 0 and nothing.pairs is not None and not nothing.pairs.any()


def _bit_counts_by_hand(masks: list[bytes | None]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for mask in masks:
        for byte, value in enumerate(mask or b""):
            for j in range(8):
                if value >> j & 1:
                    counts[8 * byte + j] = counts.get(8 * byte + j, 0) + 1
    return counts


@pytest.mark.parametrize(
    ("width", "density", "nulls", "ragged", "large", "offset"),
    [
        (64, 0.3, False, False, False, 0),  # L1-like, dense: byte histograms
        (1024, 0.002, False, False, False, 0),  # HLT-like, sparse: nonzero words only
        (1024, 0.002, False, False, False, 29),  # a slice (not aligned to 8 bytes)
        (13, 0.3, False, False, False, 0),  # a width that is not whole words
        (64, 0.3, True, False, False, 0),
        (64, 0.3, True, True, True, 5),
        (1024, 0.002, False, True, False, 0),
    ],
)
def test_bit_counts_match_the_bytes(
    width: int, density: float, nulls: bool, ragged: bool, large: bool, offset: int
) -> None:
    rng = np.random.default_rng(width + offset)
    masks: list[bytes | None] = []
    for _ in range(600 + offset):
        if nulls and rng.random() < 0.2:
            masks.append(None)
            continue
        size = int(rng.integers(0, width + 1)) if ragged else width
        masks.append(bytes((rng.random(size) < density) * rng.integers(1, 256, size)))
    array = pa.array(masks, pa.large_binary() if large else pa.binary()).slice(offset)
    bits, counts = bit_counts(array)
    want = _bit_counts_by_hand(masks[offset:])
    assert dict(zip(bits.tolist(), counts.tolist(), strict=True)) == want
    assert bits.tolist() == sorted(want) and len(want) > 5
    chunked = pa.chunked_array([array.slice(0, 100), array.slice(100)])
    assert [a.tolist() for a in bit_counts(chunked)] == [bits.tolist(), counts.tolist()]


@pytest.mark.parametrize("masks", [[None] * 50, [b""] * 50, [], [None, b"", b"\x00" * 64]])
def test_bit_counts_of_masks_all_null_empty_or_zero_are_none(masks: list[bytes | None]) -> None:
    bits, counts = bit_counts(pa.array(masks, pa.binary()))
    assert bits.tolist() == [] and counts.tolist() == []
