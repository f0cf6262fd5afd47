"""Template services: every part is checked and compiled before a version is stored; versions are immutable.

A workspace sees its own templates plus the shipped built-ins, which are read-only (copy one to change it).
An edit stores a new version and moves ``current_version``; a campaign pins the version id it started with,
so edits and deletes (soft: the rows stay) never change what a running campaign sends.

Template variables for one recipient come from :func:`recipient_variables`: campaign values, overridden by
the contact's attributes, overridden by the contact's own fields. ``unsubscribe_url`` (e-mail) and
``timezone`` (the ``date`` filter's zone) are reserved names the sender fills in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.rendering import CompiledTemplate, Part, compile_template, variables
from dispatcher.errors import ConflictError, InputError, NotFoundError, TemplateError
from dispatcher.storage import templates as store
from dispatcher.storage.content import Template, TemplateVersion
from dispatcher.storage.templates import TemplateParts

BUILTIN_PREFIX: Final = "builtin/"
UNSUBSCRIBE_VARIABLE: Final = "unsubscribe_url"
CHANNELS: Final = ("sms", "email")
# field of TemplateParts -> the rendering part it compiles as
PART_OF_FIELD: Final[Mapping[str, Part]] = {
    "body": "sms",
    "subject": "subject",
    "text": "text",
    "html": "html",
}
_READ_ONLY: Final = "built-in templates are read-only; copy it into a template of your own to change it"


@dataclass(frozen=True, slots=True)
class TemplateView:
    """A template with one of its versions (the current one unless asked otherwise)."""

    template: Template
    version: TemplateVersion

    @property
    def parts(self) -> TemplateParts:
        return parts_of(self.version)


def parts_of(version: TemplateVersion) -> TemplateParts:
    return TemplateParts(
        body=version.body, subject=version.subject, text=version.text_body, html=version.html_body
    )


@lru_cache(maxsize=128)
def compiled_part(source: str, part: Part) -> CompiledTemplate:
    """Compiling costs ~0.4 ms: reuse it for the same source (compiled templates are immutable)."""
    return compile_template(source, part=part)


def _shape_errors(channel: str, parts: TemplateParts) -> list[dict[str, str]]:
    given = {name for name in PART_OF_FIELD if getattr(parts, name) not in (None, "")}
    if channel == "sms":
        errors = [
            {"field": f, "message": "an SMS template has only a body"} for f in sorted(given - {"body"})
        ]
        if "body" not in given:
            errors.append({"field": "body", "message": "an SMS template needs a body"})
        return errors
    errors = []
    if "body" in given:
        errors.append({"field": "body", "message": "an e-mail template has subject, text and html, no body"})
    if "subject" not in given:
        errors.append({"field": "subject", "message": "an e-mail template needs a subject"})
    if not given & {"text", "html"}:
        errors.append({"field": "text", "message": "an e-mail template needs a text or an html part"})
    return errors


def compile_parts(channel: str, parts: TemplateParts) -> dict[str, CompiledTemplate]:
    """Check the parts a channel needs and compile each; every failing part is reported (line and part)."""
    if channel not in CHANNELS:
        raise InputError(f"unknown channel {channel!r}", details=[{"field": "channel"}])
    shape = _shape_errors(channel, parts)
    if shape:
        raise InputError(f"invalid {channel} template: {shape[0]['message']}", details=shape)
    compiled: dict[str, CompiledTemplate] = {}
    failures: list[TemplateError] = []
    for name, part in PART_OF_FIELD.items():
        source = getattr(parts, name)
        if source in (None, ""):
            continue
        try:
            compiled[name] = compiled_part(source, part)
        except TemplateError as exc:
            failures.append(exc)
    if failures:
        details = [{**d, "field": _field_of(d.get("part"))} for exc in failures for d in exc.details]
        raise TemplateError(failures[0].message, details=details)
    return compiled


def _field_of(part: Any) -> str:
    return next((f for f, p in PART_OF_FIELD.items() if p == part), str(part))


def template_variables(parts: TemplateParts, channel: str) -> list[str]:
    """Names the template reads, over all parts (reserved ones included)."""
    names: set[str] = set()
    for compiled in compile_parts(channel, parts).values():
        names |= variables(compiled)
    return sorted(names)


def _check_name(name: str) -> str:
    if name.lower().startswith(BUILTIN_PREFIX):
        raise InputError(f"template names starting with {BUILTIN_PREFIX!r} are reserved for built-ins")
    return name


async def create_template(
    session: AsyncSession, workspace_id: int, *, name: str, channel: str, parts: TemplateParts, now: datetime
) -> TemplateView:
    compile_parts(channel, parts)
    if await store.name_in_use(session, workspace_id, _check_name(name)):
        raise ConflictError(f"a template named {name!r} already exists")
    template, version = await store.add_template(
        session, workspace_id=workspace_id, name=name, channel=channel, parts=parts, now=now
    )
    return TemplateView(template, version)


async def get_template(session: AsyncSession, workspace_id: int, template_id: int) -> Template:
    found = await store.get_template(session, workspace_id, template_id)
    if found is None:
        raise NotFoundError(f"template {template_id} not found")
    return found


async def get_version(
    session: AsyncSession, workspace_id: int, template_id: int, version: int | None = None
) -> TemplateView:
    template = await get_template(session, workspace_id, template_id)
    number = template.current_version if version is None else version
    found = await store.get_version(session, template, number)
    if found is None:
        raise NotFoundError(f"template {template_id} has no version {number}")
    return TemplateView(template, found)


async def update_template(
    session: AsyncSession,
    workspace_id: int,
    template_id: int,
    *,
    name: str | None,
    channel: str | None,
    parts: TemplateParts,
    now: datetime,
) -> TemplateView:
    template = await get_template(session, workspace_id, template_id)
    if template.builtin:
        raise ConflictError(_READ_ONLY)
    if channel is not None and channel != template.channel:
        raise InputError("a template's channel cannot change; create a new template", details=[
            {"field": "channel", "message": f"this template is {template.channel}"}
        ])  # fmt: skip
    compile_parts(template.channel, parts)
    new_name = template.name if name is None else _check_name(name)
    if new_name != template.name and await store.name_in_use(session, workspace_id, new_name):
        raise ConflictError(f"a template named {new_name!r} already exists")
    version = await store.add_version(session, template, parts, name=new_name, now=now)
    return TemplateView(template, version)


async def delete_template(
    session: AsyncSession, workspace_id: int, template_id: int, *, now: datetime
) -> None:
    template = await get_template(session, workspace_id, template_id)
    if template.builtin:
        raise ConflictError(_READ_ONLY)
    if not await store.soft_delete(session, template, now=now):
        raise NotFoundError(f"template {template_id} not found")


async def page_templates(
    session: AsyncSession,
    workspace_id: int,
    *,
    after: int,
    limit: int,
    channel: str | None = None,
    builtin: bool | None = None,
) -> list[Template]:
    return await store.page_templates(
        session, workspace_id, after=after, limit=limit, channel=channel, builtin=builtin
    )


async def version_for_sending(session: AsyncSession, workspace_id: int, version_id: int) -> TemplateView:
    """The pinned version a campaign sends (its own or a built-in's, even after the template was deleted)."""
    version = await store.version_by_id(session, workspace_id, version_id)
    if version is None:
        raise NotFoundError(f"template version {version_id} not found")
    template = await session.get(Template, version.template_id)
    assert template is not None  # the foreign key guarantees it
    return TemplateView(template, version)
