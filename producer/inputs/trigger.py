"""ATLAS EventIndex trigger masks, as the SPB producer writes them (docs/spb-format.md).

Pure functions, vectorised over a batch of events (the SPB reader calls them once per batch).

Trigger masks. The producer turns a vector of 32-bit words into a bit string word by word,
bit 0 of each word first, and run-length codes it: every run of 0s becomes its length in base
64 (alphabet `A-Z a-z 0-9 + /`, A = 0, most significant digit first, no padding, the trailing
run included) and every 1 becomes `!`; decoders also accept ` ` as a literal 0. Bit i of that
string is bit i of our bitmaps (bit i is bit i % 8 of byte i // 8), i.e. the bitmap is simply
the words' little-endian bytes. `L1PassedTrigMask` is one string of TBP + TAP + TAV (512 bits
each); `L2PassedTrigMask` and `EFPassedTrigMask` are `RLE(physics);RLE(through);RLE(resurrected)`
(8192 bits each). An empty string is an absent (null) mask; a string that decodes to fewer bits
than the vector's width is padded with 0s (older files, shorter vectors); more bits is an error.
An L2/EF value with no `;` (older files) is the physics mask only. An L1 value that is not
3 x 512 bits but splits into three equal parts of whole 32-bit words (Run 1: 3 x 256) is split
into those parts.

Errors are `MaskFormatError`, carrying the index of the offending value in the batch, so the
caller can name the file and the record. (POOL tokens: producer.inputs.pool_token.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eventindex.columns import shared_zeros
from eventindex.errors import InputError

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
L1_BITS = 512
HLT_BITS = 8192
L1_LEVELS = 3
#: Longest base-64 run length accepted (64**10 > any width; more is garbage, not a big number).
MAX_RUN_DIGITS = 10

_ONE = 64
_ZERO = 65
_BAD = 255
_LUT = np.full(256, _BAD, dtype=np.uint8)
_LUT[np.frombuffer(ALPHABET.encode(), dtype=np.uint8)] = np.arange(64, dtype=np.uint8)
_LUT[ord("!")] = _ONE
_LUT[ord(" ")] = _ZERO
#: What a character (by its _LUT value) adds to the bit count before its run's place value: a digit
#: its value, `!` and ` ` one bit.
_ADDS = np.ones(_ZERO + 1, dtype=np.int64)
_ADDS[:_ONE] = np.arange(_ONE)
_ADDS32 = _ADDS.astype(np.int32)


class MaskFormatError(InputError):
    """A run-length coded mask string of the batch is malformed; `index` is its position in the batch."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


# ---------------------------------------------------------------- run-length code


def _b64(n: int) -> str:
    digits = ""
    while True:
        digits = ALPHABET[n % 64] + digits
        n //= 64
        if not n:
            return digits


def rle_encode_bits(bits: str) -> str:
    """A string of `0`/`1` -> its run-length code (`0001100001001101010000` -> `D!!E!C!!B!B!E`)."""
    if bits.strip("01"):
        raise ValueError("a bit string holds only 0 and 1")
    return "".join((_b64(len(run)) if run else "") + "!" for run in bits.split("1"))[:-1]


def rle_decode_bits(text: str) -> str:
    """A run-length code -> its string of `0`/`1` (scalar and slow: for tests and debugging)."""
    bitmaps, nbits = decode_rle([text], max(1, rle_length(text)))
    out = np.unpackbits(bitmaps[0], bitorder="little")[: int(nbits[0])]
    return "".join("1" if b else "0" for b in out)


def rle_length(text: str) -> int:
    """How many bits a run-length code stands for (raises MaskFormatError at index 0)."""
    total = 0
    digits = ""
    for ch in text + "!":
        if ch in "! ":
            if digits:
                if len(digits) > MAX_RUN_DIGITS:
                    raise MaskFormatError(0, f"run length {digits!r} has more than {MAX_RUN_DIGITS} digits")
                total += sum(ALPHABET.index(d) * 64**i for i, d in enumerate(reversed(digits)))
                digits = ""
            total += 1
        elif ch in ALPHABET:
            digits += ch
        else:
            raise MaskFormatError(0, f"invalid character {ch!r} in a trigger mask")
    return total - 1


