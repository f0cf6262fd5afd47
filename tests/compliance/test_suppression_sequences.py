"""Issue #8: no SMS reaches a suppressed address, whatever order imports, opt-outs and lifts come in.

Hypothesis writes what a marketer and the recipients do to a small pool of people, all over HTTP as they
would: CSV imports to one of two lists (the same numbers written in other ways on every upload), manual
suppressions through the API (on ``sms``, ``email`` or ``all``, by number or e-mail), STOP / START
replies through the signed Twilio webhook, lifts with ``DELETE /v1/suppressions/{id}``, and campaigns to
a list through a real arq worker on PostgreSQL and Redis into the SMS stand-in. A plain model of the
suppression list (SPEC §3, §7) says what each import's buckets must be and who each campaign must reach:
everyone on the list not suppressed at that moment exactly once, nobody else.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from dispatcher.api.keys import SETTINGS
from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.channels.twilio_http import API_VERSION, SIGNATURE_HEADER, sign
from dispatcher.pipeline.queue import connect_queue
from tests.api.makers_campaigns import make_sms_template
from tests.compliance.helpers import drain_quickly
from tests.conftest import PG_URL, KeyMaker, _truncate_pg, bearer
from tests.pipeline.campaign_setup import ledger_states
from tests.pipeline.test_engine_schedule import Stub


@dataclass(frozen=True)
class Member:
    phone: str  # E.164, as stored and as Twilio reports a sender
    spellings: tuple[str, ...]  # how files and people write it (the list's default region is US)
    email: str | None


def _us(line: int) -> Member:
    national = f"415555{line:04d}"
    area, exchange, rest = national[:3], national[3:6], national[6:]
    wide = "".join(chr(ord("０") + int(digit)) for digit in "1" + national)  # full-width digits
    return Member(
        f"+1{national}",
        (f"+1 {area} {exchange} {rest}", f"({area}) {exchange}-{rest}", f"{area}.{exchange}.{rest}",
         f"001 {area} {exchange} {rest}", wide),
        f"p{line}@shop.example" if line % 2 else None,
    )  # fmt: skip


POOL = (
    *(_us(n) for n in range(101, 107)),
    Member(
        "+33612345601",
        ("+33 6 12 34 56 01", "0033 6 12 34 56 01", "011 33 6 12 34 56 01"),
        "lea@shop.example",
    ),
    Member("+447911123401", ("+44 7911 123401", "0044 7911 123401", "+44 (0)7911 123401"), None),
)
STOP_WORDS = ("STOP", "stop ", "Unsubscribe", "END", "quit")
START_WORDS = ("START", "start")
REASONS = ("manual", "unsubscribe", "complaint", "stop")
LISTS = 2
member_st = st.integers(0, len(POOL) - 1)


@dataclass(frozen=True)
class Import:
    list_index: int
    rows: tuple[tuple[int, int, bool], ...]  # (member, spelling, with its e-mail)


@dataclass(frozen=True)
class Suppress:
    member: int
    channel: str
    by_email: bool
    reason: str
    spelling: int


@dataclass(frozen=True)
class Reply:
    member: int
    word: str


@dataclass(frozen=True)
class Lift:
    member: int
    channel: str


Change = Suppress | Reply | Lift


@dataclass(frozen=True)
class Run:
    list_index: int
    meanwhile: Change | None = None  # happens after the campaign is planned, before its first tick


Step = Import | Change | Run

lists_st = st.integers(0, LISTS - 1)
import_st = st.builds(
    Import,
    lists_st,
    st.lists(st.tuples(member_st, st.integers(0, 4), st.booleans()), min_size=2, max_size=8).map(tuple),
)
change_st: st.SearchStrategy[Change] = st.one_of(
    st.builds(
        Suppress, member_st, st.sampled_from(["sms", "all", "email"]), st.booleans(),
        st.sampled_from(REASONS), st.integers(0, 4),
    ),
    st.builds(Reply, member_st, st.sampled_from(STOP_WORDS + START_WORDS)),
    st.builds(Lift, member_st, st.sampled_from(["sms", "all", "email"])),
)  # fmt: skip
run_st = st.builds(Run, lists_st, st.none() | change_st)
steps_st = st.tuples(
    import_st,  # something on a list to begin with
    st.lists(st.one_of(import_st, change_st, change_st, run_st), max_size=7),
    st.builds(Run, st.just(0), st.none() | change_st),  # and a campaign to each list at the end
    st.builds(Run, st.just(1), st.none() | change_st),
).map(lambda parts: [parts[0], *parts[1], parts[2], parts[3]])


@dataclass
class Model:
    """The suppression list and the lists' numbers as the SPEC says they must be."""

    suppressions: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, address) → reason
    lists: list[set[str]] = field(default_factory=lambda: [set() for _ in range(LISTS)])

    def blocked(self, address: str, channel: str) -> bool:
        return (channel, address) in self.suppressions or ("all", address) in self.suppressions

    def load(self, step: Import) -> Counter[str]:
        """Each row's bucket: suppressed when every address it has is; an in-file or on-list repeat is a
        duplicate; the rest are added. A suppression is never touched."""
        buckets: Counter[str] = Counter()
        seen: set[str] = set()
        on_list = self.lists[step.list_index]
        for index, _, with_email in step.rows:
            member = POOL[index]
            email = member.email if with_email else None
            if member.phone in seen:
                buckets["duplicate"] += 1
            elif self.blocked(member.phone, "sms") and (email is None or self.blocked(email, "email")):
                buckets["suppressed"] += 1
            elif member.phone in on_list:
                buckets["duplicate"] += 1
            else:
                buckets["accepted"] += 1
                on_list.add(member.phone)
            seen.add(member.phone)
        return buckets


