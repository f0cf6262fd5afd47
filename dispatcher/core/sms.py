"""SMS encoding, segment counting, cost and lint, applied to each message after personalisation.

An SMS is billed per segment, and the segment count depends on the encoding: a single character outside
the GSM-7 alphabet turns the whole message into UCS-2, which holds 70 units instead of 160. Counting must
therefore run on the rendered text of every recipient, and it is on the hot path of rendering, so the
common case (plain ASCII) is decided with one C-level ``bytes.translate`` instead of a loop per character.

Segments are packed greedily, not divided: an extension character (ESC + septet) or a UTF-16 surrogate pair
is never split across two segments, so a long message can need one segment more than ``ceil(units / 153)``.
An empty text is one (empty) segment: that is what a carrier sends and bills.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, Literal

from dispatcher.core.gsm import EXTENSION_RE, GSM_ALL, NON_GSM_RE, gsm_septets, suggest_replacement
from dispatcher.errors import InputError

__all__ = [
    "DEFAULT_OPT_OUT_PATTERNS",
    "GSM7",
    "UCS2",
    "Encoding",
    "SmsAnalysis",
    "SmsWarning",
    "analyse_sms",
    "analysis_as_dict",
    "estimate_cost",
    "lint_sms",
    "smart_encode",
    "split_segments",
]

Encoding = Literal["GSM-7", "UCS-2"]
GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

#: (units in a single message, units per segment of a concatenated one); the 7 or 3 units lost per
#: segment hold the user data header that tells the handset how to reassemble the parts.
CAPACITY: Final[dict[str, tuple[int, int]]] = {GSM7: (160, 153), UCS2: (70, 67)}

#: Characters beyond the BMP: two UTF-16 code units (a surrogate pair) each.
_ASTRAL_RE: Final = re.compile("[\U00010000-\U0010ffff]")

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    # a shared read-only mapping: a dataclass default must not be a (mutable) dict
    return _EMPTY


@dataclass(frozen=True, slots=True)
class SmsAnalysis:
    """What a rendered SMS costs and why.

    ``units`` are septets for GSM-7 (extension characters count two) and UTF-16 code units for UCS-2
    (characters beyond the BMP, such as emoji, count two). ``characters`` counts code points.
    """

    encoding: Encoding
    segments: int
    units: int
    characters: int
    non_gsm_characters: tuple[str, ...] = ()
    suggestions: Mapping[str, str] = field(default_factory=_empty)

    @property
    def segment_capacity(self) -> int:
        """Units per segment in effect: the single-message size, or the concatenated one."""
        single, multi = CAPACITY[self.encoding]
        return single if self.segments <= 1 else multi


def _ucs2_units(text: str) -> int:
    # surrogatepass: a lone surrogate (possible in a Python str) is one unit instead of a crash
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _segment_ends(text: str, heavy: re.Pattern[str], capacity: int) -> list[int]:
    """End index of each segment when characters are packed greedily, those matching ``heavy`` weighing two.

    Only the positions of heavy characters are materialised, so a long text costs a few bisects per
    segment, not a Python step per character. Each segment starts at ``capacity`` characters and sheds
    half the excess at a time: shedding ``ceil(excess / 2)`` characters can never pass the true boundary.
    """
    doubles = [m.start() for m in heavy.finditer(text)]
    ends: list[int] = []
    start, length = 0, len(text)
    while start < length:
        before = bisect_left(doubles, start)
        end = min(length, start + capacity)
        while (excess := end - start + bisect_left(doubles, end) - before - capacity) > 0:
            end -= (excess + 1) // 2
        ends.append(end)
        start = end
    return ends


def _heavy(encoding: Encoding) -> re.Pattern[str]:
    return EXTENSION_RE if encoding == GSM7 else _ASTRAL_RE


def _count_segments(text: str, encoding: Encoding, units: int) -> int:
    single, multi = CAPACITY[encoding]
    if units <= single:
        return 1
    if units == len(text):  # every character weighs one unit: plain division is exact
        return -(-units // multi)
    return len(_segment_ends(text, _heavy(encoding), multi))


def analyse_sms(text: str) -> SmsAnalysis:
    """Encoding, units and segments of one rendered message, plus what forces UCS-2 and how to avoid it."""
    septets = gsm_septets(text)
    if septets is not None:
        return SmsAnalysis(GSM7, _count_segments(text, GSM7, septets), septets, len(text))
    units = _ucs2_units(text)
    offenders = tuple(dict.fromkeys(NON_GSM_RE.findall(text)))
    suggestions = {c: s for c in offenders if (s := suggest_replacement(c)) is not None}
    return SmsAnalysis(
        encoding=UCS2,
        segments=_count_segments(text, UCS2, units),
        units=units,
        characters=len(text),
        non_gsm_characters=offenders,
        suggestions=MappingProxyType(suggestions) if suggestions else _EMPTY,
    )


def split_segments(text: str) -> list[str]:
    """The text of each segment as it will be sent (for SMPP concatenation); joining them gives ``text``."""
    septets = gsm_septets(text)
    encoding: Encoding = GSM7 if septets is not None else UCS2
    units = septets if septets is not None else _ucs2_units(text)
    single, multi = CAPACITY[encoding]
    if units <= single:
        return [text]
    if units == len(text):
        return [text[i : i + multi] for i in range(0, len(text), multi)]
    ends = _segment_ends(text, _heavy(encoding), multi)
    return [text[start:end] for start, end in zip([0, *ends], ends, strict=False)]


def smart_encode(text: str) -> str:
    """Replace look-alike characters by their GSM-7 stand-ins (opt-in: it changes what the author wrote).

    Characters without a stand-in (emoji, non-Latin scripts) are kept, so the result may still be UCS-2,
    and a stand-in can be longer than its character ("…" → "..."): a text of many ellipses can even need
    more segments in GSM-7. Callers that care analyse both versions and keep the cheaper one.
    """
    if gsm_septets(text) is not None:
        return text
    table = {ord(c): s for c in set(text) - GSM_ALL if (s := suggest_replacement(c)) is not None}
    return text.translate(table)


def estimate_cost(segments: int, price_per_segment: Decimal) -> Decimal:
    """Price of sending ``segments`` segments; exact decimal, rounding is left to whoever bills."""
    if isinstance(segments, bool) or segments < 0:
        raise InputError("segment count must be a non-negative integer", details=[{"segments": segments}])
    if not price_per_segment.is_finite() or price_per_segment < 0:
        raise InputError(
            "price per segment must be a finite, non-negative amount",
            details=[{"price_per_segment": str(price_per_segment)}],
        )
    return price_per_segment * segments


def analysis_as_dict(analysis: SmsAnalysis) -> dict[str, Any]:
    """A JSON-ready view of an analysis (for ``dispatcher sms-info --json`` and the preview API)."""
    return {
        "encoding": analysis.encoding,
        "segments": analysis.segments,
        "units": analysis.units,
        "characters": analysis.characters,
        "segment_capacity": analysis.segment_capacity,
        "non_gsm_characters": list(analysis.non_gsm_characters),
        "suggestions": dict(analysis.suggestions),
    }


# ---------------------------------------------------------------------------------------------- lint

#: Regular expressions (matched case-insensitively) that count as opt-out instructions.
DEFAULT_OPT_OUT_PATTERNS: Final[tuple[str, ...]] = (
    r"\bstop(?:all)?\b",
    r"\bopt[\s-]?out\b",
    r"\bunsubscribe\b",
)

_URL_RE: Final = re.compile(r"https?://[^\s<>\"'`{}|\\^]+", re.IGNORECASE)
_URL_TRAILING: Final = ".,;:!?)]'\""
_PLACEHOLDER_RE: Final = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SmsWarning:
    """One lint finding; ``code`` is stable and machine-readable, ``message`` is for people."""

    code: str
    message: str
    details: Mapping[str, Any] = field(default_factory=_empty)


@lru_cache(maxsize=64)
def _opt_out_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    except re.error as exc:
        raise InputError(f"invalid opt-out pattern: {exc}", details=[{"patterns": list(patterns)}]) from exc


def _check_length(analysis: SmsAnalysis, max_segments: int) -> SmsWarning | None:
    if analysis.segments <= max_segments:
        return None
    return SmsWarning(
        "too_many_segments",
        f"message needs {analysis.segments} segments, more than the {max_segments} allowed",
        {"segments": analysis.segments, "max_segments": max_segments, "encoding": analysis.encoding},
    )


def _check_encoding(analysis: SmsAnalysis) -> SmsWarning | None:
    if analysis.encoding == GSM7:
        return None
    chars = list(analysis.non_gsm_characters)
    return SmsWarning(
        "ucs2_forced",
        f"{len(chars)} character(s) force UCS-2 (70 units per message instead of 160): {''.join(chars)}",
        {"characters": chars, "suggestions": dict(analysis.suggestions)},
    )


def _check_opt_out(text: str, patterns: tuple[str, ...]) -> SmsWarning | None:
    regex = _opt_out_regex(patterns)
    if regex is None or regex.search(text):
        return None
    return SmsWarning(
        "no_opt_out", 'no opt-out instruction such as "Reply STOP" found', {"patterns": list(patterns)}
    )


def _check_links(text: str, tracked_prefixes: tuple[str, ...]) -> SmsWarning | None:
    if "://" not in text:
        return None
    urls = dict.fromkeys(m.rstrip(_URL_TRAILING) for m in _URL_RE.findall(text))
    untracked = [u for u in urls if not u.startswith(tracked_prefixes)]
    if not untracked:
        return None
    return SmsWarning(
        "untracked_link",
        f"{len(untracked)} link(s) are not tracked: {', '.join(untracked)}",
        {"urls": untracked, "tracked_prefixes": list(tracked_prefixes)},
    )


def _check_placeholders(text: str) -> SmsWarning | None:
    if "{" not in text:
        return None
    found = list(dict.fromkeys(_PLACEHOLDER_RE.findall(text)))
    if not found:
        return None
    message = f"template syntax left in the text: {', '.join(found)}"
    return SmsWarning("unresolved_variable", message, {"placeholders": found})


def lint_sms(
    text: str,
    *,
    max_segments: int = 3,
    opt_out_patterns: Sequence[str] = DEFAULT_OPT_OUT_PATTERNS,
    tracked_prefixes: Sequence[str] = (),
    analysis: SmsAnalysis | None = None,
) -> list[SmsWarning]:
    """Warnings for a rendered SMS, in a fixed order: length, encoding, opt-out, links, leftover syntax.

    Pass ``analysis`` when the caller already has one, to skip counting twice. Empty ``opt_out_patterns``
    disables the opt-out check (transactional messages); with empty ``tracked_prefixes`` every link is
    untracked. Prefixes are compared case-sensitively, as written (e.g. ``"https://sho.rt/r/"``).
    """
    found = analysis if analysis is not None else analyse_sms(text)
    checks = (
        _check_length(found, max_segments),
        _check_encoding(found),
        _check_opt_out(text, tuple(opt_out_patterns)),
        _check_links(text, tuple(tracked_prefixes)),
        _check_placeholders(text),
    )
    return [warning for warning in checks if warning is not None]
