"""Turning one rendered SMS into the ``short_message`` of each SMPP ``submit_sm``, and back.

aiosmpplib can split by itself, but it counts characters rather than septets (an extension character
such as € weighs two) and only offers SAR TLVs or random references, so a part could overflow 160
septets. Segment boundaries come from :func:`dispatcher.core.sms.split_segments` instead, which packs
greedily and never splits an escape sequence or a UTF-16 surrogate pair; this module only encodes.

GSM-7 is sent unpacked (one octet per septet, data_coding 0) as SMPP expects; UCS-2 is UTF-16-BE
(data_coding 8). A concatenated part starts with the 8-bit reference UDH ``05 00 03 ref total seq`` and
goes with esm_class 0x40 (UDHI), leaving 153 septets or 67 UTF-16 units for the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

from dispatcher.core.gsm import ESCAPE, GSM_BASIC_TABLE, GSM_EXTENSION_TABLE, gsm_septets
from dispatcher.core.sms import split_segments
from dispatcher.errors import InputError

__all__ = [
    "DATA_CODING_GSM7",
    "DATA_CODING_UCS2",
    "ESM_CLASS_UDHI",
    "MAX_PARTS",
    "DecodedPart",
    "SmppPart",
    "concat_udh",
    "decode_gsm7",
    "decode_short_message",
    "encode_gsm7",
    "reassemble",
    "smpp_parts",
]

DATA_CODING_GSM7: Final = 0
DATA_CODING_UCS2: Final = 8
ESM_CLASS_UDHI: Final = 0x40
#: The 8-bit reference information element numbers parts in one octet.
MAX_PARTS: Final = 255

_IE_CONCAT_8BIT: Final = 0x00
_IE_CONCAT_16BIT: Final = 0x08

# str.translate runs in C: one table maps every GSM character to its septet (or ESC + septet).
_ENCODE: Final[dict[int, str]] = {
    **{ord(char): chr(septet) for septet, char in enumerate(GSM_BASIC_TABLE) if char != ESCAPE},
    **{ord(char): ESCAPE + chr(code) for code, char in GSM_EXTENSION_TABLE.items()},
}
_DECODE_BASIC: Final = GSM_BASIC_TABLE
_DECODE_EXTENSION: Final = {code: char for code, char in GSM_EXTENSION_TABLE.items()}


class SmppPart(NamedTuple):
    """One submit_sm payload: ``short_message`` is UDH (when concatenated) + encoded text."""

    short_message: bytes
    data_coding: int


@dataclass(frozen=True, slots=True)
class DecodedPart:
    """A received short_message: its text and, for a concatenated part, where it belongs."""

    text: str
    reference: int | None = None
    total: int = 1
    sequence: int = 1


def encode_gsm7(text: str) -> bytes:
    """Unpacked GSM 03.38 septets; InputError when a character has no GSM-7 form."""
    if gsm_septets(text) is None:
        raise InputError("text is not GSM-7", details=[{"text": text[:40]}])
    return text.translate(_ENCODE).encode("latin-1")


def decode_gsm7(data: bytes) -> str:
    """Text of unpacked septets; an unknown escape falls back to the basic character (as handsets do)."""
    out: list[str] = []
    escaped = False
    for septet in data:
        septet &= 0x7F
        if escaped:
            out.append(_DECODE_EXTENSION.get(septet, _DECODE_BASIC[septet]))
            escaped = False
        elif septet == 0x1B:
            escaped = True
        else:
            out.append(_DECODE_BASIC[septet])
    return "".join(out)


def concat_udh(reference: int, total: int, sequence: int) -> bytes:
    """User data header of one part of a concatenated message (8-bit reference)."""
    return bytes((0x05, _IE_CONCAT_8BIT, 0x03, reference & 0xFF, total, sequence))


def smpp_parts(text: str, reference: int) -> list[SmppPart]:
    """The submit_sm payloads for ``text``; one part without UDH when it fits a single message.

    ``reference`` (0-255) ties the parts together on the handset: use a fresh one per message.
    Raises InputError when the text needs more than 255 parts.
    """
    septets = gsm_septets(text)
    if septets is not None and septets <= 160:  # the usual marketing SMS: one GSM-7 part, no splitting
        return [SmppPart(text.translate(_ENCODE).encode("latin-1"), DATA_CODING_GSM7)]
    gsm = septets is not None
    segments = split_segments(text)
    if len(segments) > MAX_PARTS:
        raise InputError(
            f"message needs {len(segments)} parts, more than {MAX_PARTS}",
            details=[{"segments": len(segments)}],
        )
    coding = DATA_CODING_GSM7 if gsm else DATA_CODING_UCS2
    encoded = [
        segment.translate(_ENCODE).encode("latin-1") if gsm else segment.encode("utf-16-be", "surrogatepass")
        for segment in segments
    ]
    if len(encoded) == 1:
        return [SmppPart(encoded[0], coding)]
    total = len(encoded)
    return [
        SmppPart(concat_udh(reference, total, index) + payload, coding)
        for index, payload in enumerate(encoded, start=1)
    ]


def _concat_info(udh: bytes) -> tuple[int, int, int] | None:
    """(reference, total, sequence) from a UDH's concatenation element, if it has one."""
    index = 0
    while index + 1 < len(udh):
        element, length = udh[index], udh[index + 1]
        value = udh[index + 2 : index + 2 + length]
        if element == _IE_CONCAT_8BIT and length == 3 and len(value) == 3:
            return value[0], value[1], value[2]
        if element == _IE_CONCAT_16BIT and length == 4 and len(value) == 4:
            return (value[0] << 8) | value[1], value[2], value[3]
        index += 2 + length
    return None


def decode_short_message(data: bytes, data_coding: int, udhi: bool) -> DecodedPart:
    """Decode a received short_message (GSM-7 unpacked, UCS-2 or Latin-1), stripping its UDH."""
    info = None
    if udhi and data:
        header_length = data[0]
        info = _concat_info(data[1 : 1 + header_length])
        data = data[1 + header_length :]
    if data_coding == DATA_CODING_UCS2:
        text = data.decode("utf-16-be", "surrogatepass") if len(data) % 2 == 0 else data.hex()
    elif data_coding in (1, 3):  # IA5/ASCII and Latin-1
        text = data.decode("latin-1")
    else:
        text = decode_gsm7(data)
    if info is None:
        return DecodedPart(text)
    reference, total, sequence = info
    return DecodedPart(text, reference, total, sequence)


def reassemble(parts: list[DecodedPart]) -> str:
    """Join the parts of one message in sequence order (a single unconcatenated part stands alone)."""
    return "".join(part.text for part in sorted(parts, key=lambda part: part.sequence))
