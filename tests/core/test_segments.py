"""The segment filter language: what parses to what, what is refused (and where), and round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.segments import (
    MAX_DEPTH,
    MAX_LEAVES,
    AllOf,
    AnyOf,
    Between,
    Engaged,
    Equals,
    Exists,
    NotOf,
    OneOf,
    dump,
    parse,
)
from dispatcher.errors import InputError

AGE = "attributes.age_band"

PARSED = [
    ("eq-text", {"field": AGE, "op": "eq", "value": "25-34"}, Equals(AGE, "25-34")),
    ("eq-number", {"field": "attributes.age", "op": "eq", "value": 30}, Equals("attributes.age", 30)),
    ("in", {"field": AGE, "op": "in", "value": ["a", "b"]}, OneOf(AGE, ("a", "b"))),
    (
        "range-numbers",
        {"field": "attributes.spend", "op": "range", "value": {"lt": 100, "gte": 10.5}},
        Between("attributes.spend", (("gte", 10.5), ("lt", 100))),
    ),
    (
        "range-dates",
        {"field": "attributes.joined", "op": "range", "value": {"gt": "2024-01-01"}},
        Between("attributes.joined", (("gt", "2024-01-01"),)),
    ),
    ("exists", {"field": AGE, "op": "exists"}, Exists(AGE)),
    ("exists-true", {"field": AGE, "op": "exists", "value": True}, Exists(AGE)),
    ("not-exists", {"field": "timezone", "op": "exists", "value": False}, Exists("timezone", False)),
    ("region-upper", {"field": "phone_region", "op": "eq", "value": "us"}, Equals("phone_region", "US")),
    (
        "type-lower",
        {"field": "phone_type", "op": "in", "value": ["MOBILE"]},
        OneOf("phone_type", ("mobile",)),
    ),
    ("zone", {"field": "timezone", "op": "eq", "value": "Europe/Paris"}, Equals("timezone", "Europe/Paris")),
    ("flag", {"field": "sms_capable", "op": "eq", "value": False}, Equals("sms_capable", False)),
    ("clicked", {"field": "engagement", "op": "clicked", "days": 30}, Engaged("clicked", 30)),
    ("replied", {"field": "engagement", "op": "replied", "days": 1}, Engaged("replied", 1)),
    ("empty-all", {"all": []}, AllOf(())),
    (
        "nested",
        {"any": [{"not": {"field": "has_email", "op": "eq", "value": True}}, {"all": []}]},
        AnyOf((NotOf(Equals("has_email", True)), AllOf(()))),
    ),
    ("unicode-attribute", {"field": "attributes.Âge Band", "op": "exists"}, Exists("attributes.Âge Band")),
]


@pytest.mark.parametrize(("raw", "tree"), [case[1:] for case in PARSED], ids=[case[0] for case in PARSED])
def test_parses(raw: dict[str, Any], tree: object) -> None:
    assert parse(raw) == tree
    assert parse(dump(parse(raw))) == tree


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"field": "has_phone", "op": "eq", "value": True}
    for _ in range(levels - 1):
        node = {"not": node}
    return node


LEAF = {"field": "has_phone", "op": "eq", "value": True}
REFUSED = [
    # id, filter, path named in the error
    ("not-object", [], "filter"),
    ("empty-object", {}, "filter"),
    ("two-keys", {"all": [], "any": [LEAF]}, "filter"),
    ("unknown-key", {"every": []}, "filter.every"),
    ("all-not-list", {"all": LEAF}, "filter.all"),
    ("empty-any", {"any": []}, "filter.any"),
    ("bad-op", {"all": [LEAF, {"field": AGE, "op": "like", "value": "x"}]}, "filter.all.1.op"),
    ("unknown-field", {"field": "shoe_size", "op": "eq", "value": 1}, "filter.field"),
    ("field-not-string", {"field": 3, "op": "eq", "value": 1}, "filter.field"),
    ("bad-attribute-name", {"field": 'attributes.a"b', "op": "exists"}, "filter.field"),
    ("empty-attribute-name", {"field": "attributes.", "op": "exists"}, "filter.field"),
    ("extra-key", {"field": AGE, "op": "eq", "value": "x", "hint": 1}, "filter.hint"),
    ("missing-value", {"field": AGE, "op": "eq"}, "filter.value"),
    ("null-value", {"field": AGE, "op": "eq", "value": None}, "filter.value"),
    ("bool-attribute", {"field": AGE, "op": "eq", "value": True}, "filter.value"),
    ("nan", {"field": AGE, "op": "eq", "value": float("nan")}, "filter.value"),
    ("huge-number", {"field": AGE, "op": "eq", "value": 10**20}, "filter.value"),
    ("long-text", {"field": AGE, "op": "eq", "value": "x" * 501}, "filter.value"),
    ("in-not-list", {"field": AGE, "op": "in", "value": "a"}, "filter.value"),
    ("in-empty", {"field": AGE, "op": "in", "value": []}, "filter.value"),
    ("in-bad-item", {"field": AGE, "op": "in", "value": ["a", {}]}, "filter.value.1"),
    ("in-mixed", {"field": AGE, "op": "in", "value": ["a", 1]}, "filter.value"),
    ("range-flag", {"field": "phone_region", "op": "range", "value": {"gt": "A"}}, "filter.op"),
    ("range-not-object", {"field": AGE, "op": "range", "value": 3}, "filter.value"),
    ("range-empty", {"field": AGE, "op": "range", "value": {}}, "filter.value"),
    ("range-bad-bound", {"field": AGE, "op": "range", "value": {"between": 3}}, "filter.value.between"),
    ("range-two-lower", {"field": AGE, "op": "range", "value": {"gt": 1, "gte": 2}}, "filter.value"),
    ("range-mixed", {"field": AGE, "op": "range", "value": {"gt": 1, "lt": "9"}}, "filter.value"),
    ("exists-bad-value", {"field": AGE, "op": "exists", "value": "yes"}, "filter.value"),
    ("flag-in", {"field": "sms_capable", "op": "in", "value": [True]}, "filter.op"),
    ("flag-not-bool", {"field": "has_email", "op": "eq", "value": "true"}, "filter.value"),
    ("bad-region", {"field": "phone_region", "op": "eq", "value": "USA"}, "filter.value"),
    ("bad-type", {"field": "phone_type", "op": "eq", "value": "satellite"}, "filter.value"),
    ("bad-zone", {"field": "timezone", "op": "eq", "value": "Mars/Olympus"}, "filter.value"),
    ("engagement-op", {"field": "engagement", "op": "opened", "days": 3}, "filter.op"),
    ("engagement-days", {"field": "engagement", "op": "clicked", "days": 0}, "filter.days"),
    ("engagement-bool-days", {"field": "engagement", "op": "clicked", "days": True}, "filter.days"),
    ("engagement-value", {"field": "engagement", "op": "clicked", "days": 3, "value": 1}, "filter.value"),
    ("too-deep", _deep(MAX_DEPTH + 1), "filter" + ".not" * MAX_DEPTH),
    ("too-many-leaves", {"all": [LEAF] * (MAX_LEAVES + 1)}, f"filter.all.{MAX_LEAVES}"),
    ("too-many-nodes", {"all": [{"all": []}] * 600}, "filter.all.499"),
]


@pytest.mark.parametrize(("raw", "path"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_refuses_with_path(raw: object, path: str) -> None:
    with pytest.raises(InputError) as caught:
        parse(raw)
    assert caught.value.details[0]["field"] == path, caught.value.message
    assert path in caught.value.message


def test_depth_limit_is_inclusive() -> None:
    assert parse(_deep(MAX_DEPTH)) is not None
    assert parse({"all": [LEAF] * MAX_LEAVES}) == AllOf((Equals("has_phone", True),) * MAX_LEAVES)


def test_path_prefix_is_the_callers() -> None:
    with pytest.raises(InputError) as caught:
        parse({"field": "nope", "op": "eq", "value": 1}, path="body.filter")
    assert caught.value.details[0]["field"] == "body.filter.field"


# Random valid filters: parse → dump → parse is the identity on trees, and dump is a fixed point.
_NAMES = st.sampled_from(["attributes.age_band", "attributes.Level 2", "attributes.spend-eur"])
_TEXT = st.text(max_size=20)
_NUMBER = st.one_of(st.integers(-(10**15), 10**15), st.floats(-1e15, 1e15, allow_nan=False))
_LEAVES = st.one_of(
    st.builds(lambda f, v: {"field": f, "op": "eq", "value": v}, _NAMES, st.one_of(_TEXT, _NUMBER)),
    st.builds(
        lambda f, v: {"field": f, "op": "in", "value": v}, _NAMES, st.lists(_TEXT, min_size=1, max_size=4)
    ),
    st.builds(
        lambda f, lo, hi: {"field": f, "op": "range", "value": {"gte": lo, "lt": hi}},
        _NAMES,
        _NUMBER,
        _NUMBER,
    ),
    st.builds(lambda f, p: {"field": f, "op": "exists", "value": p}, _NAMES, st.booleans()),
    st.builds(
        lambda v: {"field": "phone_region", "op": "eq", "value": v}, st.sampled_from(["US", "gb", "Fr"])
    ),
    st.builds(
        lambda v: {"field": "phone_type", "op": "in", "value": v},
        st.lists(st.sampled_from(["mobile", "voip"]), min_size=1),
    ),
    st.builds(
        lambda v: {"field": "timezone", "op": "eq", "value": v}, st.sampled_from(["UTC", "Asia/Tokyo"])
    ),
    st.builds(
        lambda f, v: {"field": f, "op": "eq", "value": v},
        st.sampled_from(["sms_capable", "has_email"]),
        st.booleans(),
    ),
    st.builds(
        lambda op, d: {"field": "engagement", "op": op, "days": d},
        st.sampled_from(["clicked", "replied"]),
        st.integers(1, 3650),
    ),
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=12,
)


def _depth(raw: dict[str, Any]) -> int:
    children = raw.get("all") or raw.get("any") or ([raw["not"]] if "not" in raw else [])
    return 1 + max((_depth(c) for c in children), default=0)


@given(_TREES)
def test_round_trip(raw: dict[str, Any]) -> None:
    if _depth(raw) > MAX_DEPTH:
        with pytest.raises(InputError):
            parse(raw)
        return
    tree = parse(raw)
    assert parse(dump(tree)) == tree
    assert dump(parse(dump(tree))) == dump(tree)
