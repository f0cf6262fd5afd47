"""A batch's cap reservations share what depends only on time, zone and policy; the keys and arguments
must stay exactly those of ``core.capping.cap_keys`` for every contact."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from dispatcher.core.capping import CapPolicy, cap_keys
from dispatcher.errors import InputError
from dispatcher.pipeline import limits_lua as lua
from dispatcher.pipeline.limits import CapRequest, FrequencyCaps

ZONES = ["America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
CONTACTS: list[str | int] = ["w1.+14155550000", 42, "w2.ann@shop.example"]
MOMENTS = [datetime(2026, 3, 8, 6, 59, tzinfo=UTC), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]


async def _no_history(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, datetime]]]:
    return {}


@pytest.mark.parametrize("seeded", [True, False])
def test_cached_shapes_give_the_keys_of_cap_keys(seeded: bool) -> None:
    caps = FrequencyCaps(None, history=_no_history if seeded else None)  # type: ignore[arg-type]
    shapes: dict = {}  # type: ignore[type-arg]
    policies = [CapPolicy(), CapPolicy(per_local_day=2, per_rolling_days=5, rolling_days=30)]
    for at in MOMENTS:
        for zone in ZONES:
            for policy in policies:
                for contact in CONTACTS:
                    item = CapRequest(contact, "sms", f"c1m{contact}", at, zone, policy)
                    keys, args = caps._reserve_call(item, shapes, require=seeded)
                    expected = cap_keys(contact, "sms", at, zone, policy)
                    prune = expected.at_ms - caps._ttl * 1000
                    assert keys == [expected.rolling_key, expected.rolling_key[:-1] + "s"]
                    assert list(args) == [
                        item.send_id, expected.at_ms, prune, expected.floor_ms, expected.day_start_ms,
                        expected.day_end_ms, expected.day_limit, expected.rolling_limit, caps._ttl,
                        1 if seeded else 0,
                    ]  # fmt: skip
    assert len(shapes) == len(MOMENTS) * len(ZONES) * len(policies)


@pytest.mark.parametrize("contact", ["w1.{x}", "w1.a b", "w1:x"])
def test_a_contact_id_cap_keys_refuses_is_still_refused(contact: str) -> None:
    caps = FrequencyCaps(None)  # type: ignore[arg-type]
    item = CapRequest(contact, "sms", "c1m1", MOMENTS[0], "UTC")
    with pytest.raises(InputError):
        caps._reserve_call(item, {}, require=False)


@pytest.mark.parametrize("seeded", [True, False])
def test_encoded_reservations_are_the_calls_in_the_protocol(seeded: bool) -> None:
    caps = FrequencyCaps(None, history=_no_history if seeded else None)  # type: ignore[arg-type]
    encoded: dict = {}  # type: ignore[type-arg]
    policies = [CapPolicy(), CapPolicy(per_local_day=2, per_rolling_days=5, rolling_days=30)]
    for at in MOMENTS:
        for zone in ZONES:
            for policy in policies:
                for contact in [*CONTACTS, "w3.zoë@exämple.com"]:
                    item = CapRequest(contact, "sms", f"c1m{contact}", at, zone, policy)
                    keys, args = caps._reserve_call(item, {}, require=seeded)
                    assert caps._reserve_command(item, encoded, seeded) == lua._command(
                        lua.Script(lua.CAP_RESERVE).header, keys, args
                    )


@pytest.mark.parametrize("contact", ["w1.{x}", "w1.a b", "w1:x"])
def test_an_encoded_reservation_refuses_what_cap_keys_refuses(contact: str) -> None:
    caps = FrequencyCaps(None)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        caps._reserve_command(CapRequest(contact, "sms", "c1m1", MOMENTS[0], "UTC"), {}, False)
    with pytest.raises(InputError):
        too_long = CapPolicy(rolling_days=caps.horizon_days + 1)
        caps._reserve_command(CapRequest("w1.x", "sms", "c1m1", MOMENTS[0], "UTC", too_long), {}, False)
