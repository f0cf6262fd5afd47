"""Click, unsubscribe and open tokens are unforgeable, and the click redirect is no open redirect.

The pure readers see 100,000 random and mutated tokens each (all refused) beside the genuine ones (all
accepted). Over HTTP a few forged tokens get 404 and change nothing, and ``/r/{code}`` only ever redirects
to the URL stored for that code, whatever the query string or path says.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.core.links import (
    ALPHABET,
    read_recipient_token,
    read_unsubscribe_token,
    recipient_token,
    unsubscribe_token,
)
from dispatcher.core.opens import message_token, read_message_token
from dispatcher.ops.links import campaign_links
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Event
from dispatcher.storage.contacts import Suppression
from dispatcher.storage.engine import create_engine, session_factory
from tests import inbound_seed

SECRET = "security-test-secret"
CODE = "Ab3xK9"
ATTEMPTS = 100_000
EXTRA_CHARS = ALPHABET + ".-_~%/="


def _mutations(token: str, rng: random.Random) -> list[str]:
    """One-character edits, truncations, extensions, swaps and case flips of a genuine token."""
    index = rng.randrange(len(token))
    char = rng.choice([c for c in EXTRA_CHARS if c != token[index]])
    swapped = list(token)
    other = rng.randrange(len(token))
    swapped[index], swapped[other] = swapped[other], swapped[index]
    return [
        token[:index] + char + token[index + 1 :],
        token[:index] + token[index + 1 :],
        token[:index] + char + token[index:],
        token[: rng.randrange(len(token))],
        token + rng.choice(ALPHABET),
        "".join(swapped),
        token.swapcase(),
        token[::-1],
        " " + token,
        token + "\x00",
    ]


def _random(rng: random.Random, shape: str) -> str:
    """A random string shaped like a token: ``#`` is a base62 character, ``.`` stays a dot."""
    return ".".join("".join(rng.choices(ALPHABET, k=len(part))) for part in shape.split("."))


def _candidates(genuine: list[str], shapes: list[str], rng: random.Random) -> list[str]:
    forged: list[str] = []
    while len(forged) < ATTEMPTS // 2:
        forged += _mutations(rng.choice(genuine), rng)
    while len(forged) < ATTEMPTS:
        forged.append(_random(rng, rng.choice(shapes)))
    issued = set(genuine)
    return [token for token in forged if token not in issued]


def _count_accepted(read: Callable[[str], object], tokens: list[str]) -> int:
    return sum(read(token) is not None for token in tokens)


def test_click_tokens() -> None:
    rng = random.Random(8)
    ids = [rng.randrange(1, 10**12) for _ in range(500)] + [1, 61, 62, 2**63 - 1]
    genuine = [recipient_token(SECRET, CODE, message_id) for message_id in ids]
    assert [read_recipient_token(SECRET, CODE, t) for t in genuine] == ids
    shapes = ["#" * n for n in range(1, 20)]
    forged = _candidates(genuine, shapes, rng)
    assert len(forged) > ATTEMPTS * 0.95
    assert _count_accepted(lambda t: read_recipient_token(SECRET, CODE, t), forged) == 0
    # a genuine token is bound to its link code and to the key
    assert _count_accepted(lambda t: read_recipient_token(SECRET, "Zz9yX8", t), genuine) == 0
    assert _count_accepted(lambda t: read_recipient_token("other-secret", CODE, t), genuine) == 0


def test_unsubscribe_tokens() -> None:
    rng = random.Random(9)
    refs = [
        (rng.randrange(1, 5000), rng.choice(["sms", "email", "all"]), rng.randrange(1, 10**9))
        for _ in range(500)
    ]
    genuine = [unsubscribe_token(SECRET, w, c, s) for w, c, s in refs]
    read = [read_unsubscribe_token(SECRET, t) for t in genuine]
    assert [(r.workspace_id, r.channel, r.subject_id) for r in read if r is not None] == refs
    shapes = ["s##.#####.################", "e#.###.################", "a###.######.###############"]
    forged = _candidates(genuine, shapes, rng)
    # the channel letter is signed too: an SMS token does not unsubscribe the e-mail address
    forged += [("e" if t[0] == "s" else "s") + t[1:] for t in genuine]
    assert _count_accepted(lambda t: read_unsubscribe_token(SECRET, t), forged) == 0
    assert _count_accepted(lambda t: read_unsubscribe_token("other-secret", t), genuine) == 0


