"""Segments: named, validated filters over one list, with a live count and a preview."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core import segments as filters
from dispatcher.errors import ConflictError, NotFoundError
from dispatcher.ops.lists import get_list
from dispatcher.storage import contacts_q
from dispatcher.storage import segments as store
from dispatcher.storage.contacts import Segment

SAMPLE_SIZE = 5


@dataclass(frozen=True, slots=True)
class Audience:
    count: int
    sample: list[int]  # the first contact ids, for a quick look


async def create_segment(
    session: AsyncSession, workspace_id: int, list_id: int, *, name: str, filter_doc: Any, now: datetime
) -> Segment:
    tree = filters.parse(filter_doc)
    await get_list(session, workspace_id, list_id)
    # stored canonical, so what GET returns is exactly what the engine will run
    return await store.add_segment(
        session, workspace_id=workspace_id, list_id=list_id, name=name, filter_doc=filters.dump(tree), now=now
    )


async def get_segment(session: AsyncSession, workspace_id: int, segment_id: int) -> Segment:
    found = await store.get_segment(session, workspace_id, segment_id)
    if found is None:
        raise NotFoundError(f"segment {segment_id} not found")
    return found


async def audience(
    session: AsyncSession, workspace_id: int, list_id: int, tree: filters.Node, *, now: datetime
) -> Audience:
    count, sample = await contacts_q.count_and_sample(
        session, workspace_id, list_id, where=store.segment_condition(tree, now), sample=SAMPLE_SIZE
    )
    return Audience(count=count, sample=sample)


async def segment_audience(session: AsyncSession, segment: Segment, *, now: datetime) -> Audience:
    tree = filters.parse(segment.filter)
    return await audience(session, segment.workspace_id, segment.list_id, tree, now=now)


async def preview(
    session: AsyncSession, workspace_id: int, list_id: int, filter_doc: Any, *, now: datetime
) -> Audience:
    tree = filters.parse(filter_doc)
    await get_list(session, workspace_id, list_id)
    return await audience(session, workspace_id, list_id, tree, now=now)


async def delete_segment(session: AsyncSession, workspace_id: int, segment_id: int) -> None:
    await get_segment(session, workspace_id, segment_id)
    campaign_id = await store.campaign_using(session, workspace_id, segment_id)
    if campaign_id is not None:
        raise ConflictError(f"segment {segment_id} is the audience of campaign {campaign_id}; keep it")
    await store.delete_segment(session, workspace_id, segment_id)
