"""SMPP part encoding: boundary tables, exact UDH bytes, and reassembly of wild text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.gsm import GSM_ALL
from dispatcher.core.smpp_parts import (
    DATA_CODING_GSM7,
    DATA_CODING_UCS2,
    DecodedPart,
    SmppPart,
    concat_udh,
    decode_gsm7,
    decode_short_message,
    encode_gsm7,
    reassemble,
    smpp_parts,
)
from dispatcher.errors import InputError

EURO, EMOJI, ZHE = "€", "😀", "ж"
UDH_LENGTH = 6


def texts_of(parts: list[SmppPart]) -> list[str]:
    concatenated = len(parts) > 1
    return [decode_short_message(p.short_message, p.data_coding, concatenated).text for p in parts]


@pytest.mark.parametrize(
    ("text", "count", "coding", "payload_lengths"),
    [
        ("hello", 1, DATA_CODING_GSM7, [5]),
        ("x" * 160, 1, DATA_CODING_GSM7, [160]),
        ("x" * 161, 2, DATA_CODING_GSM7, [153, 8]),
        ("x" * 306, 2, DATA_CODING_GSM7, [153, 153]),
        ("x" * 307, 3, DATA_CODING_GSM7, [153, 153, 1]),
        (EURO * 80, 1, DATA_CODING_GSM7, [160]),  # 80 extension characters = 160 septets
        (EURO * 81, 2, DATA_CODING_GSM7, [152, 10]),  # ESC + € never split: 76 of them, then 5
        ("x" * 152 + EURO + "y" * 10, 2, DATA_CODING_GSM7, [152, 12]),  # € would be septets 153-154
        (ZHE * 70, 1, DATA_CODING_UCS2, [140]),
        (ZHE * 71, 2, DATA_CODING_UCS2, [134, 8]),
        (EMOJI * 35, 1, DATA_CODING_UCS2, [140]),
        ("a" * 66 + EMOJI + "a" * 10, 2, DATA_CODING_UCS2, [132, 24]),  # the pair is not split
        ("x" * 150 + ZHE, 3, DATA_CODING_UCS2, [134, 134, 34]),  # one Cyrillic letter: all UCS-2
    ],
)
def test_boundaries(text: str, count: int, coding: int, payload_lengths: list[int]) -> None:
    parts = smpp_parts(text, 7)
    assert len(parts) == count
    assert {p.data_coding for p in parts} == {coding}
    header = UDH_LENGTH if count > 1 else 0
    assert [len(p.short_message) - header for p in parts] == payload_lengths
    assert "".join(texts_of(parts)) == text


def test_udh_bytes_are_exact() -> None:
    parts = smpp_parts("x" * 400, 0xAB)
    assert [p.short_message[:UDH_LENGTH] for p in parts] == [
        bytes.fromhex("050003AB0301"),
        bytes.fromhex("050003AB0302"),
        bytes.fromhex("050003AB0303"),
    ]
    assert concat_udh(0x1FF, 2, 1) == bytes.fromhex("050003FF0201")  # reference is one octet


def test_single_part_has_no_udh() -> None:
    (part,) = smpp_parts("é@¥ looks like a UDH in GSM-7", 1)
    assert part.short_message[:3] == bytes.fromhex("050003")  # é @ ¥ encode to 05 00 03 ...
    assert decode_short_message(part.short_message, part.data_coding, False).text.startswith("é@¥")


def test_too_many_parts_is_refused() -> None:
    assert len(smpp_parts("x" * (153 * 255), 1)) == 255
    with pytest.raises(InputError):
        smpp_parts("x" * (153 * 255 + 1), 1)


@pytest.mark.parametrize(
    ("text", "septets"),
    [
        ("@", b"\x00"),
        ("A£$", b"\x41\x01\x02"),
        ("€", b"\x1b\x65"),
        ("{[~]}", b"\x1b\x28\x1b\x3c\x1b\x3d\x1b\x3e\x1b\x29"),
        ("ÄÖÑÜ§", b"\x5b\x5c\x5d\x5e\x5f"),
        ("\n\r", b"\x0a\x0d"),
    ],
)
def test_gsm7_table(text: str, septets: bytes) -> None:
    assert encode_gsm7(text) == septets
    assert decode_gsm7(septets) == text


def test_gsm7_refuses_and_tolerates() -> None:
    with pytest.raises(InputError):
        encode_gsm7("ж")
    assert decode_gsm7(b"\x1b\x41") == "A"  # unknown escape: the basic character, as handsets show it


@pytest.mark.parametrize(
    ("data", "coding", "udhi", "expected"),
    [
        (bytes.fromhex("050003120201") + b"hi", 0, True, DecodedPart("hi", 0x12, 2, 1)),
        (bytes.fromhex("06080412340302") + b"yo", 0, True, DecodedPart("yo", 0x1234, 3, 2)),
        # a port-addressing element first, then the concatenation element
        (
            bytes.fromhex("0B05040000000000 03AA0201") + "ж".encode("utf-16-be"),
            8,
            True,
            DecodedPart("ж", 0xAA, 2, 1),
        ),
        (bytes.fromhex("050003120201") + b"hi", 0, False, DecodedPart("é@¥Φ$£hi")),  # no UDHI: all text
        (b"caf\xe9", 3, False, DecodedPart("café")),
        ("hé".encode("utf-16-be"), 8, False, DecodedPart("hé")),
    ],
)
def test_decode_received(data: bytes, coding: int, udhi: bool, expected: DecodedPart) -> None:
    assert decode_short_message(data, coding, udhi) == expected


gsm_text = st.text(alphabet=st.sampled_from(sorted(GSM_ALL)), max_size=800)
any_text = st.text(max_size=500)


@settings(max_examples=300, deadline=None)
@given(st.one_of(gsm_text, any_text), st.integers(0, 255))
def test_parts_reassemble_to_the_text(text: str, reference: int) -> None:
    if not text:
        return
    parts = smpp_parts(text, reference)
    coding = parts[0].data_coding
    single = len(parts) == 1
    limit = 160 if coding == DATA_CODING_GSM7 else 140
    decoded = [decode_short_message(p.short_message, p.data_coding, not single) for p in parts]
    assert all(len(p.short_message) <= limit for p in parts)
    if not single:
        assert [d.sequence for d in decoded] == list(range(1, len(parts) + 1))
        assert {(d.reference, d.total) for d in decoded} == {(reference, len(parts))}
        capacity = 153 if coding == DATA_CODING_GSM7 else 134
        assert all(len(p.short_message) - UDH_LENGTH <= capacity for p in parts)
    if coding == DATA_CODING_UCS2 and not any("\ud800" <= c <= "\udfff" for c in text):
        for part in parts:  # strict decoding fails on a surrogate pair cut in two
            (part.short_message[UDH_LENGTH:] if not single else part.short_message).decode("utf-16-be")
    assert reassemble(list(reversed(decoded))) == text
