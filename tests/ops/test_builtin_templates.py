"""The shipped templates: all six offers in both channels, short GSM-7 SMS with an opt-out, and their sync."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.core.links import recipient_token, rewrite_links, tracked_url
from dispatcher.core.personalise import recipient_variables
from dispatcher.core.rendering import render
from dispatcher.core.sms import GSM7, analyse_sms, lint_sms
from dispatcher.errors import TemplateError
from dispatcher.ops.builtin_templates import (
    ShippedTemplate,
    ensure_builtin_templates,
    read_samples,
    read_shipped,
    shipped_dir,
    sync_builtin_templates,
)
from dispatcher.ops.templates import compile_parts
from dispatcher.settings import Settings
from dispatcher.storage import templates as store
from dispatcher.storage.engine import create_engine, session_factory

OFFERS = {"discount", "limited_time", "bundle", "holiday", "restock", "winback"}
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# A typical production link: a short tracking domain, a 6-character code and a 10-character token.
TYPICAL_LINK = tracked_url("https://acme.link", "Ab3xK9", recipient_token("k", "Ab3xK9", 1_234_567))


def by_channel(channel: str) -> dict[str, ShippedTemplate]:
    return {t.key: t for t in read_shipped(shipped_dir()) if t.channel == channel}


def test_every_offer_ships_in_both_channels() -> None:
    assert set(by_channel("sms")) == OFFERS
    assert set(by_channel("email")) == OFFERS
    for template in read_shipped(shipped_dir()):
        assert template.name == f"builtin/{template.channel}/{template.key}"


@pytest.mark.parametrize("key", sorted(OFFERS))
@pytest.mark.parametrize(
    "first_name", ["Alexandra", "Bartholomew-Maximilian", None], ids=["typical", "long-name", "no-name"]
)
def test_sms_is_gsm7_two_segments_at_most_and_has_an_opt_out(key: str, first_name: str | None) -> None:
    samples = read_samples(shipped_dir())
    contact = {"first_name": first_name} if first_name else None
    values = recipient_variables({k: v for k, v in samples.items() if k != "first_name"}, contact)
    compiled = compile_parts("sms", by_channel("sms")[key].parts)["body"]
    text = rewrite_links(render(compiled, values), make_url=lambda _: TYPICAL_LINK, kind="sms")
    analysis = analyse_sms(text)
    assert analysis.encoding == GSM7, analysis.non_gsm_characters
    assert analysis.segments <= 2, (analysis.units, text)
    assert "Reply STOP to opt out" in text
    assert TYPICAL_LINK in text
    assert lint_sms(text, max_segments=2, tracked_prefixes=("https://acme.link/r/",)) == []


@pytest.mark.parametrize("key", sorted(OFFERS))
def test_email_renders_with_unsubscribe_link_and_escapes_html(key: str) -> None:
    samples = read_samples(shipped_dir())
    compiled = compile_parts("email", by_channel("email")[key].parts)
    values = {**samples, "first_name": "<b>Al & Co</b>", "unsubscribe_url": "https://d.example/u/TOKEN"}
    html = render(compiled["html"], values)
    text = render(compiled["text"], values)
    subject = render(compiled["subject"], values)
    assert "https://d.example/u/TOKEN" in html
    assert "https://d.example/u/TOKEN" in text
    assert samples["shop_url"] in html
    assert samples["shop_url"] in text
    assert "<b>Al" not in html
    assert "&lt;b&gt;Al &amp; Co" in html
    assert "\n" not in subject
    assert len(subject) <= 78 + len("<b>Al & Co</b>")


def test_a_broken_shipped_file_names_itself(tmp_path: Path) -> None:
    (tmp_path / "sms").mkdir()
    (tmp_path / "sms" / "broken.txt").write_text("Hi {{ first_name }\nReply STOP\n")
    with pytest.raises(TemplateError, match=r"broken\.txt") as caught:
        read_shipped(tmp_path)
    assert caught.value.details[0]["line"] == 1


# ------------------------------------------------------------------------------------------------ sync


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    yield session_factory(engine)
    await engine.dispose()


async def _stored(sessions: async_sessionmaker[AsyncSession]) -> dict[str, tuple[int, bool, str | None]]:
    async with sessions() as session:
        rows = await store.builtin_templates(session)
    return {t.name: (t.current_version, t.deleted_at is not None, v.body or v.subject) for t, v in rows}


async def test_sync_creates_updates_removes_and_is_idempotent(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    copy = tmp_path / "messages"
    shutil.copytree(shipped_dir(), copy)
    first = await ensure_builtin_templates(sessions, now=NOW, directory=copy)
    assert first is not None
    assert (first.created, first.updated, first.removed) == (12, 0, 0)
    assert await ensure_builtin_templates(sessions, now=NOW, directory=copy) is None  # lazy: already there
    again = await ensure_builtin_templates(sessions, now=NOW, directory=copy, always=True)
    assert again is not None
    assert (again.created, again.updated, again.removed) == (0, 0, 0)

    (copy / "sms" / "discount.txt").write_text("Acme: 30% off today. Reply STOP to opt out\n")
    (copy / "sms" / "restock.txt").unlink()
    changed = await ensure_builtin_templates(sessions, now=NOW, directory=copy, always=True)
    assert changed is not None
    assert (changed.created, changed.updated, changed.removed) == (0, 1, 1)
    stored = await _stored(sessions)
    assert stored["builtin/sms/discount"] == (2, False, "Acme: 30% off today. Reply STOP to opt out")
    assert stored["builtin/sms/restock"][:2] == (1, True)

    shutil.copy(shipped_dir() / "sms" / "restock.txt", copy / "sms" / "restock.txt")
    back = await ensure_builtin_templates(sessions, now=NOW, directory=copy, always=True)
    assert back is not None
    assert (back.created, back.updated, back.removed) == (0, 1, 0)
    assert (await _stored(sessions))["builtin/sms/restock"][:2] == (1, False)


async def test_sync_keeps_old_versions_for_running_campaigns(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    shipped = read_shipped(shipped_dir())
    async with sessions.begin() as session:
        await sync_builtin_templates(session, shipped, now=NOW)
    async with sessions() as session:
        _template, first = next(
            (t, v) for t, v in await store.builtin_templates(session) if t.name == "builtin/sms/winback"
        )
    changed = tuple(
        ShippedTemplate(s.key, s.channel, type(s.parts)(body="New winback. Reply STOP to opt out"))
        if s.name == "builtin/sms/winback"
        else s
        for s in shipped
    )
    async with sessions.begin() as session:
        await sync_builtin_templates(session, changed, now=NOW)
    async with sessions() as session:
        pinned = await store.version_by_id(session, 999_999, first.id)  # any workspace may send a built-in
    assert pinned is not None
    assert pinned.body == first.body
    assert pinned.version == 1
