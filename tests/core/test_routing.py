"""Provider choice, pinning of ambiguous attempts, and the circuit breaker's arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.routing import BreakerPolicy, Choice, Route, choose, health_counts, order_routes

A = Route(1, idempotent=True)
B = Route(2, idempotent=False)
UK = Route(3, idempotent=True, prefixes=("+44",))
ONLY_7 = Route(4, idempotent=True, campaigns=(7,))


def _choose(routes: list[Route], address: str = "+14155550100", **kw: object) -> Choice:
    args: dict[str, object] = {
        "campaign_id": 1,
        "open_circuits": (),
        "pinned_to": None,
        "duplicate_policy": "never",
    }
    args.update(kw)
    return choose(routes, address=address, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("routes", "address", "kw", "expected"),
    [
        ([A, B], "+14155550100", {}, Choice("send", 1)),
        ([A, B], "+14155550100", {"open_circuits": {1}}, Choice("send", 2)),
        ([A, B], "+14155550100", {"open_circuits": {1, 2}}, Choice("wait")),
        ([UK, A], "+447700900123", {}, Choice("send", 3)),
        ([UK, A], "+14155550100", {}, Choice("send", 1)),
        ([UK], "+14155550100", {}, Choice("no_route")),
        ([ONLY_7, A], "+14155550100", {"campaign_id": 7}, Choice("send", 4)),
        ([ONLY_7, A], "+14155550100", {"campaign_id": 8}, Choice("send", 1)),
        # an ambiguous attempt at an idempotent provider retries there, waiting while its circuit is open
        ([A, B], "+14155550100", {"pinned_to": 1}, Choice("send", 1)),
        ([B, A], "+14155550100", {"pinned_to": 1}, Choice("send", 1)),
        ([A, B], "+14155550100", {"pinned_to": 1, "open_circuits": {1}}, Choice("wait")),
        # without provider dedupe the campaign's policy decides
        ([B, A], "+14155550100", {"pinned_to": 2}, Choice("unconfirmed")),
        (
            [B, A],
            "+14155550100",
            {"pinned_to": 2, "duplicate_policy": "resend"},
            Choice("send", 2, possible_duplicate=True),
        ),
        (
            [B, A],
            "+14155550100",
            {"pinned_to": 2, "duplicate_policy": "resend", "open_circuits": {2}},
            Choice("send", 1, possible_duplicate=True),
        ),
        # the pinned provider was disabled meanwhile: no dedupe possible any more
        ([B], "+14155550100", {"pinned_to": 9}, Choice("unconfirmed")),
    ],
)
def test_choose(routes: list[Route], address: str, kw: dict[str, object], expected: Choice) -> None:
    assert _choose(routes, address, **kw) == expected


def test_order_puts_the_primary_first_then_priority_then_id() -> None:
    routes = [(Route(5, True), 10), (Route(2, True), 50), (Route(3, True), 10), (Route(9, True), 200)]
    assert [r.provider_id for r in order_routes(9, routes)] == [9, 3, 5, 2]
    assert [r.provider_id for r in order_routes(None, routes)] == [3, 5, 2, 9]


@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=6, unique=True),
    st.sets(st.integers(1, 6)),
    st.one_of(st.none(), st.integers(1, 6)),
    st.sampled_from(["never", "resend"]),
)
def test_a_choice_is_always_an_open_route_or_the_pinned_one(
    ids: list[int], open_circuits: set[int], pinned: int | None, policy: str
) -> None:
    routes = [Route(i, idempotent=i % 2 == 0) for i in ids]
    choice = _choose(routes, pinned_to=pinned, open_circuits=open_circuits, duplicate_policy=policy)
    if choice.decision == "send":
        assert choice.provider_id in ids
        pinned_ok = pinned is not None and pinned % 2 == 0 and pinned in ids
        if pinned_ok:  # an idempotent pinned provider is the only place a resend may go
            assert choice.provider_id == pinned
            assert not choice.possible_duplicate
        else:
            assert choice.provider_id not in open_circuits
            assert choice.possible_duplicate == (pinned is not None)
    elif choice.decision == "unconfirmed":
        assert pinned is not None
        assert policy == "never"


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], (0, 0)),
        ([("sent", None)] * 3, (3, 0)),
        ([("transient", "throttled")] * 5, (0, 0)),
        ([("transient", "server_error"), ("transient", "timeout"), ("sent", None)], (3, 2)),
        ([("permanent", "invalid_number"), ("transient", "connection")], (2, 1)),
        ([("transient", "provider_config")], (1, 0)),
    ],
)
def test_health_counts(outcomes: list[tuple[str, str | None]], expected: tuple[int, int]) -> None:
    assert health_counts(outcomes) == expected


@pytest.mark.parametrize(
    ("calls", "failures", "trips"),
    [(19, 19, False), (20, 10, True), (20, 9, False), (100, 50, True), (100, 49, False), (0, 0, False)],
)
def test_breaker_trips_on_enough_calls_at_the_failure_ratio(calls: int, failures: int, trips: bool) -> None:
    assert BreakerPolicy().trips(calls, failures) is trips