def _address(step: Suppress | Lift) -> tuple[str, str]:
    """(channel, stored address): e-mail on ``email``, or on ``all`` when asked; members without one use
    their number, on ``sms`` if the step wanted ``email``."""
    member = POOL[step.member]
    wants_email = step.channel == "email" or (
        step.channel == "all" and isinstance(step, Suppress) and step.by_email
    )
    if wants_email and member.email is not None:
        return step.channel, member.email
    return ("sms" if step.channel == "email" else step.channel), member.phone


@pytest.fixture
def db_url(pg_url: str) -> str:
    """PostgreSQL only: the staging import path and the send gate read the same suppressions on SQLite."""
    _truncate_pg()
    return PG_URL


_WORKSPACES: Iterator[int] = itertools.count()


@dataclass
class Shop:
    """One example's workspace, reached over HTTP with its own key, lists, provider and SMS stand-in."""

    client: TestClient
    key: str
    stub: Stub
    provider_id: int
    template_id: int
    list_ids: list[int]
    model: Model = field(default_factory=Model)

    async def call(self, method: str, path: str, status: int | tuple[int, ...], **kwargs: Any) -> Any:
        headers = {**bearer(self.key), **kwargs.pop("headers", {})}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        expected = status if isinstance(status, tuple) else (status,)
        assert response.status in expected, (method, path, response.status, await response.text())
        return None if response.status == 204 else await response.json()

    async def check_suppressions(self) -> None:
        page = await self.call("GET", "/v1/suppressions?limit=500", 200)
        assert {(s["channel"], s["address"]): s["reason"] for s in page["items"]} == self.model.suppressions

    async def do(self, step: Step) -> None:
        note(repr(step))
        if isinstance(step, Import):
            await self.load(step)
        elif isinstance(step, Suppress):
            await self.suppress(step)
        elif isinstance(step, Reply):
            await self.reply(step)
        elif isinstance(step, Lift):
            await self.lift(step)
        else:
            await self.run(step)
        await self.check_suppressions()

    async def load(self, step: Import) -> None:
        lines = ["phone,email,first_name"]
        for index, spelling, with_email in step.rows:
            member = POOL[index]
            email = member.email if with_email else ""
            lines.append(f"{member.spellings[spelling % len(member.spellings)]},{email},P{index}")
        path = f"/v1/lists/{self.list_ids[step.list_index]}/imports"
        upload = "\n".join(lines).encode() + b"\n"
        started = await self.call("POST", path, 202, data=upload, headers={"Content-Type": "text/csv"})
        await drain_quickly(self.client.app[SETTINGS])
        job = await self.call("GET", f"/v1/imports/{started['id']}", 200)
        assert job["state"] == "completed", job
        expected = self.model.load(step)
        found = {bucket: job[bucket] for bucket in ("accepted", "rejected", "duplicate", "suppressed")}
        assert found == {
            "rejected": 0,
            **{b: expected[b] for b in ("accepted", "duplicate", "suppressed")},
        }, job

    async def suppress(self, step: Suppress) -> None:
        channel, address = _address(step)
        member = POOL[step.member]
        written = (
            member.spellings[step.spelling % len(member.spellings)] if address == member.phone else address
        )
        body = {"channel": channel, "address": written, "reason": step.reason, "default_region": "US"}
        new = (channel, address) not in self.model.suppressions
        made = await self.call("POST", "/v1/suppressions", 201 if new else 200, json=body)
        assert (made["channel"], made["address"]) == (channel, address)
        self.model.suppressions.setdefault((channel, address), step.reason)

    async def reply(self, step: Reply) -> None:
        phone = POOL[step.member].phone
        path = f"/hooks/twilio/{self.provider_id}/inbound"
        sid = f"SM{next(_WORKSPACES):032d}"
        form = {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": FakeSmsConfig().account_sid, "From": phone,
            "To": "+15005550006", "Body": step.word, "NumMedia": "0", "ApiVersion": API_VERSION,
        }  # fmt: skip
        url = self.client.app[SETTINGS].public_base_url + path
        signature = sign(FakeSmsConfig().auth_token, url, form)
        response = await self.client.post(path, data=form, headers={SIGNATURE_HEADER: signature})
        assert response.status == 200, await response.text()
        if step.word in STOP_WORDS:
            self.model.suppressions.setdefault(("sms", phone), "stop")
        elif self.model.suppressions.get(("sms", phone)) == "stop":  # START lifts a STOP, nothing else
            del self.model.suppressions[("sms", phone)]

    async def lift(self, step: Lift) -> None:
        channel, address = _address(step)
        query = {"channel": channel, "address": address}
        page = await self.call("GET", "/v1/suppressions", 200, params=query)
        assert len(page["items"]) == ((channel, address) in self.model.suppressions)
        for item in page["items"]:
            await self.call("DELETE", f"/v1/suppressions/{item['id']}", 204)
        self.model.suppressions.pop((channel, address), None)

    async def run(self, step: Run) -> None:
        body = {
            "name": "flash sale", "channel": "sms", "list_id": self.list_ids[step.list_index],
            "template_id": self.template_id, "provider_id": self.provider_id,
            "schedule": {"windows": "00:00-24:00", "allowed": "00:00-24:00"},
            "limits": {"per_local_day": 100, "per_rolling_days": 1000},  # caps are not what this tests
        }  # fmt: skip
        campaign = await self.call("POST", "/v1/campaigns", 201, json=body)
        await self.call("POST", f"/v1/campaigns/{campaign['id']}/start", 200)
        await drain_quickly(self.client.app[SETTINGS])  # planned: the audience is frozen
        on_list = self.model.lists[step.list_index]
        blocked = {phone for phone in on_list if self.model.blocked(phone, "sms")}
        if step.meanwhile is not None:
            await self.do(step.meanwhile)
            blocked |= {phone for phone in on_list if self.model.blocked(phone, "sms")}  # checked again
        await self.send_all(campaign["id"])
        arrived = Counter(m["to"] for m in await self.stub.arrivals())
        assert arrived == Counter(on_list - blocked), f"suppressed at planning or since: {sorted(blocked)}"
        progress = (await self.call("GET", f"/v1/campaigns/{campaign['id']}", 200))["progress"]
        assert (progress["suppressed"], progress["sent"] + progress["delivered"]) == (
            len(blocked),
            len(on_list - blocked),
        )

    async def send_all(self, campaign_id: int) -> None:
        """Tick until the ledger has nothing left to send (every window is open all day)."""
        settings = self.client.app[SETTINGS]
        pool = await connect_queue(settings.redis_url or "")
        try:
            for _ in range(20):
                if not set(await ledger_states(settings, campaign_id)) & {"planned", "queued", "sending"}:
                    return
                await pool.enqueue_job("dispatch_tick", _queue_name=settings.queue_name)
                await drain_quickly(settings)
        finally:
            await pool.aclose()
        raise AssertionError(f"campaign {campaign_id} still has messages to send after 20 ticks")


