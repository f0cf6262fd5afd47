"""SMS encoding, segments, smart encoding, cost and lint: boundary tables plus properties on wild text."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.gsm import GSM_ALL, GSM_BASIC, GSM_BASIC_TABLE, GSM_EXTENSION, REPLACEMENTS
from dispatcher.core.sms import (
    SmsAnalysis,
    analyse_sms,
    analysis_as_dict,
    estimate_cost,
    lint_sms,
    smart_encode,
    split_segments,
)
from dispatcher.errors import InputError

EURO, EMOJI, ZHE = "€", "😀", "ж"  # extension char (2 septets), astral (2 units), BMP non-GSM (1 unit)


# ------------------------------------------------------------------------------------ reference model


def ref_weight(char: str, encoding: str) -> int:
    """Deliberately naive unit count of one character, independent of the module's fast paths."""
    if encoding == "GSM-7":
        return 2 if char in "\x0c^{}\\[~]|€" else 1
    return len(char.encode("utf-16-le", "surrogatepass")) // 2


def ref_split(text: str, encoding: str) -> list[str]:
    """Greedy packing one character at a time: the obviously-correct, slow version."""
    single, multi = (160, 153) if encoding == "GSM-7" else (70, 67)
    if sum(ref_weight(c, encoding) for c in text) <= single:
        return [text]
    parts, current, used = [], "", 0
    for char in text:
        weight = ref_weight(char, encoding)
        if used + weight > multi:
            parts.append(current)
            current, used = "", 0
        current += char
        used += weight
    parts.append(current)
    return parts


# ------------------------------------------------------------------------------------------- alphabet


def test_alphabet_tables_are_exact() -> None:
    assert len(GSM_BASIC_TABLE) == 128
    assert len(GSM_BASIC) == 127  # 0x1B is the escape, not a character
    assert frozenset("\x0c^{}\\[~]|€") == GSM_EXTENSION
    assert not GSM_BASIC & GSM_EXTENSION
    assert (GSM_BASIC_TABLE[0x00], GSM_BASIC_TABLE[0x09], GSM_BASIC_TABLE[0x7F]) == ("@", "Ç", "à")
    assert not {"`", "ç", "\t"} & GSM_ALL


# ----------------------------------------------------------------------------------- encoding + counts

COUNT_CASES: list[tuple[str, str, str, int, int]] = [
    # id, text, encoding, units, segments
    ("empty", "", "GSM-7", 0, 1),
    ("gsm-160", "a" * 160, "GSM-7", 160, 1),
    ("gsm-161", "a" * 161, "GSM-7", 161, 2),
    ("gsm-306", "a" * 306, "GSM-7", 306, 2),
    ("gsm-307", "a" * 307, "GSM-7", 307, 3),
    ("gsm-459", "a" * 459, "GSM-7", 459, 3),
    ("gsm-460", "a" * 460, "GSM-7", 460, 4),
    ("gsm-nonascii-160", "é" * 160, "GSM-7", 160, 1),
    ("gsm-nonascii-161", "é" * 161, "GSM-7", 161, 2),
    ("gsm-every-basic-char", "".join(sorted(GSM_BASIC)), "GSM-7", 127, 1),
    ("ext-80-euro", EURO * 80, "GSM-7", 160, 1),
    ("ext-81-euro", EURO * 81, "GSM-7", 162, 2),
    ("ext-80-ascii", "^" * 80, "GSM-7", 160, 1),
    ("ext-81-ascii", "{" * 81, "GSM-7", 162, 2),
    ("ext-153-pairs-need-3", "|" * 153, "GSM-7", 306, 3),  # 76 pairs per segment; 306/153 would say 2
    ("ext-every-char", "\x0c^{}\\[~]|€", "GSM-7", 20, 1),
    ("ext-last-fits-single", "a" * 158 + EURO, "GSM-7", 160, 1),
    ("ext-last-overflows", "a" * 159 + EURO, "GSM-7", 161, 2),
    ("ext-at-152-153", "a" * 152 + EURO + "b" * 152, "GSM-7", 306, 3),
    ("ext-at-151-152", "a" * 151 + EURO + "b" * 153, "GSM-7", 306, 2),
    ("ucs2-70", ZHE * 70, "UCS-2", 70, 1),
    ("ucs2-71", ZHE * 71, "UCS-2", 71, 2),
    ("ucs2-134", ZHE * 134, "UCS-2", 134, 2),
    ("ucs2-135", ZHE * 135, "UCS-2", 135, 3),
    ("ucs2-201", ZHE * 201, "UCS-2", 201, 3),
    ("ucs2-202", ZHE * 202, "UCS-2", 202, 4),
    ("one-curly-quote-in-160", "a" * 159 + "’", "UCS-2", 160, 3),
    ("emoji-35", EMOJI * 35, "UCS-2", 70, 1),
    ("emoji-36", EMOJI * 36, "UCS-2", 72, 2),
    ("emoji-67-need-3", EMOJI * 67, "UCS-2", 134, 3),  # 33 per segment; 134/67 would say 2
    ("emoji-at-66-67", ZHE * 66 + EMOJI + ZHE * 67, "UCS-2", 135, 3),
    ("emoji-at-65-66", ZHE * 65 + EMOJI + ZHE * 67, "UCS-2", 134, 2),
    ("emoji-in-gsm-text", "Sale " + EMOJI, "UCS-2", 7, 1),
    ("euro-counts-one-in-ucs2", EURO * 70 + "’", "UCS-2", 71, 2),
    ("backtick", "a`b", "UCS-2", 3, 1),
    ("tab", "a\tb", "UCS-2", 3, 1),
    ("escape-char-itself", "a\x1bb", "UCS-2", 3, 1),
    ("form-feed", "a\x0cb", "GSM-7", 4, 1),
    ("lone-surrogate", "a\ud800b", "UCS-2", 3, 1),
]


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"), [c[1:] for c in COUNT_CASES], ids=[c[0] for c in COUNT_CASES]
)
def test_encoding_units_and_segments(text: str, encoding: str, units: int, segments: int) -> None:
    analysis = analyse_sms(text)
    assert (analysis.encoding, analysis.units, analysis.segments) == (encoding, units, segments)
    assert analysis.characters == len(text)
    assert len(split_segments(text)) == segments


