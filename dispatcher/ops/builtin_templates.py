"""Shipped example templates (``templates/messages``): read from disk, stored as read-only built-in rows.

Built-ins are rows (not served from memory) because campaigns pin a template *version id*, and a built-in
must be sendable like any other template. They live in the reserved system workspace with ``builtin`` set,
named ``builtin/<channel>/<name>``, and every workspace sees them. :func:`sync_builtin_templates` makes the
rows match the files: new files become templates, changed files become new versions (campaigns keep the
version they started with), removed files are soft-deleted. It is idempotent and safe to run from several
processes at once (a loser of a race retries and finds nothing left to do).

Start-up runs a full sync (``routes.templates.builtin_templates_ctx``); the template list also runs
:func:`ensure_builtin_templates` lazily, which syncs only when no built-in exists yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import dispatcher
from dispatcher.errors import ConflictError, TemplateError
from dispatcher.ops.templates import BUILTIN_PREFIX, compile_parts, parts_of
from dispatcher.storage import templates as store
from dispatcher.storage.keys import get_or_create_workspace
from dispatcher.storage.templates import SYSTEM_WORKSPACE_SLUG, TemplateParts

_RACES: Final = (ConflictError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError)


@dataclass(frozen=True, slots=True)
class ShippedTemplate:
    key: str  # the file's name: discount, bundle, ...
    channel: str
    parts: TemplateParts

    @property
    def name(self) -> str:
        return f"{BUILTIN_PREFIX}{self.channel}/{self.key}"


@dataclass(frozen=True, slots=True)
class SyncReport:
    created: int = 0
    updated: int = 0
    removed: int = 0


def shipped_dir() -> Path:
    """``templates/messages`` beside the package (a checkout) or in the working directory (the image)."""
    for root in (Path(dispatcher.__file__).resolve().parent.parent, Path.cwd()):
        candidate = root / "templates" / "messages"
        if (candidate / "sms").is_dir() or (candidate / "email").is_dir():
            return candidate
    raise FileNotFoundError("templates/messages not found beside the package or in the working directory")


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def _checked(item: ShippedTemplate, source: Path) -> ShippedTemplate:
    try:
        compile_parts(item.channel, item.parts)
    except TemplateError as exc:  # a shipped file is ours: say which one is broken
        raise TemplateError(f"{source}: {exc.message}", details=exc.details) from None
    return item


def read_shipped(directory: Path) -> tuple[ShippedTemplate, ...]:
    """Every shipped template, checked and compiled like a template saved through the API."""
    found: list[ShippedTemplate] = []
    for path in sorted((directory / "sms").glob("*.txt")):
        found.append(_checked(ShippedTemplate(path.stem, "sms", TemplateParts(body=_read(path))), path))
    email = directory / "email"
    for folder in sorted(p for p in email.iterdir() if p.is_dir()) if email.is_dir() else []:
        parts = TemplateParts(
            subject=_read(folder / "subject.txt"),
            text=_read(folder / "text.txt"),
            html=_read(folder / "html.html"),
        )
        found.append(_checked(ShippedTemplate(folder.name, "email", parts), folder))
    return tuple(found)


def read_samples(directory: Path) -> dict[str, Any]:
    """Typical campaign and contact values for the shipped templates (``samples.json``)."""
    data = json.loads((directory / "samples.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


async def sync_builtin_templates(
    session: AsyncSession, shipped: tuple[ShippedTemplate, ...], *, now: datetime
) -> SyncReport:
    workspace = await get_or_create_workspace(session, SYSTEM_WORKSPACE_SLUG, now=now)
    existing = {
        template.name: (template, version) for template, version in await store.builtin_templates(session)
    }
    created = updated = 0
    for item in shipped:
        found = existing.pop(item.name, None)
        if found is None:
            await store.add_template(
                session,
                workspace_id=workspace.id,
                name=item.name,
                channel=item.channel,
                parts=item.parts,
                now=now,
                builtin=True,
            )
            created += 1
            continue
        template, version = found
        changed = template.deleted_at is not None or parts_of(version) != item.parts
        if template.deleted_at is not None:
            await store.restore(session, template, now=now)
        if parts_of(version) != item.parts:
            await store.add_version(session, template, item.parts, name=item.name, now=now)
        updated += changed
    removed = 0
    for template, _ in existing.values():
        removed += await store.soft_delete(session, template, now=now)
    return SyncReport(created, updated, removed)


async def ensure_builtin_templates(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    directory: Path | None = None,
    always: bool = False,
) -> SyncReport | None:
    """Sync the shipped templates: always (start-up), or only when none is stored yet (lazily, cheap)."""
    for attempt in range(2):
        try:
            async with sessions.begin() as session:
                if not always and await store.has_builtins(session):
                    return None
                try:
                    source = directory or shipped_dir()
                except FileNotFoundError:  # an install without the examples simply has no built-ins
                    return None
                return await sync_builtin_templates(session, read_shipped(source), now=now)
        except _RACES:
            if attempt:  # another process synced at the same moment; the second pass finds it done
                raise
    return None