def test_open_tokens_and_cross_purpose_use() -> None:
    rng = random.Random(10)
    refs = [(rng.randrange(1, 5000), rng.randrange(1, 10**9)) for _ in range(500)]
    genuine = [message_token(SECRET, w, m) for w, m in refs]
    read = [read_message_token(SECRET, t) for t in genuine]
    assert [(r.workspace_id, r.message_id) for r in read if r is not None] == refs
    shapes = ["##.#####.################", "#.###.################", "###.######.###############"]
    forged = _candidates(genuine, shapes, rng)
    assert _count_accepted(lambda t: read_message_token(SECRET, t), forged) == 0
    # each purpose has its own key: no token passes as another kind
    unsubscribe = [unsubscribe_token(SECRET, w, "email", m) for w, m in refs]
    assert _count_accepted(lambda t: read_message_token(SECRET, t), unsubscribe) == 0
    assert _count_accepted(lambda t: read_unsubscribe_token(SECRET, "e" + t), genuine) == 0


# ------------------------------------------------------------------------------------------------ HTTP

SHOP = "https://shop.example/sale?utm=sms"


@dataclass
class World:
    settings: Settings
    workspace_id: int
    message_ids: list[int]
    code: str
    other_code: str  # a link of another campaign of the same workspace


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    engine = create_engine(settings.database_url)
    now = datetime.now(UTC)
    async with session_factory(engine).begin() as session:
        mine = await inbound_seed.seed(session, channel="email", count=3)
        other = await inbound_seed.seed(session, channel="email", count=1)
        codes = await campaign_links(session, mine.workspace_id, mine.campaign_id, [SHOP], now=now)
        others = await campaign_links(
            session, other.workspace_id, other.campaign_id, ["https://other.example/"], now=now
        )
    yield World(settings, mine.workspace_id, mine.message_ids, codes[SHOP], others["https://other.example/"])
    await engine.dispose()


async def _count(settings: Settings, model: type) -> int:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        found = await conn.scalar(sa.select(sa.func.count()).select_from(model))
    await engine.dispose()
    return int(found or 0)


def _forged(token: str, rng: random.Random) -> list[str]:
    """Mutations that still fit in one path segment (a swap of two equal characters is no forgery)."""
    return [t for t in _mutations(token, rng) if t.strip() and "/" not in t and t != token]


async def test_forged_tokens_over_http_get_404_and_change_nothing(client: TestClient, world: World) -> None:
    secret = world.settings.secret_key
    good_click = recipient_token(secret, world.code, world.message_ids[0])
    good_unsub = unsubscribe_token(secret, world.workspace_id, "email", world.message_ids[0])
    good_open = message_token(secret, world.workspace_id, world.message_ids[0])
    rng = random.Random(11)
    clicks = [f"/r/{world.code}/{t}" for t in _forged(good_click, rng)]
    clicks += [f"/r/{world.code}/{recipient_token('guessed-secret', world.code, world.message_ids[0])}"]
    clicks += [f"/r/{world.other_code}/{good_click}"]  # a genuine token on another campaign's link
    for path in clicks:
        response = await client.get(path, allow_redirects=False)
        assert response.status in {404, 400}, path
        assert "Location" not in response.headers
    unsubs = _forged(good_unsub, rng)
    unsubs.append(unsubscribe_token("guessed-secret", world.workspace_id, "email", world.message_ids[0]))
    for token in unsubs:
        response = await client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status in {404, 400}, token
    for token in _forged(good_open, rng):
        await client.get(f"/o/{token}.gif")
    assert await _count(world.settings, Suppression) == 0
    assert await _count(world.settings, Event) == 0
    # the genuine ones work
    response = await client.get(f"/r/{world.code}/{good_click}", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, SHOP)
    response = await client.post(f"/u/{good_unsub}", data={"List-Unsubscribe": "One-Click"})
    assert response.status == 200
    assert await _count(world.settings, Suppression) == 1


async def test_the_redirect_only_goes_to_the_stored_url(client: TestClient, world: World) -> None:
    token = recipient_token(world.settings.secret_key, world.code, world.message_ids[1])
    evil = "https://evil.example/phish"
    attempts = [
        f"/r/{world.code}?url={evil}",
        f"/r/{world.code}?next={evil}&redirect={evil}&to={evil}&u={evil}&return_to={evil}",
        f"/r/{world.code}/{token}?url={evil}",
        f"/r/{world.code}/{token}?redirect_uri=//evil.example",
    ]
    for path in attempts:
        response = await client.get(path, allow_redirects=False)
        assert (response.status, response.headers.get("Location")) == (302, SHOP), path
    for path in [
        "/r/evil.example",
        "/r/%2F%2Fevil.example",
        "/r//evil.example",
        "/r/https:%2F%2Fevil.example%2F",
        f"/r/{world.code}/..%2F..%2Fevil.example",
        f"/r/{world.code}%00",
        f"/r/{world.code}x",
        f"/r/{world.code.swapcase()}",
        "/r/000000",
        "/r/" + "A" * 6,
    ]:
        response = await client.get(path, allow_redirects=False)
        assert response.status in {404, 400}, path
        assert "Location" not in response.headers, path
