"""The sparse mask encoding's set-bit scan (eventindex.columns._mask_positions) against np.unpackbits."""

from __future__ import annotations

import numpy as np
import pytest

from eventindex.columns import _mask_positions


def reference(valid: np.ndarray, data: np.ndarray, width_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    rows = data.reshape(-1, width_bytes)
    counts = np.zeros(len(valid), dtype=np.uint32)
    positions = []
    for k, row in zip(np.flatnonzero(valid), rows, strict=True):
        bits = np.flatnonzero(np.unpackbits(row, bitorder="little"))
        counts[k] = len(bits)
        positions.append(bits)
    return counts, np.concatenate(positions or [np.empty(0, dtype=np.int64)]).astype(np.uint32)


@pytest.mark.parametrize("width_bytes", [8, 64, 1024])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.03, 0.5, 1.0])
def test_positions_equal_the_bits_of_each_row(width_bytes: int, density: float) -> None:
    rng = np.random.default_rng(int(density * 1000) + width_bytes)
    rows = 300
    bits = rng.random((rows, width_bytes * 8)) < density
    bits[5] = True  # a row whose every word is full (64 steps of the scan)
    bits[7] = False
    bits[9, [0, 7, 8, 63, width_bytes * 8 - 1]] = True  # byte, word and mask edges
    bits[11, [64 * k for k in range(width_bytes // 8)]] = True  # bit 0 of every word
    data = np.packbits(bits, axis=1, bitorder="little")
    valid = rng.random(rows + 40) < 0.9
    present = np.resize(data, (int(valid.sum()), width_bytes)).reshape(-1)
    counts, positions = _mask_positions(valid, present, width_bytes)
    want_counts, want_positions = reference(valid, present, width_bytes)
    assert counts.dtype == np.uint32 and positions.dtype == np.uint32
    assert np.array_equal(counts, want_counts)
    assert np.array_equal(positions, want_positions)


def test_no_present_row() -> None:
    counts, positions = _mask_positions(np.zeros(4, dtype=bool), np.empty(0, dtype=np.uint8), 64)
    assert list(counts) == [0, 0, 0, 0] and len(positions) == 0
