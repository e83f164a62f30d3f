"""POOL tokens (docs/spb-format.md): the producer's layout, other field orders and widths, bad tokens."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from producer.inputs.pool_token import TokenFormatError, _parse_grouped, format_token, parse_token, parse_tokens

GUID = "4DDBD295-EFCE-472A-9EC8-15CD35A9EB8D"


def test_token_in_the_producers_layout() -> None:
    token = format_token(GUID.lower(), "POOLContainer(DataHeader)", GUID, 0x202, 4, 2**64 - 1)
    assert token == (
        f"[DB={GUID.lower()}][CNT=POOLContainer(DataHeader)][CLID={GUID}][TECH=00000202]"
        "[OID=0000000000000004-FFFFFFFFFFFFFFFF]"
    )
    parsed = parse_tokens([token])
    assert parsed.guid.to_pylist() == [GUID]
    assert parsed.container.to_pylist() == ["POOLContainer(DataHeader)"]
    assert parsed.clid.to_pylist() == [GUID]
    assert parsed.tech.type == pa.uint32() and parsed.tech.to_pylist() == [0x202]
    assert parsed.oid1.to_pylist() == [4] and parsed.oid2.to_pylist() == [2**64 - 1]
    assert parse_token(token) == (GUID, "POOLContainer(DataHeader)", GUID, 0x202, 4, 2**64 - 1)


def test_tokens_in_other_orders_and_widths() -> None:
    tokens = [
        f"[OID=1-a][TECH=ff][CLID=][CNT=c][DB={GUID}]",
        f"[DB={GUID}][CNT=][CLID={GUID}][TECH=0][OID=0-0][PNAME=ignored]",
        format_token(GUID, "", GUID, 1, 2, 3),
        format_token(GUID, "CollectionTree(EventInfo_p4/McEventInfo)", "x", 0xFFFFFFFF, 0, 1),
        format_token(GUID, "é", GUID, 7, 8, 9),
    ]
    parsed = parse_tokens(tokens)
    assert parsed.container.to_pylist() == ["c", "", "", "CollectionTree(EventInfo_p4/McEventInfo)", "é"]
    assert parsed.clid.to_pylist() == ["", GUID, GUID, "x", GUID]
    assert parsed.tech.to_pylist() == [0xFF, 0, 1, 0xFFFFFFFF, 7]
    assert parsed.oid1.to_pylist() == [1, 0, 2, 0, 8]
    assert parsed.oid2.to_pylist() == [10, 0, 3, 1, 9]
    assert parsed.guid.to_pylist() == [GUID] * 5
    assert len(parse_tokens([]).guid) == 0


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "not a sequence of [KEY=value] fields"),
        ("garbage", "not a sequence"),
        (format_token(GUID, "c", GUID, 1, 2, 3) + " ", "not a sequence"),
        (format_token(GUID, "a]b", GUID, 1, 2, 3), "not a sequence"),
        (format_token(GUID, "a[b", GUID, 1, 2, 3), "not a sequence"),
        (f"[DB={GUID}][CNT=][CLID=][TECH=1]", "lacks field OID"),
        (f"[DB={GUID}][CNT=][CNT=][CLID=][TECH=1][OID=1-2]", "field CNT twice"),
        ("[DB=4DDBD295-EFCE-472A-9EC8][CNT=][CLID=][TECH=1][OID=1-2]", "not a GUID"),
        (f"[DB={GUID}][CNT=][CLID=][TECH=0x12][OID=1-2]", "TECH='0x12'"),
        (f"[DB={GUID}][CNT=][CLID=][TECH=123456789][OID=1-2]", "TECH="),
        (f"[DB={GUID}][CNT=][CLID=][TECH=-1][OID=1-2]", "TECH="),
        (f"[DB={GUID}][CNT=][CLID=][TECH=1][OID=1-12345678901234567]", "OID="),
        (f"[DB={GUID}][CNT=][CLID=][TECH=1][OID=12]", "OID="),
        (f"[DB={GUID}][CNT=][CLID=][TECH=1][OID=1-G]", "OID="),
        (format_token(GUID, "c", GUID, 1, 2, 3).replace("[TECH=00000001]", "[TECH=0000000G]"), "TECH="),
    ],
)
def test_bad_tokens_name_the_token(token: str, reason: str) -> None:
    good = format_token(GUID, "c", GUID, 1, 2, 3)
    with pytest.raises(TokenFormatError) as info:
        parse_tokens([good, good, token, good])
    assert info.value.index == 2
    assert reason in str(info.value)


@pytest.mark.parametrize("char", ["/", ":", "@", "`", "g", "G", "[", " ", "\x00", "é"])
@pytest.mark.parametrize("field", ["DB", "CLID", "TECH", "OID1", "OID2"])
def test_a_non_hex_byte_in_the_producers_layout_is_refused(field: str, char: str) -> None:
    """The layout's hex digits are checked by byte arithmetic: the bytes next to '0'-'9', 'A'-'F' and
    'a'-'f' (and the others) are not hex digits, wherever they stand."""
    good = format_token(GUID, "c", GUID, 0xABCDEF12, 0xFEDCBA9876543210, 0x0123456789ABCDEF)
    at = {"DB": 4, "CLID": good.index("[CLID=") + 6, "TECH": good.index("[TECH=") + 6,
          "OID1": good.index("[OID=") + 5, "OID2": good.index("[OID=") + 22}[field]  # fmt: skip
    bad = good[:at] + char + good[at + 1 :]
    if field == "CLID" and char != "[":  # any text but a bracket outside the producer's layout (é: once a crash)
        assert parse_tokens([good, bad]).clid.to_pylist() == [GUID, bad[bad.index("[CLID=") + 6 : bad.index("][TECH")]]
        return
    with pytest.raises(TokenFormatError) as info:
        parse_tokens([good, good, bad])
    assert info.value.index == 2


def test_hex_digits_of_either_case_in_the_producers_layout() -> None:
    token = format_token(GUID.lower(), "c", GUID.lower(), 0xABCDEF12, 0xFEDCBA9876543210, 0x0123456789ABCDEF)
    lower = token.replace("ABCDEF12", "abcdef12").replace("FEDCBA98", "fedcba98").replace("89ABCDEF", "89abcdef")
    parsed = parse_tokens([token, lower])
    assert parsed.guid.to_pylist() == [GUID, GUID] and parsed.clid.to_pylist() == [GUID.lower()] * 2
    assert parsed.tech.to_pylist() == [0xABCDEF12] * 2
    assert parsed.oid1.to_pylist() == [0xFEDCBA9876543210] * 2 and parsed.oid2.to_pylist() == [0x0123456789ABCDEF] * 2


def per_token(tokens: list[str]) -> list[tuple[str, str, str, int, int, int]]:
    parsed = parse_tokens(tokens)
    columns = [parsed.guid, parsed.container, parsed.clid, parsed.tech, parsed.oid1, parsed.oid2]
    return list(zip(*(column.to_pylist() for column in columns), strict=True))


def test_a_batch_of_shared_heads_parses_like_each_token_alone() -> None:
    """Tokens that differ only in their OID (what a file's events carry) are parsed once per distinct
    head and their OIDs per token: every field equals what `parse_token` gives for that token alone."""
    rng = np.random.default_rng(3)
    other = "4DDBD295-EFCE-472A-9EC8-15CD35A9EB8E"
    heads = [
        (GUID, "POOLContainer(DataHeader)", GUID, 0x202),
        (other.lower(), "CollectionTree(EventInfo_p4/McEventInfo)", other, 0x203),
        (GUID, "é", "x", 1),
    ]
    tokens = []
    for i in range(300):
        guid, container, clid, tech = heads[i % 3]
        oid1, oid2 = (int(v) for v in rng.integers(0, 2**63, 2, dtype=np.uint64) * 2 + (i % 2))
        token = format_token(guid, container, clid, tech, oid1, oid2)
        tokens.append(token.replace(f"{oid1:016X}", f"{oid1:016x}") if i % 7 == 0 else token)  # either case
    tokens.append(f"[CLID={GUID}][DB={GUID}][CNT=c][TECH=ff][OID={2**64 - 1:016X}-{0:016X}]")  # another order
    assert _parse_grouped(pa.array(tokens)) is not None  # the batch takes the per-distinct-head path
    assert per_token(tokens) == [parse_token(t, i) for i, t in enumerate(tokens)]


@pytest.mark.parametrize(
    "bad",
    [
        format_token(GUID, "c", GUID, 1, 2, 3).replace("[DB=4", "[DB=X"),  # a bad head, a good OID field
        format_token(GUID, "c", GUID, 1, 2, 3).replace("[TECH=", "[OID=1-2][TECH="),  # two OID fields
        format_token(GUID, "c", GUID, 1, 2, 3)[:-3] + "G3]",  # a bad OID digit
    ],
)
def test_a_bad_token_among_shared_heads_is_named(bad: str) -> None:
    good = [format_token(GUID, "c", GUID, 1, i, i) for i in range(50)]
    with pytest.raises(TokenFormatError) as info:
        parse_tokens([*good[:30], bad, *good[30:]])
    assert info.value.index == 30
