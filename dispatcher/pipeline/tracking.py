"""Tracked links of a running campaign: the static URLs of its templates, each with a stored link code.

Only URLs written in the template source are tracked (a URL that comes from a contact's data is sent as
it is): the redirect endpoint only ever sends people to a URL stored here, so it is no open redirect.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.links import LinkKind, find_links, link_code_from_bytes
from dispatcher.pipeline.context import WorkerResources
from dispatcher.pipeline.runtime import Content
from dispatcher.storage.campaigns import Campaign
from dispatcher.storage.links import ensure_links


def template_urls(variants: dict[str, Content]) -> list[str]:
    urls: list[str] = []
    text: LinkKind = "text"
    html: LinkKind = "html"
    for content in variants.values():
        for compiled, kind in ((content.sms, text), (content.text, text), (content.html, html)):
            if compiled is not None:
                urls += find_links(compiled.source, kind)
    # a URL built from template expressions differs per recipient: it is sent as rendered, untracked
    return [url for url in dict.fromkeys(urls) if "{{" not in url and "{%" not in url]


async def campaign_links(
    res: WorkerResources, _session: AsyncSession, campaign: Campaign, variants: dict[str, Content]
) -> dict[str, str]:
    urls = template_urls(variants)
    if not urls:
        return {}
    async with res.sessions.begin() as session:  # its own transaction: the caller's session only reads
        return await ensure_links(
            session,
            workspace_id=campaign.workspace_id,
            campaign_id=campaign.id,
            urls=urls,
            new_code=_new_code,
            now=datetime.now(UTC),
        )


def _new_code() -> str:
    return link_code_from_bytes(secrets.token_bytes(8))
