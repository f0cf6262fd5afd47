"""The GSM 03.38 (3GPP TS 23.038) default alphabet and GSM-7 replacements for look-alike characters.

One character outside these tables switches a whole SMS to UCS-2 and cuts its capacity from 160 to 70, so
the tables must be exact, and the most common culprits (typographic quotes and dashes pasted from a word
processor, non-breaking spaces, ellipses) need a known GSM-7 stand-in that "smart encoding" can apply.

The tables are laid out by septet value so a later SMPP encoder can pack septets from the same source.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Final

ESCAPE: Final = "\x1b"

#: The basic table indexed by septet value; 0x1B is the escape to the extension table, not a character.
GSM_BASIC_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: Extension table (reached by ESC + septet): each of these costs two septets.
GSM_EXTENSION_TABLE: Final[dict[int, str]] = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

GSM_BASIC: Final = frozenset(GSM_BASIC_TABLE) - {ESCAPE}
GSM_EXTENSION: Final = frozenset(GSM_EXTENSION_TABLE.values())
GSM_ALL: Final = GSM_BASIC | GSM_EXTENSION

# Byte sets for the pure-ASCII fast path: bytes.translate(None, delete) runs in C at ~1 ns a character.
ASCII_BASIC_BYTES: Final = bytes(sorted(ord(c) for c in GSM_BASIC if c.isascii()))
ASCII_EXTENSION_BYTES: Final = bytes(sorted(ord(c) for c in GSM_EXTENSION if c.isascii()))

NON_GSM_RE: Final = re.compile("[^" + "".join(re.escape(c) for c in sorted(GSM_ALL)) + "]")
EXTENSION_RE: Final = re.compile("[" + "".join(re.escape(c) for c in sorted(GSM_EXTENSION)) + "]")


def _same(replacement: str, chars: str) -> dict[str, str]:
    return dict.fromkeys(chars, replacement)


#: Hand-picked stand-ins for characters that commonly force UCS-2 by accident. Values are GSM-7 only;
#: an empty value means "drop it" (invisible characters). Anything else goes through the Unicode
#: compatibility fallback in :func:`suggest_replacement`.
REPLACEMENTS: Final[dict[str, str]] = {
    # single quotes, primes, apostrophe look-alikes and stray accents
    **_same("'", "\u2018\u2019\u201a\u201b\u2032\u2035\u2039\u203a\u00b4`\u02b9\u02bb\u02bc\u02bd\uff07"),
    # double quotes, guillemets, double primes
    **_same('"', "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\u02ba\u02dd\u02ee\uff02"),
    # hyphens, dashes, minus signs
    **_same("-", "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"),
    # bullets and middle dots
    **_same("-", "\u2022\u2023\u2043\u2219\u00b7"),
    # spaces of every width, and tab
    **_same(" ", "\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"),
    **_same(" ", "\u202f\u205f\u3000"),
    # invisible characters: zero-width space/joiners, word joiner, BOM, soft hyphen
    **_same("", "\u200b\u200c\u200d\u2060\ufeff\u00ad"),
    # line and paragraph separators
    **_same("\n", "\u2028\u2029\x85"),
    "\u2026": "...",
    "\u02c6": "^",
    "\u02dc": "~",
    "\u2044": "/",
    "\u00f7": "/",
    "\u00d7": "x",
    "\u2122": "TM",
    "\u00a9": "(c)",
    "\u00ae": "(R)",
    # GSM 0x09 is shown as ç by many handsets; keeping the cedilla beats dropping it
    "ç": "Ç",
    # Greek capitals that look like Latin ones (the GSM table only has the ones that do not)
    **{greek: latin for greek, latin in zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)},
}


def _to_gsm(chars: str) -> str | None:
    """Map every character to GSM-7 through the hand table, or give up on the first that has no stand-in."""
    out = []
    for char in chars:
        if char in GSM_ALL:
            out.append(char)
        elif char in REPLACEMENTS:
            out.append(REPLACEMENTS[char])
        else:
            return None
    return "".join(out)


@lru_cache(maxsize=4096)
def suggest_replacement(char: str) -> str | None:
    """A GSM-7 stand-in for one character that forces UCS-2, or None when there is no faithful one.

    The hand table wins; otherwise the NFKC form (which keeps accents and folds full-width letters and
    ligatures) is tried, then NFKD with combining marks stripped (á → a). Scripts with no Latin
    counterpart (Cyrillic, CJK, emoji) get None: transliterating those would change the message.
    """
    if char in GSM_ALL:
        return None
    if char in REPLACEMENTS:
        return REPLACEMENTS[char]
    composed = _to_gsm(unicodedata.normalize("NFKC", char))
    if composed is not None and composed != "":
        return composed
    stripped = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    folded = _to_gsm(stripped)
    return folded if folded else None


def gsm_septets(text: str) -> int | None:
    """Septets needed for ``text`` in GSM-7 (extension characters count two), or None if it cannot be.

    Pure ASCII, the usual case, is decided by two C-level ``bytes.translate`` calls instead of a Python
    loop: deleting the basic characters leaves only extension characters and non-GSM ones.
    """
    if text.isascii():
        rest = text.encode("ascii").translate(None, ASCII_BASIC_BYTES)
        if not rest:
            return len(text)
        if rest.translate(None, ASCII_EXTENSION_BYTES):
            return None
        return len(text) + len(rest)
    if NON_GSM_RE.search(text) is not None:
        return None
    return len(text) + len(EXTENSION_RE.findall(text))