Texts: TypeAlias = Sequence[str] | pa.Array | pa.ChunkedArray


def _string_array(texts: Texts) -> pa.Array:
    """A batch of strings (a sequence, or an Arrow string array without nulls) as one Arrow string array."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts.cast(pa.string())
    return pa.array(texts, pa.string())


def decode_rle(texts: Texts, max_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a batch of run-length codes at once.

    Returns `(bitmaps, nbits)`: an `(n, ceil(max_bits / 8))` uint8 array (bit i of row r is bit
    i % 8 of byte i // 8) and how many bits each code stands for (0 for an empty string).
    Raises MaskFormatError (with the index of the bad string) for a character outside the
    alphabet, a run length of more than MAX_RUN_DIGITS digits, or more than `max_bits` bits.
    """
    bitmaps, nbits, inverse = decode_rle_distinct(texts, max_bits)
    return bitmaps[inverse], nbits[inverse]


def decode_rle_distinct(texts: Texts, max_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`decode_rle` of the distinct values only: (bitmaps, nbits) of each distinct value, and
    `inverse` (row i is distinct value inverse[i]). Masks repeat a lot within a batch (all-zero
    vectors, common trigger patterns), so this decodes much less."""
    encoded = _string_array(texts).dictionary_encode()  # distinct values in order of first appearance
    inverse = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    try:
        bitmaps, nbits = _decode_distinct(encoded.dictionary, max_bits)
    except MaskFormatError as exc:
        raise MaskFormatError(int(np.argmax(inverse == exc.index)), exc.reason) from None
    return bitmaps, nbits, inverse


def _no_bits(rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The bitmaps (`width` bytes a row) and bit counts of `rows` masks with no bit set, to fill in."""
    return np.zeros((rows, width), dtype=np.uint8), np.zeros(rows, dtype=np.int64)


def _string_bytes(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(the bytes of every string back to back as uint8, each string's length) of an Arrow string array."""
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + n + 1].astype(np.int64)
    data = array.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return np.empty(0, dtype=np.uint8), np.diff(offsets)
    raw = np.frombuffer(data, dtype=np.uint8, count=int(offsets[-1] - offsets[0]), offset=int(offsets[0]))
    return raw, np.diff(offsets)


def _decode_distinct(texts: pa.Array, max_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(bitmaps, nbits) of each string, character by character, with no array per token.

    Every character adds to the bit count: `!` and ` ` one bit, a digit its value times 64 to the
    power of the digits after it in its run (so a run adds its length); a cumulative sum of that
    over all the strings (each starting at its row of the bitmaps) then puts each `!` at its bit.
    Anything this does not decode plainly (a character outside the alphabet, a run of more than
    MAX_RUN_DIGITS digits or longer than `max_bits`, too many bits) goes to `_decode_tokens`, which
    raises the error naming the first bad value."""
    n, width = len(texts), (max_bits + 7) // 8
    out, nbits = _no_bits(n, width)
    raw, lengths = _string_bytes(texts)
    if not n or not lengths.any():
        return out, nbits
    vals = _LUT[raw]
    if int(vals.max()) > _ZERO:  # a character outside the alphabet (_BAD)
        return _decode_tokens(texts, max_bits)
    is_digit = vals < _ONE
    starts = np.cumsum(lengths) - lengths  # where each string starts in raw
    # follows[i]: character i + 1 is a digit of the same run as digit i.
    follows = np.zeros(len(vals), dtype=bool)
    np.logical_and(is_digit[1:], is_digit[:-1], out=follows[:-1])
    follows[starts[(starts > 0) & (lengths > 0)] - 1] = False
    # after[i]: how many digits follow digit i in its run.
    after = follows.astype(np.uint8)
    chain = follows
    k = 0
    for k in range(1, MAX_RUN_DIGITS):
        chain = chain[:-1] & follows[k:]
        if not chain.any():
            break
        after[: len(chain)] += chain
    else:
        return _decode_tokens(texts, max_bits)  # a run of more than MAX_RUN_DIGITS digits
    # With at most 4 digits a run (after <= 3) a digit's place value is below 2**24, and when the rows'
    # bits, back to back, number under 2**31 too, 32 bits will do.
    narrow = k <= 4 and n * width * 8 < 2**31
    adds = (_ADDS32 if narrow else _ADDS)[vals]
    adds <<= after * adds.dtype.type(6)
    if int(adds.max()) > max_bits:
        return _decode_tokens(texts, max_bits)  # one run alone is too long
    rows = np.flatnonzero(lengths)
    firsts = starts[rows]
    nbits[rows] = np.add.reduceat(adds, firsts, dtype=np.int64)
    if int(nbits.max()) > max_bits:
        return _decode_tokens(texts, max_bits)
    ones = np.flatnonzero(vals == _ONE)
    if len(ones):
        # Each string's first character also adds the distance from the previous string's last bit to
        # its own row's first bit in `out`: the cumulative sum then gives every `!` its bit in `out`.
        before = np.cumsum(nbits[rows]) - nbits[rows]  # bits of the strings before, back to back
        adds[firsts] += np.diff(rows * (width * 8) - before, prepend=0).astype(adds.dtype)
        at = np.cumsum(adds)[ones] - 1
        flat = at >> 3
        bit = (np.int64(1) << (at & 7)).astype(np.uint8)
        first = np.flatnonzero(np.diff(flat, prepend=-1))
        out.reshape(-1)[flat[first]] = np.add.reduceat(bit, first)
    return out, nbits


def _decode_tokens(texts: pa.Array, max_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """`_decode_distinct` token by token (arrays over the runs and `!`s), checking as it goes:
    raises MaskFormatError naming the first bad value."""
    n, width = len(texts), (max_bits + 7) // 8
    out, nbits = _no_bits(n, width)
    raw, lengths = _string_bytes(texts)
    if not n or not lengths.any():
        return out, nbits
    ends_at = np.cumsum(lengths)  # string k is raw[ends_at[k] - lengths[k] : ends_at[k]]
    wide = np.flatnonzero(raw >= 0x80)
    if len(wide):
        index = int(np.searchsorted(ends_at, wide[0], side="right"))
        text = str(texts[index].as_py())
        raise MaskFormatError(index, f"non-ASCII character in trigger mask {text[:40]!r}")
    vals = _LUT[raw]
    bad = np.flatnonzero(vals == _BAD)
    if len(bad):
        index = int(np.searchsorted(ends_at, bad[0], side="right"))
        text = str(texts[index].as_py())
        raise MaskFormatError(index, f"invalid character {chr(raw[bad[0]])!r} in trigger mask {text[:40]!r}")
    is_digit = vals < 64
    # A token is one `!`/` ` character, or a maximal run of digits inside one string.
    tok_start = np.ones(len(vals), dtype=bool)
    tok_start[1:] = ~(is_digit[1:] & is_digit[:-1])
    tok_start[(ends_at - lengths)[lengths > 0]] = True
    tok_first = np.flatnonzero(tok_start)
    seg_end_tok = np.searchsorted(tok_first, ends_at, side="left")  # tokens of string k: [.. - count, ..)
    seg_count = np.diff(seg_end_tok, prepend=0)
    seg_first_tok = seg_end_tok - seg_count
    tok_seg = np.repeat(np.arange(n), seg_count)
    tok_size = np.diff(np.append(tok_first, len(vals)))
    tok_digit = is_digit[tok_first]
    long_runs = np.flatnonzero(tok_digit & (tok_size > MAX_RUN_DIGITS))
    if len(long_runs):
        index = int(tok_seg[long_runs[0]])
        raise MaskFormatError(index, f"run length with more than {MAX_RUN_DIGITS} digits in trigger mask")
    # Run lengths, most significant digit first (Horner over the few digits of a token).
    tok_len = np.ones(len(tok_first), dtype=np.int64)
    runs = np.flatnonzero(tok_digit)
    if len(runs):
        run_first, run_size = tok_first[runs], tok_size[runs]
        value = vals[run_first].astype(np.int64)
        for digit in range(1, int(run_size.max())):
            more = np.flatnonzero(run_size > digit)
            value[more] = value[more] * 64 + vals[run_first[more] + digit]
        tok_len[runs] = value
    too_long = np.flatnonzero(tok_len > max_bits)
    if len(too_long):
        index = int(tok_seg[too_long[0]])
        raise MaskFormatError(index, f"trigger mask decodes to more than {max_bits} bits")
    # Position of each token in its string: exclusive running sum, restarted at each string.
    ends = np.cumsum(tok_len)
    has = seg_count > 0
    base = np.zeros(n, dtype=np.int64)
    base[has] = ends[seg_first_tok[has]] - tok_len[seg_first_tok[has]]
    nbits[has] = ends[seg_end_tok[has] - 1] - base[has]
    over = np.flatnonzero(nbits > max_bits)
    if len(over):
        index = int(over[0])
        raise MaskFormatError(index, f"trigger mask decodes to {int(nbits[index])} bits, more than {max_bits}")
    ones = np.flatnonzero(vals[tok_first] == _ONE)
    if len(ones):
        pos = ends[ones] - 1 - base[tok_seg[ones]]
        flat = tok_seg[ones] * width + (pos >> 3)
        bit = (np.int64(1) << (pos & 7)).astype(np.uint8)
        first = np.flatnonzero(np.diff(flat, prepend=-1))
        out.reshape(-1)[flat[first]] = np.add.reduceat(bit, first)
    return out, nbits


def encode_rle(bitmap: bytes | np.ndarray, nbits: int) -> str:
    """The run-length code of the first `nbits` bits of a bitmap (bit i is bit i % 8 of byte i // 8)."""
    bits = np.unpackbits(np.frombuffer(bytes(bitmap), dtype=np.uint8), bitorder="little")
    if len(bits) < nbits:
        raise ValueError(f"bitmap has {len(bits)} bits, {nbits} asked for")
    if bits[nbits:].any():
        raise ValueError(f"bitmap has bits set beyond bit {nbits}")
    ones = np.flatnonzero(bits[:nbits])
    gaps = np.diff(ones, prepend=-1) - 1
    parts = [(_b64(int(gap)) if gap else "") + "!" for gap in gaps]
    tail = nbits - (int(ones[-1]) + 1 if len(ones) else 0)
    if tail:
        parts.append(_b64(tail))
    return "".join(parts)


# ---------------------------------------------------------------- word order


def words_to_bitmap(words: Sequence[int] | np.ndarray) -> bytes:
    """A vector of 32-bit words -> bitmap bytes (bit j of word w is bit 32 w + j): little-endian words."""
    array = np.asarray(words, dtype=np.uint64)
    if (array >> np.uint64(32)).any():
        raise ValueError("a trigger word does not fit in 32 bits")
    return array.astype("<u4").tobytes()


def bitmap_to_words(bitmap: bytes) -> list[int]:
    """Bitmap bytes (a multiple of 4) -> the vector of 32-bit words."""
    return [int(w) for w in np.frombuffer(bitmap, dtype="<u4")]


def words_to_bits(words: Iterable[int]) -> str:
    """The producer's bit string of a word vector: each word's 32-bit binary reversed, in vector order."""
    return "".join(f"{w:032b}"[::-1] for w in words)


# ---------------------------------------------------------------- the three mask fields


@dataclass(frozen=True)
class Mask:
    """One mask vector of a batch, as distinct values: row i is `bitmaps[inverse[i]]`, null
    where `valid[inverse[i]]` is false."""

    bitmaps: np.ndarray  # (distinct, width bytes) uint8
    valid: np.ndarray  # (distinct,) bool
    inverse: np.ndarray  # (rows,) int

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(n, width) bitmaps and (n,) validity, one per row."""
        return self.bitmaps[self.inverse], self.valid[self.inverse]

    def column(self) -> pa.Array:
        """An Arrow binary array; null rows span no bytes."""
        n, width = len(self.inverse), self.bitmaps.shape[1]
        valid = self.valid[self.inverse]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(valid.astype(np.int32) * width, out=offsets[1:])
        if self.bitmaps[self.valid].any():
            data = pa.py_buffer(np.ascontiguousarray(self.bitmaps[self.inverse[valid]]))
        else:  # no bit set in any (resurrected masks, usually): megabytes of zeros, shared rather than written
            data = shared_zeros(int(offsets[-1]))
        if valid.all():
            return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), data])
        validity = pa.array(valid).buffers()[1]
        return pa.Array.from_buffers(
            pa.binary(), n, [validity, pa.py_buffer(offsets), data], null_count=int(n - valid.sum())
        )


def decode_l1(texts: Texts) -> tuple[Mask, Mask, Mask]:
    """`L1PassedTrigMask` values -> (TBP, TAP, TAV), 512 bits each; an empty value is null."""
    total = L1_LEVELS * L1_BITS
    bitmaps, nbits, inverse = decode_rle_distinct(texts, total)
    width = L1_BITS // 8
    parts = [bitmaps[:, k * width : (k + 1) * width].copy() for k in range(L1_LEVELS)]
    for row in np.flatnonzero((nbits != 0) & (nbits != total)):
        size = int(nbits[row])
        if size % (L1_LEVELS * 32):
            raise MaskFormatError(
                int(np.flatnonzero(inverse == row)[0]),
                f"L1 trigger mask decodes to {size} bits, not {L1_LEVELS} equal parts of whole 32-bit words",
            )
        part_bytes = size // L1_LEVELS // 8
        for k in range(L1_LEVELS):
            parts[k][row] = 0
            parts[k][row, :part_bytes] = bitmaps[row, k * part_bytes : (k + 1) * part_bytes]
    valid = nbits > 0
    tbp, tap, tav = (Mask(part, valid, inverse) for part in parts)
    return tbp, tap, tav


def split_levels(texts: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """`physics;through;resurrected` values -> three lists; a value with no `;` is physics only."""
    parts = [text.split(";") for text in texts]
    if all(len(levels) == 3 for levels in parts):
        if not parts:
            return [], [], []
        physics, through, resurrected = (list(level) for level in zip(*parts, strict=True))
        return physics, through, resurrected
    physics, through, resurrected = [], [], []
    for index, levels in enumerate(parts):
        if len(levels) == 1:
            levels = [levels[0], "", ""]
        elif len(levels) != 3:
            raise MaskFormatError(index, f"trigger mask has {len(levels)} ';'-separated parts, expected 3 (or 1)")
        physics.append(levels[0])
        through.append(levels[1])
        resurrected.append(levels[2])
    return physics, through, resurrected


def _split_level_arrays(texts: Texts) -> tuple[Texts, Texts, Texts]:
    """`split_levels` of a batch as Arrow arrays when every value has three parts (the usual case)."""
    array = _string_array(texts)
    parts = pc.split_pattern(array, ";")
    if len(array) and np.all(parts.value_lengths().to_numpy() == 3):
        flat = parts.flatten()
        physics, through, resurrected = (flat.take(np.arange(k, 3 * len(array), 3)) for k in range(3))
        return physics, through, resurrected
    return split_levels(array.to_pylist())


def decode_hlt(texts: Texts) -> tuple[Mask, Mask, Mask]:
    """`L2PassedTrigMask`/`EFPassedTrigMask` values -> (physics, through, resurrected), 8192 bits each."""
    masks = []
    for level in _split_level_arrays(texts):
        bitmaps, nbits, inverse = decode_rle_distinct(level, HLT_BITS)
        masks.append(Mask(bitmaps, nbits > 0, inverse))
    return masks[0], masks[1], masks[2]


def encode_l1(tbp: bytes | None, tap: bytes | None, tav: bytes | None) -> str:
    """(TBP, TAP, TAV) bitmaps, 64 bytes each -> `L1PassedTrigMask` ("" when all three are null)."""
    given = [m for m in (tbp, tap, tav) if m is not None]
    if not given:
        return ""
    if len(given) != L1_LEVELS:
        raise ValueError("the L1 masks are one string: TBP, TAP and TAV are all present or all null")
    return encode_rle(b"".join(_exact(m, L1_BITS) for m in given), L1_LEVELS * L1_BITS)


def encode_hlt(physics: bytes | None, through: bytes | None, resurrected: bytes | None) -> str:
    """(physics, through, resurrected) bitmaps, 1024 bytes each -> `a;b;c` (null is "")."""
    return ";".join(
        "" if m is None else encode_rle(_exact(m, HLT_BITS), HLT_BITS) for m in (physics, through, resurrected)
    )


def _exact(bitmap: bytes, bits: int) -> bytes:
    if len(bitmap) != bits // 8:
        raise ValueError(f"a mask of {bits} bits is {bits // 8} bytes, got {len(bitmap)}")
    return bitmap
