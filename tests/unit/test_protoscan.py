"""Column-wise decoding of many protobuf messages gives what the protobuf runtime gives, message by message."""

from __future__ import annotations

import random

import numpy as np
import pytest

from producer.inputs import EventIndex_p1_pb2 as ei
from producer.inputs.protoscan import I32, LEN, PADDING, VARINT, Layout, Unusual, scan, varints
from producer.inputs.spb_events import _EVENT, _TOKEN


def _pack(messages: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.cumsum([0] + [len(m) for m in messages[:-1]]).astype(np.int64)
    ends = starts + np.array([len(m) for m in messages], dtype=np.int64)
    data = np.frombuffer(b"".join(messages) + bytes(PADDING), dtype=np.uint8)
    return data, starts, ends


def _random_event(rng: random.Random) -> ei.EIEvent_p1:
    event = ei.EIEvent_p1(
        runNumber=rng.choice([0, 1, 127, 128, 2**32 - 1]),
        eventNumber=rng.choice([0, 300, 2**35 + 7, 2**63 - 1, 2**64 - 1]),
        lumiBlock=rng.randrange(2**32),
        timeStamp=rng.randrange(2**32),
        timeStampNSOffset=rng.randrange(10**9),
        bcid=rng.randrange(3564),
        isSimulation=rng.random() < 0.5,
        isCalibration=rng.random() < 0.5,
        isTestBeam=rng.random() < 0.5,
    )
    for name in ("extendedLevel1ID", "SMK", "HLTPSK", "L1PSK", "mcChannelNumber"):
        if rng.random() < 0.6:
            setattr(event, name, rng.choice([0, 5, 2**31, 2**32 - 1]))
    if rng.random() < 0.6:
        event.mcEventWeight = rng.choice([0.0, -1.5, 3.25e-7, 1e30])
    for name in ("L1PassedTrigMask", "L2PassedTrigMask", "EFPassedTrigMask"):
        if rng.random() < 0.7:
            setattr(event, name, "".join(rng.choice("AB!/;") for _ in range(rng.choice([0, 1, 50, 200]))))
    for _ in range(rng.choice([0, 1, 3, 20])):
        event.eitoken.add(name=rng.choice(["StreamAOD", "StreamRAW", ""]), token="[DB=X]" * rng.randrange(40))
    return event


def test_scan_gives_what_the_runtime_parses() -> None:
    rng = random.Random(5)
    events = [_random_event(rng) for _ in range(500)]
    data, starts, ends = _pack([e.SerializeToString() for e in events])
    scanned = scan(data, starts, ends, _EVENT)
    raw = data.tobytes()
    index, begin, end = scanned.repeated[20]
    assert index.tolist() == [i for i, e in enumerate(events) for _ in e.eitoken]
    tokens = scan(data, begin, end, _TOKEN)
    at = 0
    for i, event in enumerate(events):
        for field in ei.EIEvent_p1.DESCRIPTOR.fields:
            if field.is_repeated:
                continue
            present = scanned.present[i, field.number]
            assert present == event.HasField(field.name), (i, field.name)
            if not present:
                continue
            expected = getattr(event, field.name)
            if field.type == field.TYPE_STRING:
                text = raw[int(scanned.values[i, field.number]) : int(scanned.ends[i, field.number])].decode()
                assert text == expected, (i, field.name)
            elif field.type == field.TYPE_FLOAT:
                bits = np.array([scanned.values[i, field.number]], dtype=np.uint64).astype(np.uint32)
                assert bits.view(np.float32)[0] == np.float32(expected), (i, field.name)
            else:
                assert int(scanned.values[i, field.number]) == int(expected), (i, field.name)
        for ref in event.eitoken:
            name = raw[int(tokens.values[at, 1]) : int(tokens.ends[at, 1])].decode()
            token = raw[int(tokens.values[at, 2]) : int(tokens.ends[at, 2])].decode()
            assert (name, token) == (ref.name, ref.token)
            at += 1
    assert at == len(begin)


def test_fields_in_any_order_and_the_last_of_a_repeated_singular_field_wins() -> None:
    layout = Layout({1: VARINT, 2: LEN, 3: I32})
    first = bytes([0x12]) + b"\x04abcd" + bytes([0x08, 0x96, 0x01]) + bytes([0x08, 0x05])  # 2, 1 (150), 1 (5)
    second = bytes([0x1D]) + (7).to_bytes(4, "little") + bytes([0x08, 0x80, 0x80, 0x00])  # 3, then 1 (non-minimal 0)
    data, starts, ends = _pack([first, second, b""])
    scanned = scan(data, starts, ends, layout)
    assert scanned.present.tolist() == [[False, True, True, False], [False, True, False, True], [False] * 4]
    assert scanned.values[0, 1] == 5 and scanned.values[1, 1] == 0 and scanned.values[1, 3] == 7
    assert data[int(scanned.values[0, 2]) : int(scanned.ends[0, 2])].tobytes() == b"abcd"


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (bytes([0x08, 0x01, 0x98, 0x01, 0x02]), "field 19 is not declared"),
        (bytes([0x0A, 0x01, 0x00]), "field 1 as LEN, declared VARINT"),
        (bytes([0x12, 0x05, 0x61]), "a LEN field past the end"),
        (bytes([0x08]) + b"\xff" * 10 + b"\x01", "a varint of 11 bytes"),
        (bytes([0x00, 0x01]), "field number 0"),
        (bytes([0x1D, 0x01, 0x02]), "a fixed32 cut short"),
    ],
)
def test_what_scan_does_not_decode_is_unusual(message: bytes, why: str) -> None:
    layout = Layout({1: VARINT, 2: LEN, 3: I32})
    data, starts, ends = _pack([bytes([0x08, 0x01]), message])
    with pytest.raises(Unusual):
        scan(data, starts, ends, layout)


def _varint(value: int) -> bytes:
    """A protobuf varint, a byte at a time (the reference the scanner is checked against)."""
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_varints_of_every_length() -> None:
    values = [0, 1, 127, 128, 300, 2**21, 2**35 - 1, 2**56 + 3, 2**63, 2**64 - 1]
    encoded = [_varint(value) for value in values]
    data, starts, _ = _pack(encoded)
    found, sizes = varints(data, starts)
    assert found.tolist() == values and sizes.tolist() == [len(e) for e in encoded]


def test_varints_of_mixed_lengths_at_any_offset() -> None:
    """Words read at unaligned positions, varints of 1-10 bytes side by side, decoded like a byte at a time."""
    rng = np.random.default_rng(13)
    values = [int(v) >> int(s) for v, s in zip(rng.integers(0, 2**63, 3_000), rng.integers(0, 64, 3_000), strict=True)]
    values += [2**64 - 1, 2**56 - 1, 2**56, 2**49 - 1, 2**49, 0, 127, 128]
    encoded = [_varint(value) for value in values]
    data, starts, _ = _pack(encoded)
    found, sizes = varints(data, starts)
    assert found.tolist() == values and sizes.tolist() == [len(e) for e in encoded]
    assert {len(e) for e in encoded} == set(range(1, 11))
