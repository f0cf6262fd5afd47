"""Frequency caps shared by every worker on every machine, kept in Redis (send rates and budgets, the other
shared limits, are in :mod:`dispatcher.pipeline.throughput` and :mod:`dispatcher.pipeline.budget`).

Each check is one Lua script, so it is atomic however many workers race; scripts are called by SHA, batched
in one pipelined round trip where the engine has a batch (caps), and reloaded on NOSCRIPT.

**Caps** (:class:`FrequencyCaps`) follow the key scheme of :mod:`dispatcher.core.capping` with two
additions. Sends older than the window are pruned against a fixed ``horizon_days`` (the longest rolling
window any policy may use, plus a day of slack), not against the current policy's window, so a 7-day
campaign cannot erase history a 30-day campaign still counts, nor can a reservation stamped a little
earlier than the last one find its history pruned. And a second key per contact and channel,
``cap:{<channel>:<contact>}:s``, marks the contact's state as *seeded*.

**Redis restarts.** The database ledger is the truth; Redis only holds a fast copy. After a restart
without persistence (or a ``FLUSHALL``) every cap would silently start from zero. Given a ``history``
loader, :class:`FrequencyCaps` refuses to decide for a contact without the seed marker: the batch's
unseeded contacts are read from the ledger in one call, written back with their sends (:meth:`seed_history`),
and their reservations re-run. A contact's marker lives as long as its history may matter (the horizon)
and is refreshed by each reservation. The loader must return every send the ledger does not know to have
failed (``sending``, ``sent``, ``delivered``). The residual window: a reservation made just before the
restart whose ledger row is not yet marked ``sending`` is forgotten; marking rows ``sending`` right after
reserving keeps it to one batch.

**Whole-ledger seeding.** Contacts new to Redis (most of a campaign to people not messaged within the
horizon) would each cost that ledger read and a second round trip. So a bulk seed
(:mod:`dispatcher.pipeline.cap_seeding`) writes every send of the horizon into Redis once per Redis
lifetime, then declares the history *complete*: ``cap:{all}:epoch`` names this Redis's lifetime (a random
token set once; a restart without persistence loses it), and ``cap:{all}:complete`` is set to that token
only if it is still there when the seed ends. While both agree, a contact without a marker simply has no
history, and reservations skip the marker check. A batch reads the two keys before reserving and the epoch
again after: a restart in between fails the batch, to be retried, rather than trusting an empty Redis.

**Releases.** :meth:`FrequencyCaps.release` undoes a reservation for a message that never reached the
recipient for sure: dropped before the provider call (campaign paused or cancelled, window closed,
suppressed, budget or rate refused it) or rejected synchronously by the provider as permanent (invalid
number). A transient failure keeps its reservation (the retry reuses the send id and is let through), and
so does anything handed off, even when a receipt later says undelivered: it may have arrived, and a cap is
a promise to the recipient, so doubt counts as sent.

"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from redis.asyncio import Redis

from dispatcher.core.capping import CapPolicy, cap_keys, epoch_ms
from dispatcher.errors import InputError, UnavailableError
from dispatcher.pipeline import limits_lua as lua

_DAY_S = 86_400
_RESERVE = lua.Script(lua.CAP_RESERVE)
_SEED = lua.Script(lua.CAP_SEED)
_SEED_RESERVE = lua.Script(lua.CAP_SEED_RESERVE)
_RELEASE = lua.Script(lua.CAP_RELEASE)
_COMPLETE = lua.Script(lua.CAP_COMPLETE)
# a reservation is 15 words: EVALSHA, the SHA, the key count (2), 2 keys, the send id and 9 shared arguments
_RESERVE_HEAD = b"*15\r\n" + _RESERVE.header + b"$1\r\n2\r\n"

Sent = tuple[str, datetime]
"""A send from the ledger: ``(send_id, at)``."""
ContactChannel = tuple[str, str]
"""``(channel, str(contact_id))``."""
HistoryLoader = Callable[[Sequence[ContactChannel]], Awaitable[Mapping[ContactChannel, Sequence[Sent]]]]


@dataclass(frozen=True, slots=True)
class CapRequest:
    """One message that wants to go: ``send_id`` is stable across retries (e.g. ``<campaign>:<contact>``)."""

    contact_id: str | int
    channel: str
    send_id: str
    at: datetime
    zone: str
    policy: CapPolicy = field(default_factory=CapPolicy)


_Shape = tuple[str | int, ...]
"""What a reservation's arguments share across contacts: every argument after the send id."""
_ShapeKey = tuple[datetime, str, CapPolicy]
_Shaped = tuple[_Shape, bytes]
"""A shape's arguments, and the same in the protocol's bytes."""
# Redis's lifetime and whether it holds the ledger's whole cap history (see the module docstring); one hash
# tag, so one node answers both, and no contact's tag can collide with it (those carry a colon).
EPOCH_KEY = "cap:{all}:epoch"
COMPLETE_KEY = "cap:{all}:complete"
SEEDING_KEY = "cap:{all}:seeding"
_BULK = 2_000  # contacts per pipelined round trip of a bulk seed


