"""Isolation sample for ``POST /v1/conversions``.

A conversion names a message of the caller's own workspace, so the sample body cannot be a constant:
:func:`make_conversion_target` gives workspace B (``brand-b``) a sent message and fills :data:`_B_CONVERSION`
in place. Workspace A's messages are out of B's reach: ``tests/api/test_conversions.py`` checks that.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SESSIONS
from tests import inbound_seed as seed
from tests.api.makers_core import Maker

_B_CONVERSION: dict[str, Any] = {"external_id": "isolation-order", "value": "12.50", "currency": "EUR"}


async def make_conversion_target(client: TestClient, _key: str) -> int:
    async with client.app[SESSIONS].begin() as session:
        made = await seed.seed(session, count=1, slug="brand-b")
    _B_CONVERSION.update(contact_id=made.contact_ids[0], campaign_id=made.campaign_id)
    return made.message_ids[0]


MAKERS: dict[str, Maker] = {"conversion_target": make_conversion_target}
SAMPLE_BODIES: dict[str, Any] = {"/v1/conversions": _B_CONVERSION}
