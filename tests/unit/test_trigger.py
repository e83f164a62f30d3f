"""Trigger masks of ATLAS SPB files (docs/spb-format.md): run-length code, bit order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from producer.inputs.trigger import (
    ALPHABET,
    HLT_BITS,
    L1_BITS,
    MaskFormatError,
    bitmap_to_words,
    decode_hlt,
    decode_l1,
    decode_rle,
    encode_hlt,
    encode_l1,
    encode_rle,
    rle_decode_bits,
    rle_encode_bits,
    split_levels,
    words_to_bitmap,
    words_to_bits,
)


def reference_encode(bits: str) -> str:
    """The code as docs/spb-format.md describes it, written independently: runs of 0s in base 64, 1 -> '!'."""

    def b64(n: int) -> str:
        return (b64(n // 64) if n >= 64 else "") + ALPHABET[n % 64]

    out, zeros = [], 0
    for bit in bits:
        if bit == "0":
            zeros += 1
            continue
        out.append((b64(zeros) if zeros else "") + "!")
        zeros = 0
    return "".join(out) + (b64(zeros) if zeros else "")


def bits_of(row: np.ndarray, n: int) -> str:
    return "".join(map(str, np.unpackbits(row, bitorder="little")[:n]))


# ---------------------------------------------------------------- run-length code


def test_reference_examples() -> None:
    assert rle_encode_bits("0001100001001101010000") == "D!!E!C!!B!B!E"
    assert rle_decode_bits("D!!E!C!!B!B!E") == "0001100001001101010000"
    assert rle_encode_bits("0" * 1536) == "YA"
    assert rle_decode_bits("YA") == "0" * 1536
    assert rle_encode_bits("0" * 8192) == "CAA"
    assert rle_encode_bits("") == ""
    assert rle_encode_bits("1") == "!"
    assert rle_encode_bits("01") == "B!"


def test_space_is_a_literal_zero() -> None:
    assert rle_decode_bits("B! !") == "01" + "0" + "1"
    assert rle_decode_bits(" ") == "0"


def test_random_bit_strings_round_trip_and_match_the_reference() -> None:
    rng = np.random.default_rng(5)
    texts, strings = [], []
    for _ in range(400):
        n = int(rng.integers(0, 3000))
        bits = "".join("1" if x else "0" for x in rng.random(n) < rng.choice([0.001, 0.05, 0.5]))
        strings.append(bits)
        texts.append(reference_encode(bits))
        assert rle_encode_bits(bits) == texts[-1]
    bitmaps, nbits = decode_rle(texts, 3000)
    for bits, text, row, size in zip(strings, texts, bitmaps, nbits, strict=True):
        assert int(size) == len(bits)
        assert bits_of(row, len(bits)) == bits
        assert not np.unpackbits(row, bitorder="little")[len(bits) :].any()
        assert encode_rle(row.tobytes(), len(bits)) == text


def test_repeated_values_decode_like_distinct_ones() -> None:
    texts = ["B!", "", "CAA", "B!", "", "!", "CAA"] * 3
    bitmaps, nbits = decode_rle(texts, HLT_BITS)
    assert list(nbits[:7]) == [2, 0, 8192, 2, 0, 1, 8192]
    assert bitmaps[0][0] == 0b10 and bitmaps[5][0] == 1 and not bitmaps[2].any()


def test_leading_zero_digits_are_accepted() -> None:
    assert rle_decode_bits("AB!") == "01"


@pytest.mark.parametrize(
    ("texts", "index", "reason"),
    [
        (["B!", "B?!"], 1, "invalid character '?'"),
        (["", "B!é"], 1, "non-ASCII"),
        (["B", "", "AAAAAAAAAAAB"], 2, "more than 10 digits"),
        (["B", "Q!"], 1, "17 bits, more than 16"),  # Q = 16 zeros, then a 1: 17 bits
        (["B", "BA"], 1, "more than 16 bits"),  # one run of 64
        (["!", "!!!!!!!!!!!!!!!!!"], 1, "17 bits, more than 16"),
        (["!", "!!!!!!!!!!!!!!!!!", "B", "!!!!!!!!!!!!!!!!!"], 1, "17 bits"),
    ],
)
def test_bad_codes_name_the_value(texts: list[str], index: int, reason: str) -> None:
    with pytest.raises(MaskFormatError) as info:
        decode_rle(texts, 16)
    assert info.value.index == index
    assert reason in str(info.value)


def test_encode_rejects_bits_beyond_the_width() -> None:
    with pytest.raises(ValueError, match="beyond"):
        encode_rle(b"\x00\x01", 8)
    with pytest.raises(ValueError, match="only 0 and 1"):
        rle_encode_bits("0102")


# ---------------------------------------------------------------- word order


def test_bit_zero_of_each_word_comes_first() -> None:
    words = [0x00000001, 0x80000000, 0x00000005]
    bits = words_to_bits(words)
    assert bits[0] == "1" and bits[1:63] == "0" * 62 and bits[63] == "1"
    assert bits[64:67] == "101"
    bitmap = words_to_bitmap(words)
    assert bitmap == bytes([1, 0, 0, 0, 0, 0, 0, 0x80, 5, 0, 0, 0])
    # The producer's bit string, run-length coded and decoded, is our bitmap.
    decoded, nbits = decode_rle([rle_encode_bits(bits)], 96)
    assert decoded[0].tobytes() == bitmap and nbits[0] == 96
    assert bitmap_to_words(bitmap) == words
    with pytest.raises(ValueError):
        words_to_bitmap([1 << 32])


def l1_words(seed: int) -> tuple[list[int], list[int], list[int]]:
    rng = np.random.default_rng(seed)
    tbp = [int(w) for w in rng.integers(0, 2**32, 16, dtype=np.uint64) & rng.integers(0, 2**32, 16, dtype=np.uint64)]
    tap = [w & int(m) for w, m in zip(tbp, rng.integers(0, 2**32, 16, dtype=np.uint64), strict=True)]
    tav = [w & int(m) for w, m in zip(tap, rng.integers(0, 2**32, 16, dtype=np.uint64), strict=True)]
    return tbp, tap, tav


def test_l1_is_one_string_of_tbp_tap_tav() -> None:
    tbp, tap, tav = l1_words(1)
    text = reference_encode(words_to_bits(tbp) + words_to_bits(tap) + words_to_bits(tav))
    masks = decode_l1([text, "", text])
    for mask, words in zip(masks, (tbp, tap, tav), strict=True):
        rows, valid = mask.rows()
        assert rows[0].tobytes() == words_to_bitmap(words) and rows[2].tobytes() == rows[0].tobytes()
        assert list(valid) == [True, False, True]
        assert mask.column().to_pylist() == [words_to_bitmap(words), None, words_to_bitmap(words)]
    assert encode_l1(words_to_bitmap(tbp), words_to_bitmap(tap), words_to_bitmap(tav)) == text
    assert encode_l1(None, None, None) == ""


def test_run1_l1_of_three_times_256_bits_is_split_in_thirds() -> None:
    tbp, tap, tav = (words[:8] for words in l1_words(2))
    text = rle_encode_bits(words_to_bits(tbp) + words_to_bits(tap) + words_to_bits(tav))
    masks = decode_l1([text])
    for mask, words in zip(masks, (tbp, tap, tav), strict=True):
        assert mask.column().to_pylist() == [words_to_bitmap(words) + bytes(32)]


def test_l1_of_another_length_is_an_error() -> None:
    with pytest.raises(MaskFormatError, match="1000 bits") as info:
        decode_l1(["YA", rle_encode_bits("0" * 1000)])
    assert info.value.index == 1
    with pytest.raises(MaskFormatError, match="more than 1536"):
        decode_l1(["YB"])


def test_hlt_levels() -> None:
    physics = [0] * 255 + [0x80000000]
    through = [3] + [0] * 255
    a, b = (reference_encode(words_to_bits(w)) for w in (physics, through))
    texts = [f"{a};{b};CAA", ";;", a, "", f";{b};", "B!"]
    masks = decode_hlt(texts)
    columns = [mask.column().to_pylist() for mask in masks]
    zero = bytes(HLT_BITS // 8)
    assert columns[0] == [words_to_bitmap(physics), None, words_to_bitmap(physics), None, None, b"\x02" + zero[1:]]
    assert columns[1] == [words_to_bitmap(through), None, None, None, words_to_bitmap(through), None]
    assert columns[2] == [zero, None, None, None, None, None]
    assert encode_hlt(words_to_bitmap(physics), words_to_bitmap(through), zero) == texts[0]
    assert encode_hlt(None, None, None) == ";;"


def test_hlt_errors_name_the_event() -> None:
    with pytest.raises(MaskFormatError, match="2 ';'-separated parts") as info:
        split_levels(["CAA;CAA;CAA", "CAA;CAA"])
    assert info.value.index == 1
    with pytest.raises(MaskFormatError, match="more than 8192") as info:
        decode_hlt([";;", ";CAB;"])
    assert info.value.index == 1


def test_mask_column_nulls_span_no_bytes() -> None:
    masks = decode_hlt([";;", "B!;;", ";;", "!;;"])
    column = masks[0].column()
    column.validate(full=True)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[: len(column) + 1]
    assert list(offsets) == [0, 0, 1024, 1024, 2048]
    assert column.null_count == 2


def test_a_mask_column_with_no_bit_set_shares_its_zeros() -> None:
    """Resurrected masks are usually all zero: their bitmaps are one shared buffer, equal to written ones."""
    more = decode_hlt(["CAA;CAA;CAA"] * 5)[2].column()
    masks = decode_hlt(["B!;CAA;CAA", ";;", "!;B!;CAA", "CAA;CAA;CAA"])
    resurrected = masks[2].column()
    resurrected.validate(full=True)
    assert resurrected.to_pylist() == [bytes(1024), None, bytes(1024), bytes(1024)]
    assert more.buffers()[2].address == resurrected.buffers()[2].address  # one buffer of zeros for both
    through = masks[1].column()  # a bit set in one row: written out
    assert through.to_pylist() == [bytes(1024), None, b"\x02" + bytes(1023), bytes(1024)]
    assert through.buffers()[2].address != resurrected.buffers()[2].address


def test_encode_checks_widths_and_all_or_nothing_l1() -> None:
    with pytest.raises(ValueError, match="all present or all null"):
        encode_l1(bytes(64), None, bytes(64))
    with pytest.raises(ValueError, match="64 bytes"):
        encode_l1(bytes(64), bytes(64), bytes(63))
    with pytest.raises(ValueError, match="1024 bytes"):
        encode_hlt(bytes(64), None, None)
    assert L1_BITS == 512


def test_masks_from_arrow_arrays_decode_like_lists() -> None:
    """The SPB reader hands over Arrow string arrays (sliced, chunked): same masks, same errors, as lists."""
    rng = np.random.default_rng(8)
    words = [rng.integers(0, 2**32, 48, dtype=np.uint64) * (rng.random(48) < 0.3) for _ in range(6)]
    l1 = [reference_encode(words_to_bits(w)) for w in words] + ["", reference_encode(words_to_bits(words[0]))]
    padded = pa.array(["junk", *l1, "junk"]).slice(1, len(l1))
    for given in (padded, pa.chunked_array([l1[:3], l1[3:]])):
        for ours, theirs in zip(decode_l1(given), decode_l1(l1), strict=True):
            assert ours.column().equals(theirs.column())
    hlt = [f"{a};{b};" for a, b in zip(l1, reversed(l1), strict=True)]
    for ours, theirs in zip(decode_hlt(pa.array(hlt)), decode_hlt(hlt), strict=True):
        assert ours.column().equals(theirs.column())
    mixed = ["", "B!", "B!;;", ";B!;"]  # older files: the physics mask alone
    for ours, theirs in zip(decode_hlt(pa.array(mixed)), decode_hlt(mixed), strict=True):
        assert ours.column().equals(theirs.column())
    with pytest.raises(MaskFormatError, match="non-ASCII") as info:
        decode_rle(pa.array(["x", "B!", "B!é", "B!é"]).slice(1), 16)
    assert info.value.index == 1


def test_character_decoder_matches_the_token_decoder() -> None:
    """`_decode_distinct` (a bit count per character) gives what `_decode_tokens` (arrays of runs) gives:
    empty strings among others, runs of 1-10 digits with leading zeros, runs crossing bytes, spaces,
    codes of exactly the width and far short of it, strings cut out of the middle of an Arrow array."""
    from producer.inputs.trigger import _decode_distinct, _decode_tokens

    rng = np.random.default_rng(21)
    texts = ["", "!", " ", "A", "AAAAAAAAAB!", "B!", "H!!", "G!A!", "", "Ya", "!" * 16, "P!H!", "BA!", ""]
    for _ in range(600):
        n = int(rng.integers(1, 1600))
        bits = "".join("1" if x else "0" for x in rng.random(n) < rng.choice([0.002, 0.05, 0.5, 0.95]))
        code = reference_encode(bits)
        if rng.random() < 0.1:
            code = code.replace("!", " !", 1) if "!" in code else code + " "
        if rng.random() < 0.1:
            code = "A" * int(rng.integers(1, 4)) + code if code and code[0] != "!" else code
        texts.append("" if rng.random() < 0.05 else code)
    array = pa.array(["junk!", *texts, "!junk"]).slice(1, len(texts))
    for width in (1700, 8192):
        ours, ours_bits = _decode_distinct(array, width)
        theirs, their_bits = _decode_tokens(array, width)
        assert (ours == theirs).all()
        assert (ours_bits == their_bits).all()
    maps, sizes = _decode_distinct(pa.array(["AAAAAAAAAB!", "CAA", "", " !"]), 8192)
    assert list(sizes) == [2, 8192, 0, 2]
    assert maps[0][0] == 0b10 and maps[3][0] == 0b10 and not maps[1].any()


@pytest.mark.parametrize(
    ("texts", "index", "reason"),
    [
        (["B!", "!", "AAAAAAAAAAAB!"], 2, "more than 10 digits"),
        (["B!", "BAA"], 1, "more than 16 bits"),
        (["B!", "P!", "Q!", "!!"], 2, "17 bits, more than 16"),
        (["B!", "!\n"], 1, "invalid character"),
    ],
)
def test_character_decoder_leaves_errors_to_the_token_decoder(texts: list[str], index: int, reason: str) -> None:
    with pytest.raises(MaskFormatError) as info:
        decode_rle(texts, 16)
    assert info.value.index == index
    assert reason in str(info.value)
