"""Trigger-bit counting on Arrow batches of mask columns: per-bit counts and pairwise overlaps, in one pass.

A mask is a binary value whose bit i is bit i % 8 of byte i // 8 (docs/warehouse.md). For each
requested bit this takes one byte per row straight from the Arrow buffers (no per-row Python), so
the cost is that of reading the mask columns. Pairwise overlaps are popcounts of the AND of bit
rows packed 64 to a word.

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


class _Masks:
    """A batch's mask column as numpy views of its Arrow buffers, for reading bits of every row."""

    def __init__(self, array: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        offset_type: type[np.signedinteger[Any]]
        if pa.types.is_large_binary(array.type):
            offset_type = np.int64
        elif pa.types.is_binary(array.type):
            offset_type = np.int32
        else:
            raise TypeError(f"a mask column holds {array.type}, not binary")
        self.n = n = len(array)
        _, offsets_buffer, data_buffer = array.buffers()
        self.data: np.ndarray = np.zeros(0, np.uint8)
        if data_buffer is not None and data_buffer.size:
            self.data = np.frombuffer(data_buffer, dtype=np.uint8)
        offsets: np.ndarray = np.zeros(n + 1, np.int64)
        if offsets_buffer is not None and n:
            offset = array.offset * offset_type().nbytes
            offsets = np.frombuffer(offsets_buffer, dtype=offset_type, count=n + 1, offset=offset)
        self.starts = offsets[:-1]
        self.lengths = offsets[1:] - self.starts
        self.valid = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
        # Every mask present and of one width (as the loader writes them): row r's byte b is data[base + r * width + b].
        width = int(self.lengths[0]) if n else 0
        uniform = n > 0 and width > 0 and self.valid is None and bool(np.all(self.lengths == width))
        base = int(self.starts[0]) if n else 0
        self.matrix = self.data[base : base + n * width].reshape(n, width) if uniform else None

    def byte(self, byte: int) -> np.ndarray:
        """Byte `byte` of each row's mask (0 where the mask is null or shorter)."""
        if self.matrix is not None:
            if byte >= self.matrix.shape[1]:
                return np.zeros(self.n, dtype=np.uint8)
            column: np.ndarray = self.matrix[:, byte]
            return column
        present = self.lengths > byte
        if self.valid is not None:
            present &= self.valid
        if not present.any():  # no mask reaches this byte (every one null or shorter): nothing to index
            return np.zeros(self.n, dtype=np.uint8)
        return np.where(present, self.data[np.where(present, self.starts + byte, 0)], 0).astype(np.uint8)

    def bit(self, bit: int) -> np.ndarray:
        """Whether `bit` is set in each row's mask (False where the mask is null or shorter)."""
        result: np.ndarray = self.byte(bit >> 3) & np.uint8(1 << (bit & 7)) != 0
        return result


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per row of a 2-D array of uint64 words."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        counts: np.ndarray = np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
        return counts
    return np.asarray(_BYTE_POPCOUNT[words.view(np.uint8)].sum(axis=-1, dtype=np.int64))


_BYTE_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def tally_batch(batch: pa.RecordBatch, query: BitQuery) -> Tally:
    """The tally of one batch holding (at least) the query's mask columns.

    Counts alone test each bit where it lies. For overlaps each requested bit becomes a row of bits
    packed in 64-bit words; a pair's overlap is the popcount of the AND of two such rows, so k bits
    cost k(k+1)/2 passes over n/64 words.
    """
    n, k = batch.num_rows, len(query.bits)
    masks = {name: _Masks(batch.column(name)) for name in query.columns} if n else {}
    if not query.overlap:  # counts only: test each bit in place
        counts = np.zeros(k, dtype=np.int64)
        for i, bit in enumerate(query.bits):
            if bit is not None and n:
                counts[i] = np.count_nonzero(masks[bit[0]].byte(bit[1] >> 3) & np.uint8(1 << (bit[1] & 7)))
        return Tally(n, counts, None)
    words = np.zeros((k, (n + 63) // 64), dtype=np.uint64)
    for i, bit in enumerate(query.bits):
        if bit is not None and n:
            packed = np.packbits(masks[bit[0]].bit(bit[1]), bitorder="little")
            words[i].view(np.uint8)[: len(packed)] = packed
    pairs = np.zeros((k, k), dtype=np.int64)
    for i in range(k):
        pairs[i, i:] = _popcount(words[i] & words[i:])
        pairs[i:, i] = pairs[i, i:]
    return Tally(n, np.diag(pairs).copy(), pairs)


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
    if not len(rows):
        return Tally.empty(query)
    words = np.asarray(words, dtype=np.int64).reshape(len(rows), -1)
    hits = np.zeros((len(rows), k), dtype=np.float64)  # float64: BLAS, and exact for sums below 2^53
    for i in range(k):
        hits[:, i] = (words[:, i // PATTERN_BITS] >> (i % PATTERN_BITS)) & 1
    weighted = hits * rows[:, None]
    pairs = np.rint(weighted.T @ hits).astype(np.int64) if query.overlap else None
    return Tally(int(rows.sum()), np.rint(weighted.sum(axis=0)).astype(np.int64), pairs)


#: Bits set in each byte value: _BYTE_BITS[v, j] is bit j of v.
_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.int64)


def bit_counts(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """How many rows of a mask column have each bit set: (bit numbers, counts) of the bits set in at least one
    row, ascending. Null masks and bytes past a shorter mask count as unset (as :func:`tally_batch` reads them)."""
    masks = _Masks(array)
    if masks.matrix is not None:
        counts = _matrix_bit_counts(masks.matrix)
    else:
        lengths = masks.lengths.astype(np.int64)
        if masks.valid is not None:
            lengths = np.where(masks.valid, lengths, 0)
        total = int(lengths.sum())
        width = int(lengths.max()) if masks.n else 0
        # Byte k of the masks laid end to end is byte (k - first byte of its row) of its row's mask.
        byte = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        values = masks.data[np.repeat(masks.starts.astype(np.int64), lengths) + byte]
        counts = _sparse_bit_counts(byte, values, width)
    bits = np.flatnonzero(counts)
    return bits.astype(np.int32), counts[bits]


def _matrix_bit_counts(matrix: np.ndarray) -> np.ndarray:
    """Per-bit counts of masks of one width (rows of a uint8 matrix). Sparse masks (HLT: a few chains of
    thousands pass) by their nonzero 64-bit words only; dense ones by a histogram of each used byte's values."""
    width = matrix.shape[1]
    if width % 8:
        nonzero = np.flatnonzero(matrix)
        return _sparse_bit_counts(nonzero % width, matrix.reshape(-1)[nonzero], width)
    words = np.ascontiguousarray(matrix).view(np.uint64).reshape(-1)
    used = np.flatnonzero(words)
    if len(used) * 4 <= len(words):
        octets = words[used].view(np.uint8).reshape(-1, 8)
        word, within = np.nonzero(octets)
        return _sparse_bit_counts((used[word] % (width // 8)) * 8 + within, octets[word, within], width)
    counts = np.zeros((width, 8), dtype=np.int64)
    columns = np.ascontiguousarray(matrix.T)
    for byte in np.flatnonzero(matrix.any(axis=0)):
        counts[byte] = np.bincount(columns[byte], minlength=256) @ _BYTE_BITS
    return counts.reshape(-1)


def _sparse_bit_counts(byte: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    """Per-bit counts from bytes given by their byte number in the mask and their value."""
    counts = np.zeros(width * 8, dtype=np.int64)
    for j in range(8):
        counts[j::8] = np.bincount(byte[(values & np.uint8(1 << j)) != 0], minlength=width)
    return counts
