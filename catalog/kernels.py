"""Trigger-bit counting on Arrow batches of mask columns: per-bit counts and pairwise overlaps, in one pass.

A mask is a binary value whose bit i is bit i % 8 of byte i // 8 (docs/warehouse.md). For each
requested bit this takes one byte per row straight from the Arrow buffers (no per-row Python), so
the cost is that of reading the mask columns. The overlap matrix of k bits is the product XᵀX of
the rows' k-bit indicator matrix X, which BLAS computes for a batch at a time.

DuckDB streams the rows' mask columns to this process as Arrow batches. Spark groups the rows by the
pattern of their requested bits on the executors and returns the histogram, which
:func:`tally_patterns` turns into the same tally. Tallies of parts of the data add up to the tally
of the whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

#: Batches are counted this many rows at a time: float32 products are exact up to 2^24, and 64 bits of
#: indicators for this many rows take 64 MiB.
MAX_PRODUCT_ROWS = 1 << 18


@dataclass(frozen=True)
class BitQuery:
    """Which bits to count: `bits[i]` is (mask column, bit number), or None for a bit the rows' trigger
    names do not have (it is counted as never set)."""

    bits: tuple[tuple[str, int] | None, ...]
    overlap: bool

    @property
    def columns(self) -> list[str]:
        return sorted({bit[0] for bit in self.bits if bit is not None})


@dataclass
class Tally:
    """Rows seen, rows with each bit set, and (with overlap) rows with both bits of each pair set."""

    events: int
    counts: np.ndarray  # int64, k
    pairs: np.ndarray | None  # int64, k x k

    @classmethod
    def empty(cls, query: BitQuery) -> Tally:
        k = len(query.bits)
        return cls(0, np.zeros(k, np.int64), np.zeros((k, k), np.int64) if query.overlap else None)

    def add(self, other: Tally) -> None:
        self.events += other.events
        self.counts += other.counts
        if self.pairs is not None and other.pairs is not None:
            self.pairs += other.pairs


def _bit_column(array: pa.Array, bit: int) -> np.ndarray:
    """Whether `bit` is set in each row's mask (False where the mask is null or shorter)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    offset_type: type[np.signedinteger[Any]]
    if pa.types.is_large_binary(array.type):
        offset_type = np.int64
    elif pa.types.is_binary(array.type):
        offset_type = np.int32
    else:
        raise TypeError(f"a mask column holds {array.type}, not binary")
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype=bool)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets: np.ndarray = np.frombuffer(
        offsets_buffer, dtype=offset_type, count=n + 1, offset=array.offset * offset_type().nbytes
    )
    if data_buffer is None or data_buffer.size == 0:
        return np.zeros(n, dtype=bool)
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    byte, shift = bit >> 3, bit & 7
    starts = offsets[:-1]
    long_enough = (offsets[1:] - starts) > byte
    if array.null_count:
        long_enough &= array.is_valid().to_numpy(zero_copy_only=False)
    if long_enough.all():
        values = data[starts + byte]
    else:
        values = np.where(long_enough, data[np.where(long_enough, starts + byte, 0)], 0)
    result: np.ndarray = (values >> shift) & 1 == 1
    return result


def tally_batch(batch: pa.RecordBatch, query: BitQuery) -> Tally:
    """The tally of one batch holding (at least) the query's mask columns."""
    tally = Tally.empty(query)
    for start in range(0, max(batch.num_rows, 1), MAX_PRODUCT_ROWS):
        part = batch.slice(start, MAX_PRODUCT_ROWS)
        n = part.num_rows
        if n == 0:
            break
        hits = np.zeros((n, len(query.bits)), dtype=np.float32 if query.overlap else bool)
        for i, bit in enumerate(query.bits):
            if bit is not None:
                hits[:, i] = _bit_column(part.column(bit[0]), bit[1])
        tally.events += n
        tally.counts += np.count_nonzero(hits, axis=0).astype(np.int64)
        if tally.pairs is not None:
            tally.pairs += np.rint(hits.T @ hits).astype(np.int64)
    return tally


def tally_batches(batches: Iterable[pa.RecordBatch], query: BitQuery) -> Tally:
    tally = Tally.empty(query)
    for batch in batches:
        tally.add(tally_batch(batch, query))
    return tally


#: Bits per word of a pattern (:func:`tally_patterns`): a signed 64-bit integer holds 63 of them.
PATTERN_BITS = 63


def tally_patterns(words: np.ndarray, counts: np.ndarray, query: BitQuery) -> Tally:
    """The tally of a histogram of bit patterns: `counts[p]` rows had pattern `words[p]` (bit i of the query
    is bit i % 63 of word i // 63), as an engine that groups rows by their pattern returns it."""
    k = len(query.bits)
    rows = np.asarray(counts, dtype=np.int64)
    words = np.asarray(words, dtype=np.int64).reshape(len(rows), -1)
    hits = np.zeros((len(rows), k), dtype=np.float64)  # float64: BLAS, and exact for sums below 2^53
    for i in range(k):
        hits[:, i] = (words[:, i // PATTERN_BITS] >> (i % PATTERN_BITS)) & 1
    weighted = hits * rows[:, None]
    pairs = np.rint(weighted.T @ hits).astype(np.int64) if query.overlap else None
    return Tally(int(rows.sum()), np.rint(weighted.sum(axis=0)).astype(np.int64), pairs)