_UNTAGGABLE = re.compile(r"[{}: ]")  # a regex scan: this runs for every message of every chunk


def _contact_tag(contact_id: str | int, channel: str) -> str:
    """``cap:{<channel>:<contact>}``, refusing what :func:`~dispatcher.core.capping.cap_keys` refuses."""
    text = str(contact_id)
    if not channel or _UNTAGGABLE.search(channel) or _UNTAGGABLE.search(text):
        raise InputError("channel and contact id must be non-empty and free of braces, colons and spaces")
    return f"cap:{{{channel}:{text}}}"


class FrequencyCaps:
    """Per-contact, per-channel caps across campaigns; ``history`` reads the ledger after a Redis restart."""

    def __init__(self, redis: Redis, *, history: HistoryLoader | None = None, horizon_days: int = 31) -> None:
        if horizon_days < 1:
            raise InputError("the cap horizon must be at least one day")
        self._redis = redis
        self._history = history
        self.horizon_days = horizon_days
        self._ttl = (horizon_days + 1) * _DAY_S

    async def reserve(self, items: Sequence[CapRequest]) -> list[bool]:
        """Reserve each item in order, one round trip; True where it stays within its caps.

        Contacts found unseeded cost one ledger read for the batch and one more round trip, in which
        each is seeded and reserved by one script call; none is unseeded while Redis holds the ledger's
        whole history (:meth:`complete_epoch`)."""
        trusted = await self.complete_epoch() if self._history is not None else None
        require = self._history is not None and trusted is None
        shapes: dict[_ShapeKey, _Shaped] = {}
        commands = [self._reserve_command(item, shapes, require) for item in items]
        answers = [int(answer) for answer in await _RESERVE.run_encoded(self._redis, commands)]
        if trusted is not None and await self._epoch() != trusted:
            # Redis restarted between the check and the reservations: they were judged on an empty set
            raise UnavailableError("Redis restarted while frequency caps were being reserved; retry")
        unseeded = [index for index, answer in enumerate(answers) if answer == -1]
        if unseeded:
            seeds = await self._seeds_from_ledger([items[index] for index in unseeded])
            merged: list[lua.Call] = []
            seeding: dict[_ShapeKey, _Shaped] = {}  # these calls require the marker whatever the batch did
            for index in unseeded:
                keys, args = self._reserve_call(items[index], seeding, require=True)
                sends = seeds[(items[index].channel, str(items[index].contact_id))]
                merged.append((keys, [*args, *sends]))
            again = await _SEED_RESERVE.run_many(self._redis, merged)
            for index, answer in zip(unseeded, again, strict=True):
                answers[index] = int(answer)
        if -1 in answers:
            raise UnavailableError("Redis lost frequency-cap state while it was being re-seeded; retry")
        return [answer == 1 for answer in answers]

    async def release(self, items: Sequence[CapRequest]) -> int:
        """Undo reservations (same requests as reserved); returns how many existed."""
        calls: list[lua.Call] = [
            ([_contact_tag(item.contact_id, item.channel) + ":r"], [item.send_id]) for item in items
        ]
        return sum(int(removed) > 0 for removed in await _RELEASE.run_many(self._redis, calls))

    async def seed_history(self, contact_id: str | int, channel: str, sends: Sequence[Sent]) -> None:
        """Write a contact's sends from the ledger back into Redis and mark it seeded; safe to repeat."""
        keys, args = self._seed_call(contact_id, channel, sends, complete=True)
        await _SEED.run(self._redis, keys, args)

    # -- the whole ledger at once: after a restart, Redis learns every contact's history in one pass --

    async def complete_epoch(self) -> bytes | None:
        """This Redis's epoch when it holds every send of the ledger within the horizon, else None."""
        epoch, complete = await self._redis.mget(EPOCH_KEY, COMPLETE_KEY)
        return epoch if epoch is not None and epoch == complete else None

    async def open_epoch(self) -> bytes:
        """The epoch a bulk seed works under: the current one, or a new one if Redis has none."""
        await self._redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
        epoch = await self._epoch()
        if epoch is None:
            raise UnavailableError("Redis lost the cap epoch as it was set; retry")
        return epoch

    async def seed_bulk(self, sends: Sequence[tuple[ContactChannel, str, datetime]]) -> int:
        """Add ``((channel, contact), send_id, at)`` sends from the ledger, without declaring any contact
        complete (its other sends may come in a later batch); safe to repeat. Returns the contacts."""
        by_contact: dict[ContactChannel, list[Sent]] = {}
        for contact, send_id, at in sends:
            by_contact.setdefault(contact, []).append((send_id, at))
        calls = [
            self._seed_call(contact_id, channel, found, complete=False)
            for (channel, contact_id), found in by_contact.items()
        ]
        for start in range(0, len(calls), _BULK):
            await _SEED.run_many(self._redis, calls[start : start + _BULK])
        return len(calls)

    async def close_epoch(self, epoch: bytes) -> bool:
        """Declare the history complete, unless Redis restarted (lost ``epoch``) since the seed began."""
        return bool(await _COMPLETE.run(self._redis, [EPOCH_KEY, COMPLETE_KEY], [epoch.decode()]))

    async def _epoch(self) -> bytes | None:
        epoch = await self._redis.get(EPOCH_KEY)
        return None if epoch is None else bytes(epoch)

    # -- building the calls --

    def _reserve_call(self, item: CapRequest, shapes: dict[_ShapeKey, _Shaped], *, require: bool) -> lua.Call:
        tag, (args, _) = self._shaped(item, shapes, require)
        return [tag + ":r", tag + ":s"], [item.send_id, *args]

    def _reserve_command(self, item: CapRequest, shapes: dict[_ShapeKey, _Shaped], require: bool) -> bytes:
        """:meth:`_reserve_call` in the protocol's bytes: a contact costs only its keys and its send id."""
        tag, (_, tail) = self._shaped(item, shapes, require)
        return _RESERVE_HEAD + lua.bulk([tag + ":r", tag + ":s", item.send_id]) + tail

    def _shaped(
        self, item: CapRequest, shapes: dict[_ShapeKey, _Shaped], require: bool
    ) -> tuple[str, _Shaped]:
        """The contact's tag, and what depends only on (time, zone, policy): built once per shape of a batch,
        as arguments and already encoded."""
        self._check(item)
        tag = _contact_tag(item.contact_id, item.channel)
        key = (item.at, item.zone, item.policy)
        found = shapes.get(key)
        if found is None:
            args = self._shape(item, require)
            found = shapes[key] = (args, lua.bulk([str(arg) for arg in args]))
        return tag, found

    def _check(self, item: CapRequest) -> None:
        if not item.send_id:
            raise InputError("a cap reservation needs a send id")
        if item.policy.rolling_days > self.horizon_days:
            raise InputError(f"rolling cap windows longer than {self.horizon_days} days are not supported")

    def _shape(self, item: CapRequest, require: bool) -> _Shape:
        keys = cap_keys("x", item.channel, item.at, item.zone, item.policy)
        prune_ms = keys.at_ms - self._ttl * 1000
        return (
            keys.at_ms,
            prune_ms,
            keys.floor_ms,
            keys.day_start_ms,
            keys.day_end_ms,
            keys.day_limit,
            keys.rolling_limit,
            self._ttl,
            1 if require else 0,
        )

    def _seed_call(
        self, contact_id: str | int, channel: str, sends: Sequence[Sent], *, complete: bool
    ) -> lua.Call:
        tag = _contact_tag(contact_id, channel)
        args: list[str | int] = [self._ttl]
        for send_id, at in sends:
            args += [send_id, epoch_ms(at)]
        return ([tag + ":r", tag + ":s"] if complete else [tag + ":r"]), args

    async def _seeds_from_ledger(self, items: Sequence[CapRequest]) -> dict[ContactChannel, list[str | int]]:
        """Per contact: the ``(member, at_ms)`` pairs that CAP_SEED_RESERVE appends to a reservation, from
        one ledger read for the batch."""
        assert self._history is not None  # only seeded-mode scripts answer -1
        contacts = list(dict.fromkeys((item.channel, str(item.contact_id)) for item in items))
        history = await self._history(contacts)
        seeds: dict[ContactChannel, list[str | int]] = {}
        for contact in contacts:
            pairs: list[str | int] = []
            for send_id, at in history.get(contact, ()):
                pairs += [send_id, epoch_ms(at)]
            seeds[contact] = pairs
        return seeds
