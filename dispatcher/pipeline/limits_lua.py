"""The Lua side of the limits shared in Redis (caps, throughput, budget), and a runner that survives
``SCRIPT FLUSH``.

Each script touches only keys of one Redis Cluster hash tag, so it runs atomically on one node. Scripts
are sent by SHA; a server that forgot them (restart, ``SCRIPT FLUSH``, failover to a replica that never
saw ``SCRIPT LOAD``) answers NOSCRIPT, and the runner loads the script and tries again once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from dispatcher.errors import InputError

Call = tuple[Sequence[str], Sequence[str | int]]
"""One script invocation: ``(keys, args)``."""


def tagged_key(prefix: str, key: str | int) -> str:
    """``prefix:{key}``: the braces make ``key`` the Redis Cluster hash tag of every key a script touches."""
    text = str(key)
    if not text or any(char in text for char in "{} "):
        raise InputError(f"limit key {text!r} must be non-empty and free of braces and spaces")
    return f"{prefix}:{{{text}}}"


CAP_RESERVE = """
-- KEYS: rolling zset, seed marker (one hash tag: one contact on one channel)
-- ARGV: member, at_ms, prune_ms, floor_ms, day_start_ms, day_end_ms, day_limit, rolling_limit, rolling_ttl,
--       require_seed
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if ARGV[10] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCOUNT', KEYS[1], ARGV[5], '(' .. ARGV[6]) >= tonumber(ARGV[7]) then return 0 end
if redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[4], ARGV[2]) >= tonumber(ARGV[8]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[9])
if ARGV[10] == '1' then redis.call('EXPIRE', KEYS[2], ARGV[9]) end
return 1
"""

# Sends from the ledger are added with NX: a reservation already made keeps its own time.
CAP_SEED = """
-- KEYS: rolling zset[, seed marker]; ARGV: rolling_ttl, then (member, at_ms) per send.
-- Without the marker key the sends are added but the contact is not declared complete (a bulk seed
-- that may meet the same contact again in its next batch).
for i = 2, #ARGV, 2 do redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i]) end
if #ARGV > 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if #KEYS > 1 then redis.call('SET', KEYS[2], '1', 'EX', ARGV[1]) end
return (#ARGV - 1) / 2
"""

# A contact the batch found unseeded: its sends from the ledger are written back and its reservation made
# in the same call (one round trip instead of a seeding pass and a second reserving pass).
_SEED_FIRST = """
-- KEYS: as CAP_RESERVE; ARGV: the 10 of CAP_RESERVE, then (member, at_ms) per send from the ledger
for i = 11, #ARGV, 2 do redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i]) end
if #ARGV > 10 then redis.call('EXPIRE', KEYS[1], ARGV[9]) end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[9])
"""
CAP_SEED_RESERVE = _SEED_FIRST + CAP_RESERVE

CAP_RELEASE = """
-- KEYS: rolling zset; ARGV: member
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

# Redis holds the ledger's whole cap history (see limits.FrequencyCaps): the epoch names this Redis's
# lifetime, set once by the first bulk seed; the seed declares completion only if the epoch it started
# under is still there (a restart during the seed would have taken it).
CAP_COMPLETE = """
-- KEYS: epoch, complete; ARGV: the epoch the seed started under
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""

# GCRA with the bucket kept as one number, the theoretical arrival time (TAT) in microseconds of the
# server clock: a full bucket has TAT <= now, and each token moves TAT one emission interval ahead.
RATE_ACQUIRE = """
-- KEYS: tat, block; ARGV: n, rate (tokens/s), burst, now_us ('' = server TIME)
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then return {0, ttl * 1000} end
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[4])
end
local n, burst = tonumber(ARGV[1]), tonumber(ARGV[3])
local interval = 1000000 / tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local granted = math.min(n, math.max(0, math.floor((now + burst * interval - tat) / interval)))
tat = math.ceil(tat + granted * interval)
local wanted = math.min(n - granted, burst)
local wait = 0
if wanted > 0 then wait = math.max(0, math.ceil(tat + wanted * interval - burst * interval - now)) end
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return {granted, wait}
"""

RATE_BLOCK = """
-- KEYS: block; ARGV: ms. A shorter back-off never cuts a longer one short.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return redis.call('PTTL', KEYS[1])
"""

BUDGET_SPEND = """
-- KEYS: spent counter; ARGV: amount, cap (integer micro-units). -1: counter missing, seed it first.
local spent = redis.call('GET', KEYS[1])
if not spent then return -1 end
if tonumber(spent) + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
return 1
"""

BUDGET_REFUND = """
-- KEYS: spent counter; ARGV: amount. A missing counter stays missing: the ledger will re-seed it.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local spent = redis.call('DECRBY', KEYS[1], ARGV[1])
if spent < 0 then redis.call('SET', KEYS[1], '0', 'KEEPTTL') return 0 end
return spent
"""


class Script:
    """A Lua script called by SHA, loaded on first NOSCRIPT."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self.header = b"$7\r\nEVALSHA\r\n$40\r\n" + self.sha.encode() + b"\r\n"

    async def load(self, redis: Redis) -> None:
        sha = await redis.script_load(self.source)
        if (sha.decode() if isinstance(sha, bytes) else sha) != self.sha:
            raise RuntimeError("Redis hashed a limits script differently than we did")

    async def run(self, redis: Redis, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        words = _words(keys, args)
        try:
            return await redis.evalsha(self.sha, len(keys), *words)  # type: ignore[misc]
        except NoScriptError:
            await self.load(redis)
            return await redis.evalsha(self.sha, len(keys), *words)  # type: ignore[misc]

    async def run_many(self, redis: Redis, calls: Sequence[Call]) -> list[Any]:
        """All ``calls`` in one non-transactional pipeline; on NOSCRIPT, load and re-run the whole batch.

        Re-running calls that did succeed is only correct for idempotent scripts: the caller vouches.
        """
        return await self.run_encoded(redis, [_command(self.header, keys, args) for keys, args in calls])

    async def run_encoded(self, redis: Redis, commands: Sequence[bytes]) -> list[Any]:
        """:meth:`run_many` for commands already in the protocol (built with :attr:`header` by a caller that
        shares most of their bytes across a batch)."""
        results = await self._pipeline(redis, commands)
        if any(isinstance(result, NoScriptError) for result in results):
            await self.load(redis)
            results = await self._pipeline(redis, commands)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _pipeline(self, redis: Redis, commands: Sequence[bytes]) -> list[Any]:
        # redis-py packs pipelined commands in pure Python at about half the speed of this: the bytes are
        # written by hand and sent on one pooled connection, and the replies read back in order.
        if not commands:
            return []
        payload = b"".join(commands)
        pool = redis.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(payload, check_health=True)
            results: list[Any] = []
            for _ in commands:
                try:
                    results.append(await connection.read_response())
                except ResponseError as error:  # the reply was read whole: the stream stays in step
                    results.append(error)
        except BaseException:
            # Replies left unread (cancelled, connection lost) would be handed to the next user.
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        return results


def _command(header: bytes, keys: Sequence[str], args: Sequence[str | int]) -> bytes:
    """One EVALSHA in the Redis protocol (RESP): an array of bulk strings."""
    words = [str(len(keys)), *keys, *[str(arg) for arg in args]]
    return b"*%d\r\n%s%s" % (len(words) + 2, header, bulk(words))


def bulk(words: Sequence[str]) -> bytes:
    """Words as consecutive RESP bulk strings (the tail of a command)."""
    encoded = [word.encode() for word in words]
    return b"".join([b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded])


def _words(keys: Sequence[str], args: Sequence[str | int]) -> list[str]:
    return [*keys, *(str(arg) for arg in args)]
