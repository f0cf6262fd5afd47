"""Shared limits against the real Redis: caps match the reference rule, rates and budgets hold under races."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dispatcher.core.capping import CapPolicy, cap_decision
from dispatcher.errors import InputError, UnavailableError
from dispatcher.pipeline.budget import Budget
from dispatcher.pipeline.limits import CapRequest, ContactChannel, FrequencyCaps, Sent
from dispatcher.pipeline.queue import connect_queue
from dispatcher.pipeline.throughput import RateLimiter

NY = "America/New_York"
DEFAULT = CapPolicy()


@pytest.fixture
async def clients(clean_redis: str) -> AsyncIterator[list[Redis]]:
    """Three separate connection pools: three workers as far as Redis can tell."""
    made = [Redis.from_url(clean_redis) for _ in range(3)]
    yield made
    for client in made:
        await client.aclose()


@pytest.fixture
def redis(clients: list[Redis]) -> Redis:
    return clients[0]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def ask(
    send_id: str, at: datetime, contact: str = "c1", policy: CapPolicy = DEFAULT, zone: str = NY
) -> CapRequest:
    return CapRequest(contact_id=contact, channel="sms", send_id=send_id, at=at, zone=zone, policy=policy)


# --- frequency caps: fixed cases -------------------------------------------------------------------------


async def test_daily_cap_counts_the_contacts_local_day(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    # 23:30 and 00:30 in New York: two local days, one UTC day.
    late, early, later = utc(2026, 1, 6, 4, 30), utc(2026, 1, 6, 5, 30), utc(2026, 1, 6, 20)
    assert await caps.reserve([ask("a", late), ask("b", early), ask("c", later)]) == [True, True, False]


async def test_rolling_window_is_half_open(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    first = utc(2026, 1, 1, 15)
    days = [ask(f"d{day}", first + timedelta(days=day)) for day in range(4)]
    assert await caps.reserve(days) == [True, True, True, False]
    # Exactly seven days after the first send it no longer counts; a second earlier it still did.
    week = first + timedelta(days=7)
    assert await caps.reserve([ask("early", week - timedelta(seconds=1))]) == [False]
    assert await caps.reserve([ask("week", week)]) == [True]


async def test_zero_cap_forbids_the_channel(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    policies = [CapPolicy(per_local_day=0), CapPolicy(per_rolling_days=0)]
    assert await caps.reserve([ask(f"z{i}", utc(2026, 1, 1), policy=p) for i, p in enumerate(policies)]) == [
        False,
        False,
    ]


async def test_retried_batch_gets_the_same_answers_without_double_counting(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    at = utc(2026, 2, 2, 15)
    two_a_day = CapPolicy(per_local_day=2)
    batch = [ask(f"s{i}", at + timedelta(minutes=i), policy=two_a_day) for i in range(4)]
    assert await caps.reserve(batch) == [True, True, False, False]
    assert await caps.reserve(batch) == [True, True, False, False]
    assert await caps.reserve(list(reversed(batch))) == [False, False, True, True]
    assert await redis.zcard("cap:{sms:c1}:r") == 2
    assert await redis.keys("cap:{sms:c1}:*") == [b"cap:{sms:c1}:r"]  # one key per contact and channel


async def test_release_frees_the_slot_once(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    at = utc(2026, 2, 2, 15)
    assert await caps.reserve([ask("a", at)]) == [True]
    assert await caps.reserve([ask("b", at)]) == [False]
    assert await caps.release([ask("a", at)]) == 1
    assert await caps.release([ask("a", at)]) == 0
    assert await caps.reserve([ask("b", at)]) == [True]


async def test_keys_expire_when_they_stop_mattering(redis: Redis) -> None:
    caps = FrequencyCaps(redis, horizon_days=10)
    assert await caps.reserve([ask("a", datetime.now(UTC))]) == [True]
    assert 11 * 86_400 - 5 <= await redis.ttl("cap:{sms:c1}:r") <= 11 * 86_400


@pytest.mark.parametrize(
    "request_",
    [
        ask("", utc(2026, 1, 1)),
        ask("x", utc(2026, 1, 1), contact="a:b"),
        ask("x", utc(2026, 1, 1), zone="Mars/Olympus"),
        ask("x", datetime(2026, 1, 1)),
        ask("x", utc(2026, 1, 1), policy=CapPolicy(rolling_days=40)),
    ],
    ids=["no-send-id", "colon-in-contact", "unknown-zone", "naive-time", "window-past-horizon"],
)
async def test_bad_requests_are_refused_before_touching_redis(redis: Redis, request_: CapRequest) -> None:
    with pytest.raises(InputError):
        await FrequencyCaps(redis).reserve([ask("ok", utc(2026, 1, 1)), request_])
    assert await redis.dbsize() == 0


async def test_works_over_the_arq_pool(clean_redis: str) -> None:
    pool = await connect_queue(clean_redis, check_policy=False)
    try:
        assert await FrequencyCaps(pool).reserve([ask("a", utc(2026, 1, 1)), ask("b", utc(2026, 1, 1))]) == [
            True,
            False,
        ]
    finally:
        await pool.aclose()


# --- frequency caps: the Redis scripts equal the reference rule ---------------------------------------------

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Apia"]
POLICIES = [
    DEFAULT,
    CapPolicy(per_local_day=2, per_rolling_days=3, rolling_days=2),
    CapPolicy(per_local_day=1, per_rolling_days=6, rolling_days=30),
    CapPolicy(per_local_day=3, per_rolling_days=4, rolling_days=1),
    CapPolicy(per_local_day=0),
]
STEPS_MIN = [1, 20, 90, 400, 900, 1_440, 3_000]


class Model:
    """The accepted history per contact and channel, judged by :func:`cap_decision`."""

    def __init__(self) -> None:
        self.accepted: dict[ContactChannel, dict[str, CapRequest]] = defaultdict(dict)

    def reserve(self, items: Sequence[CapRequest]) -> list[bool]:
        answers = []
        for item in items:
            done = self.accepted[(item.channel, str(item.contact_id))]
            ok = item.send_id in done or cap_decision(
                [req.at for req in done.values()], item.at, item.zone, item.policy
            )
            if ok:
                done.setdefault(item.send_id, item)
            answers.append(ok)
        return answers

    async def ledger(self, pairs: Sequence[ContactChannel]) -> Mapping[ContactChannel, Sequence[Sent]]:
        return {pair: [(send_id, req.at) for send_id, req in self.accepted[pair].items()] for pair in pairs}


def _random_batch(rng: random.Random, clock: datetime, zones: dict[str, str], step: int) -> list[CapRequest]:
    batch = []
    for index in range(rng.randint(1, 12)):
        contact = rng.choice(sorted(zones))
        # Workers stamp sends a little out of order; ids repeat when a batch is retried later.
        at = clock + timedelta(minutes=rng.randrange(-60, 60))
        send_id = f"s{rng.randrange(step + 1)}-{index}" if rng.random() < 0.2 else f"s{step}-{index}"
        channel = rng.choice(["sms", "email"])
        batch.append(CapRequest(contact, channel, send_id, at, zones[contact], rng.choice(POLICIES)))
    return batch


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("seeded", [False, True], ids=["plain", "restarts"])
async def test_redis_agrees_with_the_reference_rule(redis: Redis, seed: int, seeded: bool) -> None:
    rng = random.Random(seed)
    model = Model()
    caps = FrequencyCaps(redis, history=model.ledger if seeded else None)
    zones = {f"c{i}": rng.choice(ZONES) for i in range(3)}
    clock = utc(2026, 3, 20) + timedelta(minutes=rng.randrange(20_000))  # spans the spring DST changes
    for step in range(80):
        clock += timedelta(minutes=rng.choice(STEPS_MIN))
        batch = _random_batch(rng, clock, zones, step)
        expected = model.reserve(batch)
        assert await caps.reserve(batch) == expected, f"step {step}"
        assert await caps.reserve(batch) == expected, f"retry of step {step}"
        if rng.random() < 0.2:
            _pair, done = rng.choice(sorted(model.accepted.items()))
            if done:
                gone = done.pop(rng.choice(sorted(done)))
                # After a restart the contact may not be seeded yet: nothing to release, the ledger forgot it.
                # A send older than the horizon may have been pruned by a later reservation already.
                pruned = gone.at < clock - timedelta(days=caps.horizon_days)
                assert await caps.release([gone]) == 1 or seeded or pruned
        if seeded and rng.random() < 0.15:
            await redis.flushdb()  # a Redis restart: the ledger re-seeds it


# --- frequency caps: races and restarts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "winners"),
    [(CapPolicy(per_local_day=2), 2), (CapPolicy(per_local_day=9, per_rolling_days=5), 5)],
    ids=["daily", "rolling"],
)
async def test_racing_workers_get_exactly_the_cap(
    clients: list[Redis], policy: CapPolicy, winners: int
) -> None:
    at = utc(2026, 4, 1, 15)
    workers = [FrequencyCaps(client) for client in clients]

    async def one(task: int) -> list[bool]:
        # One instant for all: the reference rule does not count sends stamped later than the one it judges.
        batch = [ask(f"t{task}-{i}", at, policy=policy) for i in range(3)]
        return await workers[task % 3].reserve(batch)

    answers = await asyncio.gather(*(one(task) for task in range(60)))
    assert sum(sum(batch) for batch in answers) == winners
    assert await clients[0].zcard("cap:{sms:c1}:r") == winners


async def test_unseeded_contacts_are_read_from_the_ledger_once(redis: Redis) -> None:
    asked: list[Sequence[ContactChannel]] = []
    sent_before = utc(2026, 5, 1, 15)

    async def ledger(pairs: Sequence[ContactChannel]) -> Mapping[ContactChannel, Sequence[Sent]]:
        asked.append(pairs)
        return {("sms", "c1"): [("old", sent_before)]}

    caps = FrequencyCaps(redis, history=ledger)
    batch = [ask("new", sent_before + timedelta(hours=1)), ask("x", sent_before, contact="c2")]
    assert await caps.reserve(batch) == [False, True]
    assert await caps.reserve([ask("y", sent_before + timedelta(days=1), contact="c2")]) == [True]
    assert asked == [[("sms", "c1"), ("sms", "c2")]]
    await redis.flushdb()
    assert await caps.reserve([ask("new", sent_before + timedelta(hours=2))]) == [False]
    assert len(asked) == 2


async def test_seed_history_restores_caps_after_a_restart(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    at = utc(2026, 6, 10, 15)
    history = [("a", at - timedelta(days=3)), ("b", at - timedelta(days=1)), ("c", at - timedelta(hours=2))]
    assert await caps.reserve([ask(send_id, when) for send_id, when in history]) == [True, True, True]
    await redis.flushdb()
    await caps.seed_history("c1", "sms", history)
    await caps.seed_history("c1", "sms", history)  # repeating it changes nothing
    assert await redis.zcard("cap:{sms:c1}:r") == 3
    assert await caps.reserve([ask("d", at + timedelta(days=2))]) == [False]  # 3 in the last 7 days
    assert await caps.reserve([ask("b", at - timedelta(days=1))]) == [True]  # its own retry still passes


async def test_scripts_reload_after_script_flush(redis: Redis) -> None:
    caps, limiter, budget = FrequencyCaps(redis), RateLimiter(redis), Budget(redis)
    at = utc(2026, 7, 1, 15)
    await budget.seed("k1", 0)
    assert await caps.reserve([ask("a", at)]) == [True]
    assert (await limiter.acquire("p", 1, 10, 5))[0] == 1
    await redis.script_flush()
    assert await caps.reserve([ask("a", at), ask("b", at)]) == [True, False]
    await redis.script_flush()
    assert (await limiter.acquire("p", 1, 10, 5))[0] == 1
    await redis.script_flush()
    assert await budget.spend("k1", 5, 10)


async def test_a_failing_script_leaves_the_connection_in_step(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    at = utc(2026, 7, 1, 15)
    await redis.set("cap:{sms:c2}:r", "not a sorted set")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await caps.reserve([ask("a", at), ask("b", at, contact="c2"), ask("c", at, contact="c3")])
    assert await caps.reserve([ask("d", at), ask("e", at, contact="c3"), ask("f", at, contact="c4")]) == [
        False,
        False,
        True,
    ]


async def test_a_cancelled_batch_does_not_shift_later_replies(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    at = utc(2026, 7, 1, 15)
    big = [ask(f"s{i}", at, contact=f"c{i}") for i in range(3_000)]
    for delay in (0, 0.001, 0.005):
        assert await caps.reserve([ask("first", at, contact="old")]) == [True]
        task = asyncio.create_task(caps.reserve(big))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await caps.reserve([ask("again", at, contact="old"), ask("x", at, contact="new")]) == [
            False,
            True,
        ]
        await redis.flushdb()


# --- rate limiter -----------------------------------------------------------------------------------------

T0 = 1_800_000_000_000  # an arbitrary server clock in ms, passed in for exact arithmetic


@pytest.mark.parametrize(
    ("rate", "burst", "calls"),
    [
        # (ms after T0, tokens asked, tokens granted, seconds to wait)
        (10, 5, [(0, 8, 5, 0.3), (100, 8, 1, 0.5), (100, 1, 0, 0.1), (2_000, 20, 5, 0.5)]),
        (0.5, 1, [(0, 1, 1, 0.0), (1_000, 1, 0, 1.0), (2_000, 1, 1, 0.0), (2_000, 0, 0, 0.0)]),
        (1_000, 50, [(0, 30, 30, 0.0), (0, 30, 20, 0.01), (5, 30, 5, 0.025), (10_000, 50, 50, 0.0)]),
    ],
    ids=["ten-per-second", "one-per-two-seconds", "fast"],
)
async def test_token_arithmetic(
    redis: Redis, rate: float, burst: int, calls: list[tuple[int, int, int, float]]
) -> None:
    limiter = RateLimiter(redis)
    for offset, asked, granted, wait in calls:
        got, waited = await limiter.acquire("provider:fake", asked, rate, burst, now_ms=T0 + offset)
        assert (got, waited) == (granted, pytest.approx(wait, abs=1e-5)), offset


async def _server_seconds(redis: Redis) -> float:
    seconds, micros = await redis.time()
    return float(seconds) + micros / 1_000_000


async def test_racing_workers_never_pass_the_rate(clients: list[Redis]) -> None:
    rate, burst = 200.0, 20
    limiters = [RateLimiter(client) for client in clients]
    start = await _server_seconds(clients[0])
    deadline = asyncio.get_running_loop().time() + 1.5

    async def worker(limiter: RateLimiter) -> int:
        taken = 0
        while asyncio.get_running_loop().time() < deadline:
            granted, wait = await limiter.acquire("sender:+15550100", 7, rate, burst)
            taken += granted
            await asyncio.sleep(min(wait, 0.05))
        return taken

    totals = await asyncio.gather(*(worker(limiters[i % 3]) for i in range(30)))
    elapsed = await _server_seconds(clients[0]) - start
    assert burst < sum(totals) <= rate * elapsed + burst


async def test_a_back_off_pauses_every_worker(clients: list[Redis]) -> None:
    one, other = RateLimiter(clients[0]), RateLimiter(clients[1])
    assert await other.blocked_for("provider:twilio") == 0
    assert 4 < await one.block("provider:twilio", 5) <= 5
    assert 4 < await one.block("provider:twilio", 1) <= 5  # a shorter Retry-After does not cut it short
    assert 4 < await other.blocked_for("provider:twilio") <= 5
    granted, wait = await other.acquire("provider:twilio", 10, 100, 10)
    assert granted == 0
    assert 4 < wait <= 5
    assert (await other.acquire("provider:other", 10, 100, 10))[0] == 10


@pytest.mark.parametrize(
    ("key", "n", "rate", "burst"),
    [
        ("p", -1, 1, 1),
        ("p", 1, 0, 1),
        ("p", 1, float("inf"), 1),
        ("p", 1, 1, 0),
        ("{p}", 1, 1, 1),
        ("", 1, 1, 1),
    ],
)
async def test_bad_rate_arguments_are_refused(
    redis: Redis, key: str, n: int, rate: float, burst: int
) -> None:
    with pytest.raises(InputError):
        await RateLimiter(redis).acquire(key, n, rate, burst)


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
async def test_bad_back_offs_are_refused(redis: Redis, seconds: float) -> None:
    with pytest.raises(InputError):
        await RateLimiter(redis).block("p", seconds)


# --- budget -----------------------------------------------------------------------------------------------


async def test_racing_spenders_never_pass_the_cap(clients: list[Redis]) -> None:
    budgets = [Budget(client) for client in clients]
    assert await budgets[0].seed(42, 0)
    answers = await asyncio.gather(*(budgets[i % 3].spend(42, 7_000, 100_000) for i in range(50)))
    assert sum(answers) == 14
    assert await budgets[1].spent(42) == 98_000


async def test_a_missing_counter_is_never_read_as_zero(redis: Redis) -> None:
    with pytest.raises(UnavailableError):
        await Budget(redis).spend(7, 1, 100)
    assert await Budget(redis).spent(7) is None
    loads: list[str] = []

    async def ledger_spend(campaign_id: str) -> int:
        loads.append(campaign_id)
        return 95

    budget = Budget(redis, spent=ledger_spend)
    assert not await budget.spend(7, 6, 100)
    assert await budget.spend(7, 5, 100)
    assert await budget.spent(7) == 100
    assert loads == ["7"]
    assert not await budget.seed(7, 0)  # seeding never overwrites a live counter
    assert await budget.spent(7) == 100


async def test_refunds_give_back_and_never_go_negative(redis: Redis) -> None:
    budget = Budget(redis)
    await budget.seed(1, 10)
    await budget.refund(1, 4)
    assert await budget.spent(1) == 6
    await budget.refund(1, 50)
    assert await budget.spent(1) == 0
    await budget.refund(2, 5)  # a counter lost to a restart stays lost until the ledger seeds it
    assert await budget.spent(2) is None
    await budget.forget(1)
    assert await budget.spent(1) is None


@pytest.mark.parametrize("amount", [-1, 1.5, True])
async def test_money_is_whole_micro_units(redis: Redis, amount: int) -> None:
    await Budget(redis).seed(1, 0)
    with pytest.raises(InputError):
        await Budget(redis).spend(1, amount, 100)
