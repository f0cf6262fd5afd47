"""Public tracking endpoints over HTTP: redirects only to stored URLs; unsubscribe GET shows, POST changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.core.links import recipient_token
from dispatcher.ops.links import campaign_links, message_url, unsubscribe_url
from dispatcher.settings import Settings
from dispatcher.storage.accounts import Workspace
from dispatcher.storage.campaigns import Campaign, Event, Message
from dispatcher.storage.contacts import ConsentRecord, Contact, ContactList, Suppression
from dispatcher.storage.engine import create_engine, session_factory
from tests.conftest import KeyMaker

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SHOP = "https://shop.example/sale?utm=sms"


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    workspace_id: int
    campaign_id: int
    other_campaign_id: int
    message_id: int  # an e-mail message of campaign_id
    other_message_id: int  # an e-mail message of other_campaign_id
    code: str


async def _message(
    session: AsyncSession, workspace_id: int, campaign_id: int, list_id: int, address: str
) -> int:
    contact = Contact(workspace_id=workspace_id, list_id=list_id, dedupe_key=address, email=address)
    session.add(contact)
    await session.flush()
    message = Message(
        workspace_id=workspace_id,
        campaign_id=campaign_id,
        contact_id=contact.id,
        channel="email",
        address=address,
    )
    session.add(message)
    await session.flush()
    return message.id


@pytest.fixture
async def world(settings: Settings, make_key: KeyMaker) -> AsyncIterator[World]:
    await make_key("acme")
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        workspace_id = await session.scalar(sa.select(Workspace.id).where(Workspace.slug == "acme"))
        assert workspace_id is not None
        contacts = ContactList(workspace_id=workspace_id, name="l")
        session.add(contacts)
        await session.flush()
        campaigns = [
            Campaign(workspace_id=workspace_id, name=n, channel="email", list_id=contacts.id) for n in "ab"
        ]
        session.add_all(campaigns)
        await session.flush()
        first = await _message(session, workspace_id, campaigns[0].id, contacts.id, "ann@example.com")
        second = await _message(session, workspace_id, campaigns[1].id, contacts.id, "bob@example.com")
        codes = await campaign_links(session, workspace_id, campaigns[0].id, [SHOP], now=NOW)
    yield World(sessions, workspace_id, campaigns[0].id, campaigns[1].id, first, second, codes[SHOP])
    await engine.dispose()


async def _count(world: World, model: type, **where: object) -> int:
    async with world.sessions() as session:
        query = sa.select(sa.func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(await session.scalar(query) or 0)


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# ---------------------------------------------------------------------------------------------- clicks


async def test_click_redirects_to_the_stored_url_and_counts_once(
    client: TestClient, world: World, settings: Settings
) -> None:
    url = message_url("https://sho.rt", settings.secret_key, world.code, world.message_id)
    for _ in range(3):
        response = await client.get(_path(url), allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == SHOP
        assert response.headers["Cache-Control"] == "no-store"
    assert await _count(world, Event, kind="click", message_id=world.message_id) == 1
    async with world.sessions() as session:
        event = await session.scalar(sa.select(Event).where(Event.kind == "click"))
    assert event is not None
    assert event.campaign_id == world.campaign_id
    assert event.workspace_id == world.workspace_id

    plain = await client.get(f"/r/{world.code}", allow_redirects=False)
    assert plain.status == 302
    assert plain.headers["Location"] == SHOP


async def test_campaign_links_are_reused_and_refuse_non_http(world: World) -> None:
    async with world.sessions.begin() as session:
        again = await campaign_links(
            session, world.workspace_id, world.campaign_id, [SHOP, "https://b.example"], now=NOW
        )
        assert again[SHOP] == world.code
        assert len(again["https://b.example"]) == 6
        with pytest.raises(Exception, match="http"):
            await campaign_links(
                session, world.workspace_id, world.campaign_id, ["javascript:alert(1)"], now=NOW
            )


async def test_tampered_or_foreign_tokens_get_404_and_no_redirect(
    client: TestClient, world: World, settings: Settings
) -> None:
    good = recipient_token(settings.secret_key, world.code, world.message_id)
    wrong_campaign = recipient_token(settings.secret_key, world.code, world.other_message_id)
    paths = [
        f"/r/{world.code}/{good[:-1]}{'A' if good[-1] != 'A' else 'B'}",  # one character of the MAC
        f"/r/{world.code}/{good[1:]}",
        f"/r/{world.code}/{recipient_token('other-secret', world.code, world.message_id)}",
        f"/r/{world.code}/{wrong_campaign}",  # validly signed, but its message is not of this link's campaign
        f"/r/{world.code}/{recipient_token(settings.secret_key, world.code, 987_654)}",  # no such message
        "/r/ZZZZZZ",
        "/r/https:%2F%2Fevil.example",
        f"/r/{world.code}x",
    ]
    for path in paths:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 404, path
        assert "Location" not in response.headers
        assert response.content_type == "text/html"
    assert await _count(world, Event, kind="click") == 0


async def test_no_open_redirect_through_query_or_path(client: TestClient, world: World) -> None:
    for path in (
        f"/r/{world.code}?url=https://evil.example",
        f"/r/{world.code}?next=//evil.example",
    ):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == SHOP
    nested = await client.get(f"/r/{world.code}/x/https://evil.example", allow_redirects=False)
    assert nested.status == 404
    assert "Location" not in nested.headers


# ---------------------------------------------------------------------------------------- unsubscribe


async def test_unsubscribe_get_changes_nothing_and_post_suppresses_once(
    client: TestClient, world: World, settings: Settings
) -> None:
    url = unsubscribe_url(
        "https://d.example", settings.secret_key, world.workspace_id, "email", world.message_id
    )
    path = _path(url)
    for _ in range(2):
        page = await client.get(path)
        text = await page.text()
        assert page.status == 200
        assert '<form method="post"' in text
        assert "a***@example.com" in text
        assert "ann@example.com" not in text
    assert await _count(world, Suppression) == 0
    assert await _count(world, ConsentRecord) == 0

    done = await client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status == 200
    assert "unsubscribed" in await done.text()
    again = await client.post(path, data=b"List-Unsubscribe=One-Click")
    assert again.status == 200
    assert (
        await _count(world, Suppression, address="ann@example.com", channel="email", reason="unsubscribe")
        == 1
    )
    assert await _count(world, ConsentRecord, address="ann@example.com", granted=False) == 1
    assert await _count(world, Event, kind="unsubscribe") == 1
    assert await _count(world, Suppression, address="bob@example.com") == 0


async def test_bad_unsubscribe_tokens_get_404_and_write_nothing(
    client: TestClient, world: World, settings: Settings
) -> None:
    good = unsubscribe_url("", settings.secret_key, world.workspace_id, "email", world.message_id)
    last = good[-1]
    tokens = [
        good.rsplit("/", 1)[1][:-1] + ("1" if last == "0" else "0"),  # one MAC character
        unsubscribe_url("", "other-secret", world.workspace_id, "email", world.message_id).rsplit("/", 1)[1],
        unsubscribe_url("", settings.secret_key, world.workspace_id + 1, "email", world.message_id).rsplit(
            "/", 1
        )[1],
        unsubscribe_url("", settings.secret_key, world.workspace_id, "sms", world.message_id).rsplit("/", 1)[
            1
        ],
        "nonsense",
    ]
    for token in tokens:
        assert (await client.get(f"/u/{token}")).status == 404, token
        assert (await client.post(f"/u/{token}", data=b"List-Unsubscribe=One-Click")).status == 404, token
    assert await _count(world, Suppression) == 0