@pytest.mark.parametrize(
    ("text", "lengths"),
    [
        ("", [0]),
        ("a" * 161, [153, 8]),
        ("a" * 159 + EURO, [153, 7]),
        ("a" * 152 + EURO + "b" * 10, [152, 11]),  # the pair moves whole to segment 2
        ("a" * 151 + EURO + "b" * 10, [152, 10]),  # 151 + 2 septets fill segment 1 exactly
        ("|" * 153, [76, 76, 1]),
        (ZHE * 66 + EMOJI + ZHE * 10, [66, 11]),  # the surrogate pair moves whole
        (ZHE * 65 + EMOJI + ZHE * 10, [66, 10]),
        (EMOJI * 67, [33, 33, 1]),
    ],
)
def test_split_segments_never_breaks_pairs(text: str, lengths: list[int]) -> None:
    parts = split_segments(text)
    assert [len(p) for p in parts] == lengths
    assert "".join(parts) == text


def test_characters_count_code_points_and_units_count_utf16() -> None:
    analysis = analyse_sms(EMOJI + "a")
    assert (analysis.characters, analysis.units) == (2, 3)


def test_non_gsm_characters_are_distinct_in_order_of_first_appearance() -> None:
    analysis = analyse_sms("x“y”z“ ж" + EMOJI + "”")
    assert analysis.non_gsm_characters == ("“", "”", "ж", EMOJI)
    assert dict(analysis.suggestions) == {"“": '"', "”": '"'}


@pytest.mark.parametrize(
    ("text", "capacity"), [("hi", 160), ("a" * 161, 153), (ZHE, 70), (ZHE * 71, 67), ("", 160)]
)
def test_segment_capacity(text: str, capacity: int) -> None:
    assert analyse_sms(text).segment_capacity == capacity


# ----------------------------------------------------------------------------- suggestions and smart


@pytest.mark.parametrize(("char", "replacement"), sorted(REPLACEMENTS.items()))
def test_each_suggestion_turns_ucs2_into_gsm7(char: str, replacement: str) -> None:
    text = f"Hello {char} world"
    before = analyse_sms(text)
    assert before.encoding == "UCS-2"
    assert before.non_gsm_characters == (char,)
    assert dict(before.suggestions) == {char: replacement}
    encoded = smart_encode(text)
    assert encoded == f"Hello {replacement} world"
    assert analyse_sms(encoded).encoding == "GSM-7"


@pytest.mark.parametrize(
    ("char", "replacement"),
    [
        ("á", "a"),  # accent stripped (NFKD)
        ("Ê", "E"),
        ("ÿ", "y"),
        ("Ａ", "A"),  # full-width (NFKC)
        ("ﬁ", "fi"),  # ligature
        ("½", "1/2"),  # NFKC gives 1⁄2, then the fraction slash from the hand table
        ("\u212b", "Å"),  # Angstrom sign folds to the GSM letter, accent kept
        ("²", "2"),
    ],
)
def test_unicode_fallback_suggestions(char: str, replacement: str) -> None:
    assert dict(analyse_sms(char).suggestions) == {char: replacement}
    assert smart_encode(f"x{char}y") == f"x{replacement}y"


