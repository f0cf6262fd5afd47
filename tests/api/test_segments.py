"""Segments over HTTP on SQLite and PostgreSQL: every filter kind counted exactly, validation, lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.models import Campaign, ContactList, Event
from tests.api.makers_lists import seed_people
from tests.conftest import KeyMaker, bearer

SPEND = "attributes.spend"
AGE = "attributes.age_band"


def leaf(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op} | ({} if value is None else {"value": value})


def engaged(op: str, days: int) -> dict[str, Any]:
    return {"field": "engagement", "op": op, "days": days}


# Against PEOPLE_CSV (tests/api/makers_lists.py) and the events written by _record_events.
AUDIENCES = [
    ({"all": []}, ["Ann", "Bob", "Cy", "Dee", "Eve", "Fritz", "Gil"]),
    (leaf(AGE, "eq", "25-34"), ["Ann", "Cy", "Gil"]),
    ({"not": leaf(AGE, "eq", "25-34")}, ["Bob", "Dee", "Eve", "Fritz"]),  # Fritz has no age band
    (leaf(AGE, "in", ["18-24", "45-54"]), ["Dee", "Eve"]),
    (leaf(SPEND, "range", {"gte": 50}), ["Ann", "Bob", "Fritz"]),  # "abc" and "25-34" are not numbers
    (leaf(SPEND, "range", {"gt": 30, "lte": 120}), ["Ann", "Bob"]),
    (leaf(SPEND, "range", {"lt": 50}), ["Cy"]),  # a plain CAST would read "abc" as 0 and "25-34" as 25
    (leaf(SPEND, "range", {"gte": 30, "lt": 120}), ["Bob", "Cy"]),
    ({"not": leaf(SPEND, "range", {"gte": 50})}, ["Cy", "Dee", "Eve", "Gil"]),
    (leaf(SPEND, "eq", 1000), ["Fritz"]),  # 1e3 is 1000
    (leaf(SPEND, "eq", 80.5), ["Bob"]),
    (leaf(SPEND, "in", [30, 120]), ["Ann", "Cy"]),
    (leaf(SPEND, "eq", "1e3"), ["Fritz"]),  # a string compares as text
    (leaf(SPEND, "eq", "1000"), []),
    (leaf("attributes.joined", "range", {"gte": "2024-01-01"}), ["Ann", "Cy", "Gil"]),
    (leaf("attributes.level", "exists"), ["Ann", "Bob", "Cy", "Eve", "Fritz", "Gil"]),
    (leaf("attributes.level", "exists", False), ["Dee"]),
    (leaf("attributes.Level", "eq", "gold"), []),  # names are case-sensitive, as in the file
    (leaf("phone_region", "in", ["US", "fr"]), ["Ann", "Bob", "Cy"]),
    (leaf("phone_region", "exists", False), ["Eve"]),
    (leaf("phone_type", "eq", "fixed_line"), ["Dee", "Fritz"]),
    (leaf("phone_type", "in", ["mobile", "fixed_line_or_mobile"]), ["Ann", "Bob", "Cy", "Gil"]),
    (leaf("timezone", "eq", "Europe/Paris"), ["Cy"]),  # from the phone number
    (leaf("timezone", "eq", "America/Los_Angeles"), ["Ann"]),  # Bob's own zone wins over his number's
    (leaf("timezone", "in", ["America/New_York", "Asia/Tokyo"]), ["Bob", "Eve"]),
    (leaf("timezone", "eq", "Australia/Perth"), ["Gil"]),  # one of several zones of the number
    (leaf("timezone", "exists"), ["Ann", "Bob", "Cy", "Dee", "Eve", "Fritz", "Gil"]),
    (leaf("sms_capable", "eq", False), ["Dee", "Eve", "Fritz"]),
    (leaf("has_email", "eq", True), ["Ann", "Cy", "Dee", "Eve", "Gil"]),
    (leaf("has_phone", "eq", False), ["Eve"]),
    ({"any": [leaf("has_phone", "eq", False), leaf("phone_region", "eq", "DE")]}, ["Eve", "Fritz"]),
    (
        {
            "all": [
                leaf(AGE, "eq", "25-34"),
                {"not": leaf("phone_region", "eq", "AU")},
                leaf("sms_capable", "eq", True),
            ]
        },
        ["Ann", "Cy"],
    ),
    (engaged("clicked", 7), ["Ann"]),  # Dee's click was a machine's
    (engaged("clicked", 30), ["Ann", "Bob"]),
    (engaged("replied", 7), ["Cy"]),
    ({"not": engaged("clicked", 30)}, ["Cy", "Dee", "Eve", "Fritz", "Gil"]),
    ({"any": [engaged("clicked", 7), engaged("replied", 7)]}, ["Ann", "Cy"]),
]


@pytest.fixture
async def key(make_key: KeyMaker) -> str:
    return await make_key()


async def _record_events(settings: Settings, ids: dict[str, int]) -> None:
    now = datetime.now(UTC)
    events = [
        ("Ann", "click", 2, False),
        ("Bob", "click", 10, False),
        ("Cy", "reply", 1, False),
        ("Dee", "click", 1, True),
        ("Eve", "click", 400, False),
        ("Gil", "open", 1, False),
    ]
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        workspace_id = await session.scalar(sa.select(ContactList.workspace_id).limit(1))
        for n, (name, kind, days_ago, machine) in enumerate(events):
            session.add(
                Event(
                    workspace_id=workspace_id,
                    kind=kind,
                    dedupe_key=f"test-{n}",
                    contact_id=ids[name],
                    machine=machine,
                    occurred_at=now - timedelta(days=days_ago),
                )
            )
    await engine.dispose()


async def test_preview_counts_every_kind_of_filter(client: TestClient, key: str, settings: Settings) -> None:
    list_id, ids = await seed_people(client, key)
    await _record_events(settings, ids)
    by_id = {v: k for k, v in ids.items()}
    for filter_doc, expected in AUDIENCES:
        response = await client.post(
            f"/v1/lists/{list_id}/segments/preview", json={"filter": filter_doc}, headers=bearer(key)
        )
        body = await response.json()
        assert response.status == 200, (filter_doc, body)
        assert body["count"] == len(expected), (filter_doc, body)
        assert [by_id[i] for i in body["sample"]] == expected[:5], filter_doc


async def test_segment_lifecycle(client: TestClient, key: str, settings: Settings) -> None:
    list_id, ids = await seed_people(client, key)
    response = await client.post(
        f"/v1/lists/{list_id}/segments",
        json={"name": "Americans", "filter": {"all": [leaf("phone_region", "eq", "us")]}},
        headers=bearer(key),
    )
    created = await response.json()
    assert response.status == 201, created
    assert created["filter"] == {"all": [leaf("phone_region", "eq", "US")]}  # stored canonical
    assert created["count"] is None
    segment_id = created["id"]
    one = await (await client.get(f"/v1/segments/{segment_id}", headers=bearer(key))).json()
    assert (one["name"], one["list_id"], one["count"]) == ("Americans", list_id, 2)
    # the count is live: erasing Bob takes him out
    assert (await client.delete(f"/v1/contacts/{ids['Bob']}", headers=bearer(key))).status == 204
    one = await (await client.get(f"/v1/segments/{segment_id}", headers=bearer(key))).json()
    assert one["count"] == 1
    await _check_listing(client, key, list_id, segment_id)
    await _check_in_use(client, key, settings, list_id, segment_id)
    assert (await client.delete(f"/v1/segments/{segment_id}", headers=bearer(key))).status == 204
    assert (await client.get(f"/v1/segments/{segment_id}", headers=bearer(key))).status == 404
    assert (await client.delete(f"/v1/segments/{segment_id}", headers=bearer(key))).status == 404


async def _check_listing(client: TestClient, key: str, list_id: int, segment_id: int) -> None:
    other = await (await client.post("/v1/lists", json={"name": "other"}, headers=bearer(key))).json()
    second = await client.post(
        f"/v1/lists/{other['id']}/segments",
        json={"name": "all", "filter": {"all": []}},
        headers={**bearer(key), "Idempotency-Key": "seg-1"},
    )
    again = await client.post(
        f"/v1/lists/{other['id']}/segments",
        json={"name": "all", "filter": {"all": []}},
        headers={**bearer(key), "Idempotency-Key": "seg-1"},
    )
    second_id = (await second.json())["id"]
    assert (await again.json())["id"] == second_id
    page = await (await client.get("/v1/segments", headers=bearer(key))).json()
    assert [s["id"] for s in page["items"]] == [segment_id, second_id]
    page = await (await client.get(f"/v1/segments?list_id={list_id}", headers=bearer(key))).json()
    assert [s["id"] for s in page["items"]] == [segment_id]
    page = await (await client.get("/v1/segments?limit=1", headers=bearer(key))).json()
    assert page["next_cursor"] == str(segment_id)
    page = await (await client.get(f"/v1/segments?limit=1&cursor={segment_id}", headers=bearer(key))).json()
    assert [s["id"] for s in page["items"]] == [second_id]


async def _check_in_use(
    client: TestClient, key: str, settings: Settings, list_id: int, segment_id: int
) -> None:
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        workspace_id = await session.scalar(
            sa.select(ContactList.workspace_id).where(ContactList.id == list_id)
        )
        campaign = Campaign(
            workspace_id=workspace_id, name="c", channel="sms", list_id=list_id, segment_id=segment_id
        )
        session.add(campaign)
    response = await client.delete(f"/v1/segments/{segment_id}", headers=bearer(key))
    assert response.status == 409, await response.text()
    async with session_factory(engine).begin() as session:
        await session.execute(sa.delete(Campaign))
    await engine.dispose()


INVALID = [
    ({"field": AGE, "op": "like", "value": "x"}, "filter.op"),
    ({"all": [{"field": "shoe_size", "op": "eq", "value": 1}]}, "filter.all.0.field"),
    (
        {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": leaf("has_email", "eq", True)}}}}}}}},
        "filter" + ".not" * 8,
    ),
    ({"field": SPEND, "op": "range", "value": {"gte": 1, "lt": "z"}}, "filter.value"),
    ({"field": "engagement", "op": "clicked", "days": -1}, "filter.days"),
    ({"any": []}, "filter.any"),
]


async def test_invalid_filters_are_422_naming_the_path(client: TestClient, key: str) -> None:
    response = await client.post("/v1/lists", json={"name": "L"}, headers=bearer(key))
    list_id = (await response.json())["id"]
    for path in (f"/v1/lists/{list_id}/segments", f"/v1/lists/{list_id}/segments/preview"):
        for filter_doc, field in INVALID:
            response = await client.post(
                path,
                json={"name": "s", "filter": filter_doc}
                if path.endswith("segments")
                else {"filter": filter_doc},
                headers=bearer(key),
            )
            body = await response.json()
            assert response.status == 422, (filter_doc, body)
            assert body["error"]["details"][0]["field"] == field, body
    for body_doc, field in (
        ({"filter": {"all": []}}, "name"),
        ({"name": "s"}, "filter"),
        ({"name": "s", "filter": []}, "filter"),
    ):
        response = await client.post(f"/v1/lists/{list_id}/segments", json=body_doc, headers=bearer(key))
        assert response.status == 422
        assert (await response.json())["error"]["details"][0]["field"] == field
    response = await client.post(
        "/v1/lists/999999/segments", json={"name": "s", "filter": {"all": []}}, headers=bearer(key)
    )
    assert response.status == 404
    page = await (await client.get("/v1/segments", headers=bearer(key))).json()
    assert page["items"] == []  # nothing half-written
