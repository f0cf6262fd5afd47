"""When the engine sends: local windows in several zones, DST switches, multi-zone numbers, pilot and A/B.

Each campaign is planned by ``plan_campaign`` and sent by ``dispatch_tick`` + ``send_chunk`` in a real arq
worker (PostgreSQL or SQLite, Redis, the SMS stand-in over HTTP) whose clock stands still at an instant the
test picks, so a campaign can be walked across a day or a DST switch in a few ticks. After every tick the
newly arrived messages are checked against an oracle written here from zoneinfo alone: each went at an
instant inside a send window and the allowed hours in every zone of its recipient.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.core.allocation import draw, in_pilot, pick_variant
from dispatcher.errors import ConflictError
from dispatcher.ops.campaigns import release_pilot
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory
from tests.pipeline.campaign_setup import (
    campaign_row,
    campaign_state,
    ledger_rows,
    ledger_states,
    person,
    run_at,
    seed_scheduled,
)

DEFAULT_WINDOWS, DEFAULT_ALLOWED = "10:30-11:30,15:00-17:00", "08:00-21:00"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def wall(text: str, zone: str) -> datetime:
    """A local wall-clock time that exists once (never a DST gap or repeat) as a UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _minutes(spans: str) -> list[tuple[int, int]]:
    found = []
    for span in spans.split(","):
        start, end = (int(h) * 60 + int(m) for h, m in (part.split(":") for part in span.split("-")))
        found.append((start, end))
    return found


def inside(at: datetime, zones: Sequence[str], windows: str, allowed: str) -> bool:
    """The oracle: ``at`` reads inside a window and the allowed hours on the clock of every zone."""
    for zone in zones:
        local = at.astimezone(ZoneInfo(zone))
        minute = local.hour * 60 + local.minute
        for spans in (windows, allowed):
            if not any(start <= minute < end for start, end in _minutes(spans)):
                return False
    return True