@pytest.mark.parametrize("char", [EMOJI, "Ж", "中", "ש", "\u0301"])
def test_no_suggestion_for_characters_without_a_faithful_stand_in(char: str) -> None:
    analysis = analyse_sms("a" + char)
    assert analysis.non_gsm_characters == (char,)
    assert dict(analysis.suggestions) == {}
    assert smart_encode("a" + char) == "a" + char


def test_replacement_table_maps_non_gsm_to_gsm_only() -> None:
    assert not set(REPLACEMENTS) & GSM_ALL
    assert all(set(value) <= GSM_ALL for value in REPLACEMENTS.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Plain {GSM} text €", "Plain {GSM} text €"),
        ("“Save 20%” — today…", '"Save 20%" - today...'),
        ("“Hi” " + EMOJI, '"Hi" ' + EMOJI),  # unreplaceable characters are kept
        ("It’s\u00a0here", "It's here"),
        ("zero\u200bwidth", "zerowidth"),
    ],
)
def test_smart_encode(text: str, expected: str) -> None:
    assert smart_encode(text) == expected


# --------------------------------------------------------------------------------------- cost, dict


@pytest.mark.parametrize(
    ("segments", "price", "expected"),
    [
        (1, Decimal("0.0075"), Decimal("0.0075")),
        (3, Decimal("0.0075"), Decimal("0.0225")),
        (0, Decimal("0.05"), Decimal("0")),
        (4, Decimal("0"), Decimal("0")),
    ],
)
def test_estimate_cost(segments: int, price: Decimal, expected: Decimal) -> None:
    assert estimate_cost(segments, price) == expected


@pytest.mark.parametrize(
    ("segments", "price"),
    [
        (-1, Decimal("0.01")),
        (1, Decimal("-0.01")),
        (1, Decimal("NaN")),
        (1, Decimal("Infinity")),
        (True, Decimal(1)),
    ],
)
def test_estimate_cost_rejects_nonsense(segments: int, price: Decimal) -> None:
    with pytest.raises(InputError):
        estimate_cost(segments, price)


def test_analysis_as_dict_is_json_ready() -> None:
    as_dict = analysis_as_dict(analyse_sms("Hi “Ann” " + EMOJI))
    assert as_dict == {
        "encoding": "UCS-2",
        "segments": 1,
        "units": 11,
        "characters": 10,
        "segment_capacity": 70,
        "non_gsm_characters": ["“", "”", EMOJI],
        "suggestions": {"“": '"', "”": '"'},
    }
    assert json.loads(json.dumps(as_dict)) == as_dict


# ---------------------------------------------------------------------------------------------- lint

TRACKED = ("https://sho.rt/r/",)

LINT_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("Sale today. Reply STOP to opt out", {}, []),
    ("Sale today", {}, ["no_opt_out"]),
    ("Text stop to 12345", {}, []),
    ("Reply STOPALL", {}, []),
    ("Opt-out: reply N", {}, []),
    ("To opt out call us", {}, []),
    ("Unsubscribe at our site", {}, []),
    ("Stopwatch sale, 20% off", {}, ["no_opt_out"]),  # a word containing "stop" is no instruction
    ("Sale today", {"opt_out_patterns": ()}, []),  # transactional: check disabled
    ("Sale today, reply NO", {"opt_out_patterns": [r"\breply no\b"]}, []),
    ("a" * 455 + " STOP", {}, ["too_many_segments"]),
    ("a" * 455 + " STOP", {"max_segments": 4}, []),
    ("“Sale” STOP", {}, ["ucs2_forced"]),
    ("Go https://sho.rt/r/Ab3. STOP", {"tracked_prefixes": TRACKED}, []),
    ("Go https://shop.example/x STOP", {"tracked_prefixes": TRACKED}, ["untracked_link"]),
    ("Go HTTP://shop.example STOP", {"tracked_prefixes": TRACKED}, ["untracked_link"]),
    ("Go https://sho.rt/r/Ab3 STOP", {}, ["untracked_link"]),  # nothing tracked: every link is untracked
    ("Go sho.rt/x STOP", {}, []),  # only http(s) URLs are links here
    ("Hi {{ name }}, STOP", {}, ["unresolved_variable"]),
    ("Hi {name}, STOP", {}, []),
    (
        "“Hi” {{ x }} https://a.example " + "a" * 500,
        {"tracked_prefixes": TRACKED},
        ["too_many_segments", "ucs2_forced", "no_opt_out", "untracked_link", "unresolved_variable"],
    ),
]


