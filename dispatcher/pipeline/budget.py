"""Campaign budgets shared by every worker on every machine, kept in Redis.

Budgets are integer micro-unit counters: a spend is reserved only if it keeps the total within the cap. A
missing counter (a new campaign, or a Redis restart) is never read as zero: it is seeded from the ledger's
spend with ``SET NX`` (:meth:`Budget.seed`, or the ``spent`` loader), so two workers seeding at once agree. A
reserved spend whose send then fails is given back with :meth:`Budget.refund`; a crash between the two only
over-counts, which stops early, never late.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from dispatcher.errors import InputError, UnavailableError
from dispatcher.pipeline import limits_lua as lua

_SPEND = lua.Script(lua.BUDGET_SPEND)
_REFUND = lua.Script(lua.BUDGET_REFUND)

SpentLoader = Callable[[str], Awaitable[int]]


def _micros(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be a whole, non-negative number of micro-units")
    return value


class Budget:
    """The fast shared gate on a campaign's spend; the database ledger's costs are the truth."""

    def __init__(self, redis: Redis, *, spent: SpentLoader | None = None) -> None:
        self._redis = redis
        self._spent = spent

    async def spend(self, campaign_id: str | int, amount_micros: int, cap_micros: int) -> bool:
        """Reserve ``amount_micros`` if the campaign's total stays within ``cap_micros``."""
        args = [_micros(amount_micros, "amount"), _micros(cap_micros, "cap")]
        key = lua.tagged_key("budget", campaign_id)
        answer = int(await _SPEND.run(self._redis, [key], args))
        if answer == -1 and self._spent is not None:
            await self.seed(campaign_id, await self._spent(str(campaign_id)))
            answer = int(await _SPEND.run(self._redis, [key], args))
        if answer == -1:
            raise UnavailableError(
                f"the budget counter of campaign {campaign_id} is not seeded from the ledger"
            )
        return answer == 1

    async def refund(self, campaign_id: str | int, amount_micros: int) -> None:
        """Give back a reserved spend whose message was not sent after all."""
        await _REFUND.run(
            self._redis, [lua.tagged_key("budget", campaign_id)], [_micros(amount_micros, "amount")]
        )

    async def seed(self, campaign_id: str | int, spent_micros: int) -> bool:
        """Set the counter from the ledger unless it exists; True if this call set it."""
        key = lua.tagged_key("budget", campaign_id)
        return bool(await self._redis.set(key, _micros(spent_micros, "spent"), nx=True))

    async def spent(self, campaign_id: str | int) -> int | None:
        """The reserved total, or None when the counter is missing (not seeded)."""
        value = await self._redis.get(lua.tagged_key("budget", campaign_id))
        return None if value is None else int(value)

    async def forget(self, campaign_id: str | int) -> None:
        """Drop the counter of a finished campaign."""
        await self._redis.delete(lua.tagged_key("budget", campaign_id))