class Stub:
    """The SMS stand-in, read incrementally: what arrived since the last look."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.next = 0
        self.received: Counter[str] = Counter()
        self.messages: list[dict[str, Any]] = []  # everything that arrived, in order

    async def arrivals(self) -> list[dict[str, Any]]:
        query = f"{self.url}/_stub/messages?since={self.next}&limit=100000"
        async with aiohttp.ClientSession() as http, http.get(query) as response:
            body = await response.json()
        self.next = body["next"]
        found: list[dict[str, Any]] = body["messages"]
        self.received.update(m["to"] for m in found)
        self.messages += found
        return found


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    runner: web.AppRunner
    runner, url = await start_fake_sms(FakeSmsConfig(seed=5, intermediate_callbacks=False))
    yield Stub(url)
    await runner.cleanup()


@dataclass
class Walk:
    """A campaign walked through time: each step is one dispatch tick at an instant the test picks."""

    settings: Settings
    stub: Stub
    zones_of: dict[str, Sequence[str]]  # the zones each number must be inside a window in
    windows: str = DEFAULT_WINDOWS
    allowed: str = DEFAULT_ALLOWED

    async def tick(self, at: datetime) -> set[str]:
        """Who received something at ``at``, after checking each message went inside its windows."""
        await run_at(self.settings, at, "dispatch_tick")
        arrived = {m["to"] for m in await self.stub.arrivals()}
        for phone in arrived:
            assert inside(at, self.zones_of[phone], self.windows, self.allowed), (phone, at)
        assert max(self.stub.received.values(), default=0) <= 1, "somebody got the campaign twice"
        return arrived


async def plan(settings: Settings, campaign_id: int, at: datetime) -> None:
    await run_at(settings, at, "plan_campaign", campaign_id)
    assert await campaign_state(settings, campaign_id) == "running"


async def not_before(settings: Settings, campaign_id: int) -> dict[str, tuple[str, datetime | None]]:
    return {m.address: (m.state, m.not_before) for m in await ledger_rows(settings, campaign_id)}


# --- windows in several zones ------------------------------------------------------------------------------

CITIES = {  # numbers as imports store them; Australian mobiles carry eight zones, so these use their field
    "America/New_York": [person(f"+1212555{100 + n:04d}") for n in range(3)],
    "Europe/Paris": [person(f"+3361234560{n}") for n in range(3)],
    "Asia/Tokyo": [person(f"+8190123456{n:02d}") for n in range(3)],
    "Australia/Sydney": [person(f"+6141234560{n}", timezone="Australia/Sydney") for n in range(3)],
}
PHONES = {zone: {p.phone for p in group} for zone, group in CITIES.items()}


async def test_each_zone_gets_its_messages_inside_its_own_windows(settings: Settings, stub: Stub) -> None:
    people = [p for group in CITIES.values() for p in group]
    walk = Walk(settings, stub, {p.phone: (zone,) for zone, group in CITIES.items() for p in group})
    start = utc("2026-11-16T06:10:00")  # Tokyo 15:10 (open); Sydney 17:10, Paris 07:10, New York 01:10
    cid = await seed_scheduled(settings, stub.url, people, slug="cities", end_at=start + timedelta(days=3))
    await plan(settings, cid, start)
    slots = {
        "Asia/Tokyo": start,
        "Europe/Paris": wall("2026-11-16T10:30", "Europe/Paris"),
        "America/New_York": wall("2026-11-16T10:30", "America/New_York"),
        "Australia/Sydney": wall("2026-11-17T10:30", "Australia/Sydney"),
    }
    planned = await not_before(settings, cid)
    for zone, when in slots.items():
        assert {planned[phone] for phone in PHONES[zone]} == {("planned", when)}, zone

    assert await walk.tick(start) == PHONES["Asia/Tokyo"]  # the rest wait for their own slot
    assert await walk.tick(slots["Europe/Paris"] - timedelta(seconds=1)) == set()
    assert await walk.tick(slots["Europe/Paris"]) == PHONES["Europe/Paris"]
    # New York is first looked at as its morning window closes (11:30 is outside [10:30, 11:30)): the send
    # gate puts its rows back with the afternoon window as their next slot
    assert await walk.tick(wall("2026-11-16T11:30", "America/New_York")) == set()
    afternoon = wall("2026-11-16T15:00", "America/New_York")
    waiting = await not_before(settings, cid)
    assert {waiting[phone] for phone in PHONES["America/New_York"]} == {("planned", afternoon)}
    assert await walk.tick(afternoon) == PHONES["America/New_York"]
    assert await walk.tick(slots["Australia/Sydney"]) == PHONES["Australia/Sydney"]

    assert await ledger_states(settings, cid) == {"sent": len(people)}
    await run_at(settings, slots["Australia/Sydney"], "dispatch_tick")  # nothing left: it completes
    assert await campaign_state(settings, cid) == "completed"
    assert sorted(stub.received) == sorted(p.phone for p in people)


# --- DST switches ----------------------------------------------------------------------------------------

NY, PARIS = "America/New_York", "Europe/Paris"
DST_CASES = {  # zone, windows, allowed, planned at, first slot, (a tick that sends nothing, one that sends)
    # US fall back (2026-11-01 06:00Z, 02:00 EDT -> 01:00 EST): 10:30 local is 15:30Z on the day, not 14:30Z
    "us-fall-back-morning": (NY, DEFAULT_WINDOWS, DEFAULT_ALLOWED, "2026-11-01T04:00",
                             "2026-11-01T15:30", ("2026-11-01T14:45", "2026-11-01T15:30")),
    # the repeated hour 01:00-02:00 is open on both passes: due since the first, sent on the second
    "us-repeated-hour-both-passes": (NY, "01:00-02:00", "00:00-24:00", "2026-11-01T04:30",
                                     "2026-11-01T05:00", ("2026-11-01T04:59", "2026-11-01T06:30")),
    # 02:00 EST, right after the repeat: the window is over for the day
    "us-after-the-repeated-hour": (NY, "01:00-02:00", "00:00-24:00", "2026-11-01T07:00",
                                   "2026-11-02T06:00", ("2026-11-01T07:00", "2026-11-02T06:00")),
    # spring forward (2026-03-08 07:00Z, 02:00 EST -> 03:00 EDT): a window starting in the gap opens at 03:00
    "us-window-starting-in-gap": (NY, "02:30-03:30", "00:00-24:00", "2026-03-08T06:00",
                                  "2026-03-08T07:00", ("2026-03-08T06:59", "2026-03-08T07:00")),
    # a window wholly inside the gap does not open that day
    "us-window-inside-gap": (NY, "02:00-02:45", "00:00-24:00", "2026-03-08T06:00",
                             "2026-03-09T06:00", ("2026-03-08T07:10", "2026-03-09T06:00")),
    # EU fall back (2026-10-25 01:00Z): 10:30 CET is 09:30Z; 08:45Z reads 09:45 there (10:45 a day before)
    "eu-fall-back": (PARIS, DEFAULT_WINDOWS, DEFAULT_ALLOWED, "2026-10-25T00:00",
                     "2026-10-25T09:30", ("2026-10-25T08:45", "2026-10-25T09:30")),
    # EU spring forward (2027-03-28 01:00Z): 10:30 CEST is 08:30Z
    "eu-spring-forward": (PARIS, DEFAULT_WINDOWS, DEFAULT_ALLOWED, "2027-03-28T00:00",
                          "2027-03-28T08:30", ("2027-03-28T08:29", "2027-03-28T08:30")),
}  # fmt: skip
NUMBERS = {NY: [person(f"+1646555{200 + n:04d}") for n in range(4)], PARIS: CITIES[PARIS]}


@pytest.mark.parametrize("case", list(DST_CASES))
async def test_windows_follow_the_wall_clock_across_dst(settings: Settings, stub: Stub, case: str) -> None:
    zone, windows, allowed, start, first, (quiet, sending) = DST_CASES[case]
    people = NUMBERS[zone]
    walk = Walk(settings, stub, {p.phone: (zone,) for p in people}, windows, allowed)
    cid = await seed_scheduled(
        settings, stub.url, people, slug=case, windows=windows, allowed=allowed,
        end_at=utc(start) + timedelta(days=4),
    )  # fmt: skip
    await plan(settings, cid, utc(start))
    assert set((await not_before(settings, cid)).values()) == {("planned", utc(first))}
    assert await walk.tick(utc(quiet)) == set()
    assert await walk.tick(utc(sending)) == {p.phone for p in people}
    assert await ledger_states(settings, cid) == {"sent": len(people)}


# --- numbers with several zones --------------------------------------------------------------------------

ALASKA = [person(f"+1907555{300 + n:04d}") for n in range(3)]  # America/Adak and America/Anchorage
AU_OWN_ZONE = [person(f"+6141234570{n}", timezone="Australia/Perth") for n in range(2)]
AU_LIST_ZONE = [person(f"+6141234580{n}") for n in range(2)]


async def test_a_number_with_several_zones_goes_when_all_of_them_are_open(
    settings: Settings, stub: Stub
) -> None:
    assert set(ALASKA[0].zones) == {"America/Adak", "America/Anchorage"}
    assert len(AU_OWN_ZONE[0].zones) > 4  # no instant is in a window everywhere from Cocos to Lord Howe
    walk = Walk(settings, stub, {p.phone: p.zones for p in ALASKA})
    walk.zones_of |= {p.phone: ("Australia/Perth",) for p in AU_OWN_ZONE}  # the contact's own zone
    walk.zones_of |= {p.phone: ("Australia/Brisbane",) for p in AU_LIST_ZONE}  # the list's default
    start = utc("2026-06-14T20:00:00")  # Adak 11:00 (open) but Anchorage 12:00 (closed)
    cid = await seed_scheduled(
        settings, stub.url, ALASKA + AU_OWN_ZONE + AU_LIST_ZONE, slug="multi",
        end_at=start + timedelta(days=2), list_zone="Australia/Brisbane",
    )  # fmt: skip
    await plan(settings, cid, start)
    slots = {  # in time order
        "alaska": (ALASKA, wall("2026-06-14T16:00", "America/Anchorage")),  # = 15:00 in Adak
        "brisbane": (AU_LIST_ZONE, wall("2026-06-15T10:30", "Australia/Brisbane")),
        "perth": (AU_OWN_ZONE, wall("2026-06-15T10:30", "Australia/Perth")),
    }
    planned = await not_before(settings, cid)
    for name, (group, when) in slots.items():
        assert {planned[p.phone] for p in group} == {("planned", when)}, name

    assert await walk.tick(start) == set()
    assert await walk.tick(utc("2026-06-14T23:30:00")) == set()  # Anchorage 15:30 (open), Adak 14:30
    for name, (group, when) in slots.items():
        assert await walk.tick(when) == {p.phone for p in group}, name
    assert await ledger_states(settings, cid) == {"sent": len(walk.zones_of)}


async def test_a_number_whose_zones_share_no_instant_before_the_end_expires(
    settings: Settings, stub: Stub
) -> None:
    start = utc("2026-06-14T23:30:00")  # the Alaska numbers' next common instant is 00:00Z, after the end
    los_angeles = [person(f"+1213555{400 + n:04d}") for n in range(2)]  # 16:30 there: open
    walk = Walk(settings, stub, {p.phone: p.zones for p in ALASKA + los_angeles})
    cid = await seed_scheduled(
        settings, stub.url, ALASKA + los_angeles, slug="ending", end_at=start + timedelta(minutes=20)
    )
    await plan(settings, cid, start)
    rows = {m.address: m for m in await ledger_rows(settings, cid)}
    expired = {(rows[p.phone].state, rows[p.phone].error_code) for p in ALASKA}
    assert expired == {("expired", "no_window_before_end")}
    assert await walk.tick(start) == {p.phone for p in los_angeles}
    assert await ledger_states(settings, cid) == {"sent": 2, "expired": 3}
    await run_at(settings, start, "dispatch_tick")
    assert await campaign_state(settings, cid) == "completed"


# --- pilot and A/B ---------------------------------------------------------------------------------------

ALL_DAY = "00:00-24:00"
CROWD = [person(f"+1415555{1000 + n:04d}") for n in range(200)]
EVERYONE = {p.phone for p in CROWD}
START = utc("2026-06-15T18:00")


async def _crowd_campaign(settings: Settings, stub: Stub, slug: str, **options: Any) -> tuple[int, Walk]:
    cid = await seed_scheduled(
        settings, stub.url, CROWD, slug=slug, windows=ALL_DAY, allowed=ALL_DAY,
        end_at=START + timedelta(days=5), **options,
    )  # fmt: skip
    await plan(settings, cid, START)
    return cid, Walk(settings, stub, {p.phone: p.zones for p in CROWD}, ALL_DAY, ALL_DAY)


async def _expected_pilot(settings: Settings, cid: int, percent: int) -> set[str]:
    """The pilot sample by its definition (a stable draw per recipient), near ``percent`` of the crowd."""
    contacts = {m.address: m.contact_id for m in await ledger_rows(settings, cid)}
    chosen = {phone for phone, contact in contacts.items() if in_pilot(percent, draw(cid, contact, "pilot"))}
    assert abs(len(chosen) - len(CROWD) * percent / 100) < 0.1 * len(CROWD), len(chosen)
    return chosen


async def test_a_pilot_sends_its_share_then_the_rest_after_the_delay(settings: Settings, stub: Stub) -> None:
    cid, walk = await _crowd_campaign(settings, stub, "auto-pilot", pilot=(20, 60))
    pilot = await _expected_pilot(settings, cid, 20)
    assert await walk.tick(START) == pilot
    assert (await campaign_row(settings, cid)).pilot_release_at == START + timedelta(minutes=60)

    almost = START + timedelta(minutes=59)  # held until the delay has passed, whoever ticks meanwhile
    await run_at(settings, almost, "release_pilots")
    assert await walk.tick(almost) == set()
    assert await ledger_states(settings, cid) == {"sent": len(pilot), "planned": len(CROWD) - len(pilot)}

    await run_at(settings, START + timedelta(minutes=60), "release_pilots")
    assert await walk.tick(START + timedelta(minutes=60)) == EVERYONE - pilot
    assert await ledger_states(settings, cid) == {"sent": len(CROWD)}
    assert set(stub.received) == EVERYONE


async def test_a_pilot_without_delay_waits_for_the_release_call(settings: Settings, stub: Stub) -> None:
    cid, walk = await _crowd_campaign(settings, stub, "manual-pilot", pilot=(10, None))
    pilot = await _expected_pilot(settings, cid, 10)
    assert await walk.tick(START) == pilot
    await run_at(settings, START + timedelta(days=1), "release_pilots")  # no delay: never by itself
    assert await walk.tick(START + timedelta(days=1)) == set()

    released_at = START + timedelta(days=1, minutes=5)
    workspace_id = (await campaign_row(settings, cid)).workspace_id
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine).begin() as session:
            await release_pilot(session, workspace_id, cid, now=released_at)
        with pytest.raises(ConflictError):  # released once only
            async with session_factory(engine).begin() as session:
                await release_pilot(session, workspace_id, cid, now=released_at)
    finally:
        await engine.dispose()
    assert await walk.tick(released_at) == EVERYONE - pilot
    assert await ledger_states(settings, cid) == {"sent": len(CROWD)}
    assert set(stub.received) == EVERYONE


async def test_ab_variants_split_deterministically_and_send_their_own_text(
    settings: Settings, stub: Stub
) -> None:
    bodies = {
        "A": ("Offer A for {{ first_name }}: 20% off", 3),
        "B": ("Offer B for {{ first_name }}: 2 for 1", 1),
    }
    cid, walk = await _crowd_campaign(settings, stub, "ab", bodies=bodies)
    rows = await ledger_rows(settings, cid)
    for row in rows:  # the split by its definition: a stable draw per recipient against the weights
        assert row.variant == pick_variant((("A", 3), ("B", 1)), draw(cid, row.contact_id, "variant"))
    split = Counter(row.variant for row in rows)
    assert split["A"] + split["B"] == len(CROWD)
    assert 0.65 < split["A"] / len(CROWD) < 0.85, split  # 3:1 up to the draw's noise

    assert await walk.tick(START) == EVERYONE
    arrived = stub.messages
    assert len(arrived) == len(EVERYONE)
    first_name = {p.phone: f"P{n}" for n, p in enumerate(CROWD)}
    variant = {row.address: row.variant for row in rows}
    for message in arrived:
        assert message["body"].startswith(f"Offer {variant[message['to']]} for {first_name[message['to']]}:")
    assert Counter(m["body"][:7] for m in arrived) == {"Offer A": split["A"], "Offer B": split["B"]}