@pytest.mark.parametrize(("text", "kwargs", "codes"), LINT_CASES)
def test_lint_codes(text: str, kwargs: dict[str, Any], codes: list[str]) -> None:
    assert [w.code for w in lint_sms(text, **kwargs)] == codes


def test_lint_details_are_machine_readable() -> None:
    text = "“Big” sale https://shop.example/a, https://sho.rt/r/1 and https://shop.example/a! " + "x" * 400
    by_code = {w.code: w for w in lint_sms(text, tracked_prefixes=TRACKED)}
    assert dict(by_code["too_many_segments"].details) == {
        "segments": 8,
        "max_segments": 3,
        "encoding": "UCS-2",
    }
    assert by_code["ucs2_forced"].details["characters"] == ["“", "”"]
    assert by_code["ucs2_forced"].details["suggestions"] == {"“": '"', "”": '"'}
    assert by_code["untracked_link"].details["urls"] == ["https://shop.example/a"]
    assert "no_opt_out" in by_code
    json.dumps([{"code": w.code, "message": w.message, "details": dict(w.details)} for w in by_code.values()])


def test_lint_uses_a_given_analysis() -> None:
    given_analysis = SmsAnalysis("GSM-7", segments=9, units=1300, characters=1300)
    assert [w.code for w in lint_sms("short STOP", analysis=given_analysis)] == ["too_many_segments"]


def test_lint_rejects_a_broken_opt_out_pattern() -> None:
    with pytest.raises(InputError):
        lint_sms("hi", opt_out_patterns=["(unclosed"])


# ----------------------------------------------------------------------------------------- properties

_CHUNKS = st.sampled_from(sorted(GSM_BASIC)) | st.sampled_from(sorted(GSM_EXTENSION))
WILD_CHARS = _CHUNKS | st.sampled_from([EMOJI, "🎉", ZHE, "’", "…", "\u00a0"]) | st.characters()
# Long runs of one character plus a wild tail land texts on and around the segment boundaries.
_NEAR_BOUNDARY = st.builds(
    lambda head, run, count, tail: head + run * count + tail,
    st.text(WILD_CHARS, max_size=5),
    st.sampled_from(["a", EURO, ZHE, EMOJI]),
    st.integers(0, 470),
    st.text(WILD_CHARS, max_size=20),
)
WILD_TEXT = st.text(WILD_CHARS, max_size=500) | _NEAR_BOUNDARY
GSM_TEXT = st.text(_CHUNKS, max_size=500)
PROPS = settings(max_examples=200, deadline=None)


@PROPS
@given(WILD_TEXT)
def test_split_rejoins_fits_and_matches_count(text: str) -> None:
    analysis = analyse_sms(text)
    parts = split_segments(text)
    assert "".join(parts) == text
    assert len(parts) == analysis.segments
    assert parts == ref_split(text, analysis.encoding)
    capacity = 160 if analysis.encoding == "GSM-7" else 70
    capacity = capacity if len(parts) == 1 else capacity - (7 if analysis.encoding == "GSM-7" else 3)
    assert analysis.segment_capacity == capacity
    assert all(sum(ref_weight(c, analysis.encoding) for c in p) <= capacity for p in parts)
    assert analysis.units == sum(ref_weight(c, analysis.encoding) for c in text)


@PROPS
@given(GSM_TEXT)
def test_gsm_text_never_reports_non_gsm_characters(text: str) -> None:
    analysis = analyse_sms(text)
    assert analysis.encoding == "GSM-7"
    assert analysis.non_gsm_characters == ()
    assert dict(analysis.suggestions) == {}
    assert smart_encode(text) == text


@PROPS
@given(WILD_TEXT)
def test_non_gsm_characters_are_exactly_the_offenders(text: str) -> None:
    analysis = analyse_sms(text)
    offenders = {c for c in text if c not in GSM_ALL}
    assert set(analysis.non_gsm_characters) == offenders
    assert (analysis.encoding == "UCS-2") == bool(offenders)


@PROPS
@given(WILD_TEXT)
def test_smart_encode_is_idempotent_and_only_keeps_unreplaceable(text: str) -> None:
    once = smart_encode(text)
    assert smart_encode(once) == once
    assert set(analyse_sms(once).suggestions) == set()


@PROPS
@given(st.text(_CHUNKS | st.sampled_from(sorted(REPLACEMENTS)), max_size=300))
def test_replaceable_text_becomes_gsm7(text: str) -> None:
    assert analyse_sms(smart_encode(text)).encoding == "GSM-7"
