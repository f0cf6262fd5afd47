"""The only filters a message template may use, each bounded in the size of what it returns.

jinja2 ships some fifty filters; most (``attr``, ``map``, ``format``, ``pprint``, ``batch``, ...) reach into
objects, build collections or format strings in ways the sandbox would have to police one by one. A
marketing message needs names, prices and dates, so this is the whole list. Every filter that builds a
string charges its length to the render budget (see ``sandbox.charge``), so ``{{ s | upper }}`` repeated in a
loop cannot add up to gigabytes.

``date`` converts to the recipient's zone: the zone comes from the ``tz`` argument or else from the
``timezone`` template variable (:data:`TIMEZONE_VARIABLE`), which the caller fills from the contact; without
either, an aware datetime keeps its own zone. A naive datetime is refused rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date as date_type
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Undefined, pass_context
from jinja2.filters import do_default, do_int, do_round, do_title
from jinja2.runtime import Context

from dispatcher.core.sandbox import MAX_INT_BITS, charge, printable

__all__ = ["FILTERS", "TIMEZONE_VARIABLE", "money", "to_date_text"]

TIMEZONE_VARIABLE: Final = "timezone"
_MAX_MONEY: Final = Decimal(10) ** 15
_MAX_ROUND_PRECISION: Final = 10
_MAX_TRUNCATE: Final = 100_000
_CURRENCY_CODE: Final = re.compile(r"[A-Z]{3}")
_EUROPEAN_SEPARATORS: Final = str.maketrans(",.", ".,")


@dataclass(frozen=True, slots=True)
class _CurrencyStyle:
    prefix: str
    suffix: str
    decimals: int = 2
    european: bool = False  # "1.234,50" instead of "1,234.50"


# Plain spaces only: a no-break space would force an SMS into UCS-2 and cut its capacity from 160 to 70.
_CURRENCIES: Final[Mapping[str, _CurrencyStyle]] = MappingProxyType(
    {
        "USD": _CurrencyStyle("$", ""),
        "EUR": _CurrencyStyle("", " €", european=True),
        "GBP": _CurrencyStyle("£", ""),
        "JPY": _CurrencyStyle("¥", "", decimals=0),
        "INR": _CurrencyStyle("₹", ""),
        "AUD": _CurrencyStyle("A$", ""),
        "CAD": _CurrencyStyle("CA$", ""),
    }
)


def _defined(value: Any) -> Any:
    """Report a missing variable as one (undefined_variable), not as "money needs a number"."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def _to_decimal(value: Any) -> Decimal:
    """Accept the number types a contact attribute or a price arrives as, including CSV text like "12.5"."""
    value = _defined(value)
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise TypeError(f"money needs a number, not {type(value).__name__}")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"money needs a number, not {value!r:.40}") from None
    if not amount.is_finite() or abs(amount) >= _MAX_MONEY:
        raise ValueError("money needs a finite amount below 10^15")
    return amount


def money(value: Any, currency: Any) -> str:
    """``{{ price | money("EUR") }}`` -> "12,50 €"; unknown codes fall back to "12.50 XYZ"."""
    code = str(printable(_defined(currency))).strip().upper()
    if not _CURRENCY_CODE.fullmatch(code):
        raise ValueError(f"money needs a 3-letter currency code, not {currency!r:.20}")
    style = _CURRENCIES.get(code) or _CurrencyStyle("", f" {code}")
    rounded = _to_decimal(value).quantize(Decimal(1).scaleb(-style.decimals), rounding=ROUND_HALF_UP)
    digits = f"{abs(rounded):,.{style.decimals}f}"
    if style.european:
        digits = digits.translate(_EUROPEAN_SEPARATORS)
    sign = "-" if rounded < 0 else ""
    return f"{sign}{style.prefix}{digits}{style.suffix}"


def _zone(name: Any) -> tzinfo:
    if isinstance(name, tzinfo):
        return name
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory: IsADirectoryError
        raise ValueError(f"unknown time zone {name!r:.40}") from None


def _to_moment(value: Any) -> date_type:
    """An aware datetime, a plain date, or ISO 8601 text of either; naive date-times are refused."""
    value = _defined(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"date needs an ISO 8601 date, not {value!r:.40}") from None
        value = parsed.date() if len(text) <= len("2000-01-01") else parsed
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("date needs a date-time with a time zone or UTC offset")
        return value
    if isinstance(value, date_type):
        return value
    raise TypeError(f"date needs a date or date-time, not {type(value).__name__}")


def to_date_text(value: Any, fmt: Any = "%d %b %Y", tz: Any = None) -> str:
    """Format ``value`` with strftime ``fmt``, converted to ``tz`` first when it is a date-time."""
    moment = _to_moment(value)
    if tz is not None and isinstance(moment, datetime):
        moment = moment.astimezone(_zone(tz))
    text = moment.strftime(str(printable(fmt)))
    charge(len(text))
    return text


@pass_context
def _date(context: Context, value: Any, fmt: Any = "%d %b %Y", tz: Any = None) -> str:
    """``{{ expires | date("%d %b") }}`` in the recipient's zone (the ``timezone`` variable) unless ``tz``."""
    return to_date_text(value, fmt, tz if tz is not None else context.get(TIMEZONE_VARIABLE))


def _charged(transform: Callable[[str], str]) -> Callable[[Any], str]:
    def apply(value: Any) -> str:
        text = transform(printable(value))
        charge(len(text))
        return text

    apply.__name__ = transform.__name__
    return apply


def _truncate(value: Any, length: int = 255, killwords: bool = False, end: str = "...") -> str:
    """Like jinja's, without the silent leeway: a message exactly ``length`` long is never cut."""
    text = str(printable(value))
    end = str(printable(end))
    if not isinstance(length, int) or not len(end) <= length <= _MAX_TRUNCATE:
        raise ValueError(f"truncate needs a length between {len(end)} and {_MAX_TRUNCATE}")
    if len(text) <= length:
        result = text
    elif killwords:
        result = text[: length - len(end)] + end
    else:
        result = text[: length - len(end)].rsplit(" ", 1)[0] + end
    charge(len(result))
    return result


def _round(value: Any, precision: int = 0, method: str = "common") -> Any:
    # jinja computes 10**precision for ceil/floor: an unbounded precision would be a CPU trap.
    if not isinstance(precision, int) or not 0 <= precision <= _MAX_ROUND_PRECISION:
        raise ValueError(f"round needs a precision between 0 and {_MAX_ROUND_PRECISION}")
    value = _defined(value)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"round needs a number, not {type(value).__name__}")
    return do_round(value, precision, method)  # type: ignore[arg-type]


def _int(value: Any, default: Any = 0) -> Any:
    value = _defined(value)
    if isinstance(value, float | Decimal) and not abs(value) < 2**MAX_INT_BITS:
        raise ValueError("int needs a finite number of reasonable size")
    result = do_int(value, default)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise ValueError("int got too large a number")
    return result


def _upper(text: str) -> str:
    return text.upper()


def _lower(text: str) -> str:
    return text.lower()


def _trim(text: str) -> str:
    return text.strip()


FILTERS: Final[Mapping[str, Callable[..., Any]]] = MappingProxyType(
    {
        "money": money,
        "date": _date,
        "upper": _charged(_upper),
        "lower": _charged(_lower),
        "title": _charged(do_title),
        "trim": _charged(_trim),
        "truncate": _truncate,
        "default": do_default,
        "round": _round,
        "int": _int,
    }
)
"""Filter name -> implementation; the template checks reject every other filter name at save time."""
