"""The segment filter language (SPEC §3): a JSON filter in, a typed tree out, and back (``dump``).

::

    node := {"all": [node, ...]}        every child matches ({"all": []} is the whole list)
          | {"any": [node, ...]}        at least one child matches (at least one child)
          | {"not": node}
          | {"field": F, "op": "eq" | "in" | "range" | "exists", "value": V}
          | {"field": "engagement", "op": "clicked" | "replied", "days": N}

Fields: ``attributes.<name>`` (custom CSV columns), ``phone_region``, ``phone_type``, ``timezone``,
``sms_capable``, ``has_email``, ``has_phone``. Decisions a marketer would ask about:

* Attributes are stored as the text of the CSV cell. ``eq``/``in`` with strings compare text exactly
  (case-sensitive); with numbers they compare numerically, so ``{"value": 30}`` matches ``30`` and ``30.0``.
  ``range`` takes ``gt``/``gte``/``lt``/``lte``: with numeric bounds only cells that are JSON-style numbers
  take part (``25-34`` is not a number and never matches), with string bounds the comparison is textual
  (right for ISO dates such as ``2024-05-01``). Mixing numbers and strings in one condition is refused.
* A condition on a missing value is false, never unknown, so ``not`` of it includes the contacts without
  the value (``not age_band eq 25-34`` keeps contacts with no age band).
* Limits keep one filter cheap to compile and run: 8 levels, 100 conditions, 500 nodes, 500 values per ``in``.

Everything here is pure: the engagement window's "now" is supplied by whoever compiles the tree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from dispatcher.core.zones import is_known_zone
from dispatcher.errors import InputError

MAX_DEPTH = 8
MAX_LEAVES = 100
MAX_NODES = 500
MAX_IN_VALUES = 500
MAX_TEXT = 500
MAX_DAYS = 3650
MAX_NUMBER = 1e15  # beyond this, float rounding makes comparisons differ between databases

# Header names as marketers write them ("age_band", "Member Level"); quotes and backslashes never, so a name
# is always safe inside a JSON path.
ATTRIBUTE_NAME = re.compile(r"\w[\w .\-]{0,99}")
PHONE_TYPES = frozenset(
    {
        "fixed_line", "mobile", "fixed_line_or_mobile", "toll_free", "premium_rate", "shared_cost", "voip",
        "personal_number", "pager", "uan", "voicemail", "unknown",
    }
)  # fmt: skip

Kind = Literal["attribute", "region", "phone_type", "timezone", "flag"]
_KINDS: dict[str, Kind] = {
    "phone_region": "region",
    "phone_type": "phone_type",
    "timezone": "timezone",
    "sms_capable": "flag",
    "has_email": "flag",
    "has_phone": "flag",
}
_OPS: dict[Kind, tuple[str, ...]] = {
    "attribute": ("eq", "in", "range", "exists"),
    "region": ("eq", "in", "exists"),
    "phone_type": ("eq", "in", "exists"),
    "timezone": ("eq", "in", "exists"),
    "flag": ("eq",),
}
_BOUNDS = ("gt", "gte", "lt", "lte")
Scalar = str | int | float


@dataclass(frozen=True, slots=True)
class AllOf:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class NotOf:
    node: Node


@dataclass(frozen=True, slots=True)
class Equals:
    field: str
    value: Scalar | bool


@dataclass(frozen=True, slots=True)
class OneOf:
    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Between:
    """``bounds`` pairs an operator (gt, gte, lt, lte) with its value, in that order."""

    field: str
    bounds: tuple[tuple[str, Scalar], ...]


@dataclass(frozen=True, slots=True)
class Exists:
    field: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class Engaged:
    action: Literal["clicked", "replied"]
    days: int


Node = AllOf | AnyOf | NotOf | Equals | OneOf | Between | Exists | Engaged


def attribute_of(field_name: str) -> str | None:
    """``"attributes.age_band"`` → ``"age_band"``; None for the built-in fields."""
    return field_name.removeprefix("attributes.") if field_name.startswith("attributes.") else None


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class _Budget:
    nodes: int = 0
    leaves: int = 0

    def take(self, path: str, *, leaf: bool) -> None:
        self.nodes += 1
        self.leaves += leaf
        if self.nodes > MAX_NODES:
            _fail(path, f"a filter has at most {MAX_NODES} nodes")
        if self.leaves > MAX_LEAVES:
            _fail(path, f"a filter has at most {MAX_LEAVES} conditions")


def _fail(path: str, message: str) -> NoReturn:
    raise InputError(
        f"invalid segment filter at {path}: {message}", details=[{"field": path, "message": message}]
    )


def parse(data: object, path: str = "filter") -> Node:
    """Validate a JSON filter; an :class:`InputError` names the first bad path (``filter.all.2.op``)."""
    return _node(data, path, 1, _Budget())


def _node(data: object, path: str, depth: int, budget: _Budget) -> Node:
    if depth > MAX_DEPTH:
        _fail(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        _fail(path, 'must be an object with one of "all", "any", "not" or "field"')
    if "field" in data:
        budget.take(path, leaf=True)
        return _leaf(data, path)
    budget.take(path, leaf=False)
    if len(data) != 1:
        _fail(path, 'must have exactly one of "all", "any", "not" or "field"')
    key, inner = next(iter(data.items()))
    if key == "not":
        return NotOf(_node(inner, f"{path}.not", depth + 1, budget))
    if key not in ("all", "any"):
        _fail(f"{path}.{key}", 'unknown key; use "all", "any", "not" or "field"')
    if not isinstance(inner, list):
        _fail(f"{path}.{key}", "must be a list of conditions")
    if key == "any" and not inner:
        _fail(f"{path}.{key}", "needs at least one condition")
    nodes = tuple(_node(item, f"{path}.{key}.{i}", depth + 1, budget) for i, item in enumerate(inner))
    return AllOf(nodes) if key == "all" else AnyOf(nodes)


def _leaf(data: dict[Any, Any], path: str) -> Node:
    name = data["field"]
    if not isinstance(name, str):
        _fail(f"{path}.field", "must be a string")
    op = data.get("op")
    if name == "engagement":
        _only_keys(data, path, {"field", "op", "days"})
        return _engaged(op, data.get("days"), path)
    kind = _kind(name, f"{path}.field")
    _only_keys(data, path, {"field", "op", "value"})
    if op not in _OPS[kind]:
        _fail(f"{path}.op", f"{name} takes op {' | '.join(_OPS[kind])}, not {op!r}")
    value_path = f"{path}.value"
    value = data.get("value")
    if op == "exists":
        if value is not None and not isinstance(value, bool):
            _fail(value_path, "exists takes true, false or no value")
        return Exists(name, value is not False)
    if "value" not in data:
        _fail(value_path, f"{op} needs a value")
    if op == "in":
        return OneOf(name, _values(kind, value, value_path))
    if op == "range":
        return Between(name, _bounds(value, value_path))
    return Equals(name, _scalar(kind, value, value_path))


def _only_keys(data: dict[Any, Any], path: str, allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            _fail(f"{path}.{key}", f"unknown key; a condition has {', '.join(sorted(allowed))}")


def _kind(name: str, path: str) -> Kind:
    attribute = attribute_of(name)
    if attribute is not None:
        if not ATTRIBUTE_NAME.fullmatch(attribute):
            _fail(path, "attribute names are 1-100 letters, digits, spaces, '_', '.' or '-'")
        return "attribute"
    if name not in _KINDS:
        known = ", ".join(["attributes.<name>", *_KINDS, "engagement"])
        _fail(path, f"unknown field {name[:60]!r}; use one of {known}")
    return _KINDS[name]


def _engaged(op: object, days: object, path: str) -> Engaged:
    if op not in ("clicked", "replied"):
        _fail(f"{path}.op", f"engagement takes op clicked | replied, not {op!r}")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        _fail(f"{path}.days", f"must be a whole number of days from 1 to {MAX_DAYS}")
    return Engaged("clicked" if op == "clicked" else "replied", days)


def _scalar(kind: Kind, value: object, path: str) -> Scalar | bool:
    if kind == "flag":
        if not isinstance(value, bool):
            _fail(path, "must be true or false")
        return value
    if kind == "attribute":
        return _attribute_value(value, path)
    if not isinstance(value, str):
        _fail(path, "must be a string")
    if kind == "region":
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            _fail(path, "must be an ISO 3166 country code such as US")
        return value.upper()
    if kind == "phone_type":
        if value.lower() not in PHONE_TYPES:
            _fail(path, f"unknown number type; use one of {', '.join(sorted(PHONE_TYPES))}")
        return value.lower()
    if not is_known_zone(value):
        _fail(path, f"unknown IANA time zone {value[:64]!r}")
    return value


def _attribute_value(value: object, path: str) -> Scalar:
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            _fail(path, f"text longer than {MAX_TEXT} characters")
        return value
    if is_number(value):
        assert isinstance(value, int | float)
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            _fail(path, f"numbers must be finite and at most {MAX_NUMBER:.0e} in size")
        return value
    _fail(path, "must be a string or a number")


def _values(kind: Kind, value: object, path: str) -> tuple[Scalar, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
        _fail(path, f"in takes a list of 1 to {MAX_IN_VALUES} values")
    values = tuple(_scalar(kind, item, f"{path}.{i}") for i, item in enumerate(value))
    if len({is_number(v) for v in values}) > 1:
        _fail(path, "mix of numbers and strings; use one kind per condition")
    return tuple(v for v in values if not isinstance(v, bool))  # flags take no "in": narrows the type only


def _bounds(value: object, path: str) -> tuple[tuple[str, Scalar], ...]:
    if not isinstance(value, dict) or not value:
        _fail(path, 'range takes an object such as {"gte": 18, "lt": 65}')
    for key in value:
        if key not in _BOUNDS:
            _fail(f"{path}.{key}", "unknown bound; use gt, gte, lt or lte")
    if ("gt" in value and "gte" in value) or ("lt" in value and "lte" in value):
        _fail(path, "give at most one lower (gt/gte) and one upper (lt/lte) bound")
    bounds = tuple((key, _attribute_value(value[key], f"{path}.{key}")) for key in _BOUNDS if key in value)
    if len({is_number(v) for _, v in bounds}) > 1:
        _fail(path, "mix of numbers and strings; use one kind per condition")
    return bounds


def dump(node: Node) -> dict[str, Any]:
    """The canonical JSON of a tree: ``parse(dump(t)) == t`` for every parsed ``t``."""
    match node:
        case AllOf(nodes):
            return {"all": [dump(n) for n in nodes]}
        case AnyOf(nodes):
            return {"any": [dump(n) for n in nodes]}
        case NotOf(inner):
            return {"not": dump(inner)}
        case Equals(name, value):
            return {"field": name, "op": "eq", "value": value}
        case OneOf(name, values):
            return {"field": name, "op": "in", "value": list(values)}
        case Between(name, bounds):
            return {"field": name, "op": "range", "value": dict(bounds)}
        case Exists(name, present):
            return {"field": name, "op": "exists"} | ({} if present else {"value": False})
        case Engaged(action, days):
            return {"field": "engagement", "op": action, "days": days}
