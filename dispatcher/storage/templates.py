"""Template queries. A workspace sees its own live templates plus the shipped built-ins (``builtin`` rows).

Built-in rows live in a reserved system workspace (:data:`SYSTEM_WORKSPACE_SLUG`) and are the only rows
visible across workspaces; nothing but the shipped-template sync writes them. Versions are immutable: an
edit adds a row and moves ``current_version`` with a guarded UPDATE, so two concurrent edits cannot both
claim the same version number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.errors import ConflictError
from dispatcher.storage.content import Template, TemplateVersion

SYSTEM_WORKSPACE_SLUG = "_builtin"


@dataclass(frozen=True, slots=True)
class TemplateParts:
    """The content of one version: ``body`` for SMS; ``subject``, ``text`` and/or ``html`` for e-mail."""

    body: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None


def _visible(workspace_id: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        sa.or_(Template.workspace_id == workspace_id, Template.builtin.is_(True)),
        Template.deleted_at.is_(None),
    )


def _version_row(template: Template, number: int, parts: TemplateParts, now: datetime) -> TemplateVersion:
    return TemplateVersion(
        workspace_id=template.workspace_id,
        template_id=template.id,
        version=number,
        body=parts.body,
        subject=parts.subject,
        text_body=parts.text,
        html_body=parts.html,
        created_at=now,
    )


async def name_in_use(
    session: AsyncSession, workspace_id: int, name: str, *, exclude_id: int | None = None
) -> bool:
    query = sa.select(Template.id).where(
        Template.workspace_id == workspace_id, Template.name == name, Template.deleted_at.is_(None)
    )
    if exclude_id is not None:
        query = query.where(Template.id != exclude_id)
    return (await session.scalar(query.limit(1))) is not None


async def add_template(
    session: AsyncSession,
    *,
    workspace_id: int,
    name: str,
    channel: str,
    parts: TemplateParts,
    now: datetime,
    builtin: bool = False,
) -> tuple[Template, TemplateVersion]:
    template = Template(
        workspace_id=workspace_id,
        name=name,
        channel=channel,
        current_version=1,
        builtin=builtin,
        created_at=now,
        updated_at=now,
    )
    session.add(template)
    try:
        await session.flush()
    except sqlalchemy.exc.IntegrityError:
        # a concurrent request took the name between our check and this insert
        raise ConflictError(f"a template named {name!r} already exists") from None
    version = _version_row(template, 1, parts, now)
    session.add(version)
    await session.flush()
    return template, version


async def get_template(session: AsyncSession, workspace_id: int, template_id: int) -> Template | None:
    return await session.scalar(sa.select(Template).where(Template.id == template_id, _visible(workspace_id)))


async def page_templates(
    session: AsyncSession,
    workspace_id: int,
    *,
    after: int,
    limit: int,
    channel: str | None = None,
    builtin: bool | None = None,
) -> list[Template]:
    query = sa.select(Template).where(_visible(workspace_id), Template.id > after)
    if channel is not None:
        query = query.where(Template.channel == channel)
    if builtin is not None:
        query = query.where(Template.builtin.is_(builtin))
    rows = await session.scalars(query.order_by(Template.id).limit(limit))
    return list(rows)


async def get_version(session: AsyncSession, template: Template, version: int) -> TemplateVersion | None:
    """A version of a template the caller has already found visible."""
    return await session.scalar(
        sa.select(TemplateVersion).where(
            TemplateVersion.template_id == template.id, TemplateVersion.version == version
        )
    )


async def version_by_id(session: AsyncSession, workspace_id: int, version_id: int) -> TemplateVersion | None:
    """A version by its id, for campaigns (which pin a version id): the workspace's own or a built-in's.

    Deleted templates still answer: a campaign that started with a version keeps sending it.
    """
    return await session.scalar(
        sa.select(TemplateVersion)
        .join(Template, Template.id == TemplateVersion.template_id)
        .where(
            TemplateVersion.id == version_id,
            sa.or_(Template.workspace_id == workspace_id, Template.builtin.is_(True)),
        )
    )


async def add_version(
    session: AsyncSession, template: Template, parts: TemplateParts, *, name: str, now: datetime
) -> TemplateVersion:
    """Store ``parts`` as the next version and make it current (and rename, when ``name`` changed)."""
    number = template.current_version + 1
    try:
        result = await session.execute(
            sa.update(Template)
            .where(Template.id == template.id, Template.current_version == template.current_version)
            .values(current_version=number, name=name, updated_at=now)
        )
    except sqlalchemy.exc.IntegrityError:
        raise ConflictError(f"a template named {name!r} already exists") from None
    if getattr(result, "rowcount", 0) != 1:
        raise ConflictError("the template was changed by another request meanwhile; fetch it and retry")
    version = _version_row(template, number, parts, now)
    session.add(version)
    await session.flush()
    return version


async def soft_delete(session: AsyncSession, template: Template, *, now: datetime) -> bool:
    result = await session.execute(
        sa.update(Template)
        .where(Template.id == template.id, Template.deleted_at.is_(None))
        .values(deleted_at=now, updated_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def builtin_templates(session: AsyncSession) -> list[tuple[Template, TemplateVersion]]:
    """Every built-in template (deleted or not) with its current version: what the shipped sync compares."""
    rows = await session.execute(
        sa.select(Template, TemplateVersion)
        .join(
            TemplateVersion,
            sa.and_(
                TemplateVersion.template_id == Template.id,
                TemplateVersion.version == Template.current_version,
            ),
        )
        .where(Template.builtin.is_(True))
    )
    return [(template, version) for template, version in rows]


async def has_builtins(session: AsyncSession) -> bool:
    found = await session.scalar(sa.select(Template.id).where(Template.builtin.is_(True)).limit(1))
    return found is not None


async def restore(session: AsyncSession, template: Template, *, now: datetime) -> None:
    """Undo a soft delete (a shipped template that came back)."""
    await session.execute(
        sa.update(Template).where(Template.id == template.id).values(deleted_at=None, updated_at=now)
    )