async def _open_shop(client: TestClient, make_key: KeyMaker, stub_url: str) -> Shop:
    key = await make_key(f"compliance-{next(_WORKSPACES)}")
    stub = FakeSmsConfig()
    provider = {
        "name": "stand-in", "channel": "sms", "kind": "twilio_http", "price_per_segment": "0.0075",
        "config": {"base_url": stub_url, "account_sid": stub.account_sid, "auth_token": stub.auth_token,
                   "from": ["+15005550006"]},
    }  # fmt: skip
    shop = Shop(client, key, Stub(stub_url), 0, 0, [])
    shop.provider_id = (await shop.call("POST", "/v1/providers", 201, json=provider))["id"]
    shop.template_id = await make_sms_template(client, key, "flash")
    for n in range(LISTS):
        made = await shop.call("POST", "/v1/lists", 201, json={"name": f"list {n}", "default_region": "US"})
        shop.list_ids.append(made["id"])
    return shop


@settings(
    max_examples=12,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: an example costs seconds
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps_st)
async def test_no_sms_reaches_an_address_suppressed_when_the_campaign_runs(
    client: TestClient, make_key: KeyMaker, steps: list[Step]
) -> None:
    # each example opens its own workspace and stand-in: function-scoped fixtures outlive the examples
    runner, url = await start_fake_sms(FakeSmsConfig(seed=8, intermediate_callbacks=False))
    try:
        shop = await _open_shop(client, make_key, url)
        for step in steps:
            await shop.do(step)
        event(f"people on the lists at the end: {min(sum(map(len, shop.model.lists)), 6)}+")
        event(f"suppressions at the end: {min(len(shop.model.suppressions), 3)}+")
    finally:
        await runner.cleanup()
