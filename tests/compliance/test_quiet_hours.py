"""Issue #8: no SMS leaves outside its recipient's quiet hours and send windows, across DST switches.

Two levels. The pure planner is driven by hypothesis over numbers from many regions (several of them
spanning several zones), contacts' own zone fields, list defaults, generated windows and allowed hours and
a "now" within days of a DST switch in either hemisphere. The engine (plan_campaign, dispatch_tick and
send_chunk in a real arq worker on PostgreSQL and Redis, sending to the SMS stand-in over HTTP) is walked
across a DST switch at instants that hypothesis picks, some of them late, so rows reach the send gate after
their window has closed. Both are judged by the oracle in :mod:`tests.compliance.helpers`, which reads
wall clocks from zoneinfo and never calls the planner.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.core.allocation import AudiencePlanner, CampaignShape, Recipient
from dispatcher.core.windows import parse_window, parse_windows
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Message
from tests.compliance.helpers import (
    NUMBERS,
    TRANSITIONS,
    ZONES,
    allowed_st,
    binding_zones,
    contact_zone_st,
    first_open,
    near_a_switch,
    windows_st,
)
from tests.conftest import PG_URL, _truncate_pg
from tests.pipeline.campaign_setup import Person, ledger_rows, person, run_at, seed_scheduled
from tests.pipeline.test_engine_schedule import Stub, inside

PEOPLE = {name: person(raw) for name, raw in NUMBERS.items()}
ALL_DAY = "00:00-24:00"


@pytest.fixture
def db_url(pg_url: str) -> str:
    """PostgreSQL only: the planner and the gates above the database are the same on SQLite."""
    _truncate_pg()
    return PG_URL


def _shape(now: datetime, end: datetime, windows: str, allowed: str, list_zone: str | None) -> CampaignShape:
    return CampaignShape(
        campaign_id=8, channel="sms", weights=(("A", 1),), pilot_percent=None, windows=parse_windows(windows),
        allowed=parse_window(allowed), start=now, end=end, list_zone=list_zone,
    )  # fmt: skip


# --- the pure planner ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    now=near_a_switch(),
    minutes=st.integers(60, 10 * 24 * 60),
    windows=windows_st,
    allowed=allowed_st,
    list_zone=st.one_of(st.none(), st.sampled_from(ZONES)),
    audience=st.lists(st.tuples(st.sampled_from(sorted(PEOPLE)), contact_zone_st), min_size=1, max_size=10),
)
def test_every_planned_instant_is_open_in_every_binding_zone(
    now: datetime,
    minutes: int,
    windows: str,
    allowed: str,
    list_zone: str | None,
    audience: list[tuple[str, str | None]],
) -> None:
    end = now + timedelta(minutes=minutes)
    planner = AudiencePlanner(_shape(now, end, windows, allowed, list_zone))
    expected: dict[tuple[str, ...], datetime | None] = {}
    for contact_id, (name, own_zone) in enumerate(audience, start=1):
        who = PEOPLE[name]
        recipient = Recipient(contact_id, who.phone, None, True, who.zones, own_zone)
        placed = planner.place(recipient, suppressed=False)
        assert placed is not None
        zones = binding_zones(who.zones, own_zone, list_zone, windows, allowed, now)
        if zones is None:  # nothing binds but the number's zones, which never meet: it must not go at all
            assert (placed.state, placed.not_before) == ("expired", None)
            continue
        if zones not in expected:
            expected[zones] = first_open(zones, windows, allowed, now, end)
        note(f"{name} ({own_zone}) binds in {zones}: expected {expected[zones]}, got {placed}")
        if expected[zones] is None:
            assert (placed.state, placed.not_before) == ("expired", None)
            continue
        assert placed.state == "planned"
        assert placed.not_before is not None
        assert now <= placed.not_before < end
        assert inside(placed.not_before, zones, windows, allowed)
        assert placed.not_before == expected[zones]  # the earliest such instant, not just any


@pytest.mark.parametrize("name", ["australia", "russia"])
def test_a_number_known_only_by_its_zones_never_goes_in_their_quiet_hours(name: str) -> None:
    now = datetime(2026, 1, 14, tzinfo=UTC)
    who = PEOPLE[name]
    planner = AudiencePlanner(
        _shape(now, now + timedelta(days=7), "10:30-11:30,15:00-17:00", "08:00-21:00", None)
    )
    placed = planner.place(Recipient(1, who.phone, None, True, who.zones, None), suppressed=False)
    assert placed is not None
    # wherever in its zones the recipient lives, quiet hours hold there; expiring is the honest alternative
    sent_at = placed.not_before
    assert placed.state == "expired" or (
        sent_at is not None and inside(sent_at, who.zones, ALL_DAY, "08:00-21:00")
    )


# --- the engine ------------------------------------------------------------------------------------------

PRESETS = (  # (windows, allowed): the defaults, windows cut by quiet hours, and windows over the DST hours
    ("10:30-11:30,15:00-17:00", "08:00-21:00"),
    ("07:00-09:00,20:00-23:00", "08:00-22:00"),
    ("00:30-03:30,12:00-13:00", ALL_DAY),
    ("01:00-02:00,09:00-09:30", ALL_DAY),
)
LAGS = tuple(timedelta(minutes=m) for m in (120, 61, 15, 300, 23 * 60 + 45))  # most outlast a window
_SLUGS: Iterator[int] = itertools.count()


@dataclass(frozen=True)
class Case:
    start: datetime
    switch: datetime
    end: datetime
    windows: str
    allowed: str
    list_zone: str
    people: tuple[Person, ...]
    extra_ticks: tuple[datetime, ...]  # instants a tick runs whatever is due
    lags: tuple[timedelta, ...]  # how late the first due ticks come (a busy or stopped worker)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    _, switch = draw(st.sampled_from(TRANSITIONS))
    start = switch - timedelta(minutes=draw(st.integers(30, 36 * 60)))
    end = switch + timedelta(minutes=draw(st.integers(12 * 60, 48 * 60)))
    windows, allowed = draw(st.sampled_from(PRESETS))
    audience = draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(PEOPLE)), contact_zone_st),
            min_size=4, max_size=9, unique_by=lambda pair: pair[0],
        )
    )  # fmt: skip
    span = int((end - start).total_seconds())
    extra = draw(st.lists(st.integers(1, span), max_size=5))
    return Case(
        start=start, switch=switch, end=end, windows=windows, allowed=allowed,
        list_zone=draw(st.sampled_from(ZONES)),  # always set, so every recipient has a binding zone
        people=tuple(replace(PEOPLE[name], timezone=zone) for name, zone in audience),
        extra_ticks=tuple(start + timedelta(seconds=seconds) for seconds in extra),
        lags=tuple(draw(st.lists(st.sampled_from(LAGS), min_size=2, max_size=4))),
    )  # fmt: skip


@dataclass
class Judge:
    """Holds each row to the oracle after every step: what went, what waits, what expired, and when."""

    case: Case
    stub: Stub
    binding: dict[str, tuple[str, ...]]
    rows: dict[str, Message]
    waited: int = 0  # rows the gate sent back to wait for a later window
    lapsed: int = 0  # rows the gate expired at send time

    def first_open(self, phone: str, at: datetime) -> datetime | None:
        return first_open(self.binding[phone], self.case.windows, self.case.allowed, at, self.case.end)

    async def step(self, at: datetime, fresh: list[Message]) -> None:
        arrived = {m["to"] for m in await self.stub.arrivals()}
        now = {m.address: m for m in fresh}
        assert max(self.stub.received.values(), default=0) <= 1, "somebody got the campaign twice"
        assert arrived == {p for p, m in now.items() if m.state == "sent" and self.rows[p].state != "sent"}
        for phone, row in now.items():
            before = self.rows[phone]
            assert row.state in {"planned", "sent", "expired"}, (phone, row.state)
            if phone in arrived:
                assert self.case.start <= at < self.case.end
                assert inside(at, self.binding[phone], self.case.windows, self.case.allowed), (phone, at)
            elif row.state == "expired" and before.state != "expired":
                assert self.first_open(phone, at) is None, (phone, at)  # it could still have gone
                self.lapsed += 1
            elif row.state == "planned" and row.not_before != before.not_before:
                assert row.not_before == self.first_open(phone, at), (phone, at)  # waits for its next window
                self.waited += 1
        self.rows = now


def _binding(case: Case, who: Person, at: datetime) -> tuple[str, ...]:
    zones = binding_zones(who.zones, who.timezone, case.list_zone, case.windows, case.allowed, at)
    assert zones is not None  # the list always has a default zone
    return zones


async def _walk(settings: Settings, judge: Judge, campaign_id: int) -> int:
    """Tick at every due instant (the first few late) and at the extra instants, in time order."""
    case, extras, lags = judge.case, sorted(judge.case.extra_ticks), list(judge.case.lags)
    at, ticks = case.start, 0
    while ticks < 40:
        due = [m.not_before for m in judge.rows.values() if m.state == "planned" and m.not_before is not None]
        planned = min(due) + (lags[0] if lags else timedelta(0)) if due else None
        extra = extras[0] if extras else None
        if planned is None and extra is None:
            return ticks
        if extra is not None and (planned is None or extra < planned):
            at = max(at, extras.pop(0))
        else:
            assert planned is not None
            at = max(at, planned)
            lags = lags[1:]
        await run_at(settings, at, "dispatch_tick")
        await judge.step(at, await ledger_rows(settings, campaign_id))
        ticks += 1
    raise AssertionError("the walk did not settle in 40 ticks")


@settings(
    max_examples=6,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: each example costs a second
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
async def test_the_engine_sends_only_inside_every_binding_zone_across_a_dst_switch(
    settings: Settings, case: Case
) -> None:
    binding = {p.phone: _binding(case, p, case.start) for p in case.people}
    note(f"{case}\nbinding zones {binding}")
    # each example builds its own stand-in and workspace: function-scoped fixtures outlive the examples
    runner, url = await start_fake_sms(FakeSmsConfig(seed=5, intermediate_callbacks=False))
    try:
        cid = await seed_scheduled(
            settings, url, case.people, slug=f"dst-{next(_SLUGS)}", end_at=case.end, windows=case.windows,
            allowed=case.allowed, list_zone=case.list_zone,
        )  # fmt: skip
        await run_at(settings, case.start, "plan_campaign", cid)
        judge = Judge(case, Stub(url), binding, {m.address: m for m in await ledger_rows(settings, cid)})
        assert set(judge.rows) == set(binding)
        for phone, row in judge.rows.items():  # planned at its first open instant, or expired if none
            expected = judge.first_open(phone, case.start)
            assert (row.state, row.not_before) == (("planned", expected) if expected else ("expired", None))

        ticks = await _walk(settings, judge, cid)
        event(f"rows sent back to wait: {'some' if judge.waited else 'none'}")
        note(f"{ticks} ticks, {judge.waited} rows sent back to wait, {judge.lapsed} expired by the gate")
        assert {m.state for m in judge.rows.values()} <= {"sent", "expired"}
        sent = {phone for phone, m in judge.rows.items() if m.state == "sent"}
        assert set(judge.stub.received) == sent
        assert all(count == 1 for count in judge.stub.received.values())
    finally:
        await runner.cleanup()


async def test_a_late_tick_keeps_judging_a_recipient_by_the_zones_it_was_planned_in(
    settings: Settings,
) -> None:
    alaska = replace(PEOPLE["alaska"], timezone="Europe/London")
    windows, plan_at = "01:00-02:00", datetime(2026, 11, 1, 9, tzinfo=UTC)
    runner, url = await start_fake_sms(FakeSmsConfig(seed=5, intermediate_callbacks=False))
    try:
        cid = await seed_scheduled(
            settings, url, [alaska], slug="late-tick", end_at=plan_at + timedelta(days=2), windows=windows,
            allowed=ALL_DAY,
        )  # fmt: skip
        await run_at(settings, plan_at, "plan_campaign", cid)
        [row] = await ledger_rows(settings, cid)
        # Anchorage has fallen back to AKST while Adak is still on HDT: the one hour both read 01:xx
        assert (row.state, row.not_before) == ("planned", datetime(2026, 11, 1, 10, tzinfo=UTC))
        stub = Stub(url)
        await run_at(settings, datetime(2026, 11, 1, 12, tzinfo=UTC), "dispatch_tick")  # after that hour
        assert await stub.arrivals() == []
        [row] = await ledger_rows(settings, cid)
        if row.state == "planned" and row.not_before is not None:  # expiring is right too: no common hour
            await run_at(settings, row.not_before, "dispatch_tick")  # is left before the end
            for message in await stub.arrivals():
                assert inside(row.not_before, alaska.zones, windows, ALL_DAY), (message["to"], row.not_before)
    finally:
        await runner.cleanup()
