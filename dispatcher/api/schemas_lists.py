"""Request and response models of contacts, suppressions and segments (the rest of SPEC §3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from dispatcher.api.schemas import MAX_ID, PageQuery, Strict

Channel = Literal["sms", "email", "all"]
Reason = Literal["unsubscribe", "stop", "hard_bounce", "complaint", "manual"]

FILTER_DOC = (
    'Segment filter: {"all": [...]}, {"any": [...]}, {"not": {...}} or a condition '
    '{"field": "attributes.<name>" | "phone_region" | "phone_type" | "timezone" | "sms_capable" | '
    '"has_email" | "has_phone", "op": "eq" | "in" | "range" | "exists", "value": ...}, or '
    '{"field": "engagement", "op": "clicked" | "replied", "days": N}. At most 8 levels and 100 conditions.'
)


class ContactQuery(PageQuery):
    q: str | None = Field(
        None, min_length=1, max_length=100, description="Prefix of the phone, e-mail, first or last name"
    )
    sms_capable: bool | None = None
    has_email: bool | None = None
    has_phone: bool | None = None
    phone_region: str | None = Field(None, pattern=r"^[A-Za-z]{2}$", description="ISO country of the number")
    segment_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="Only contacts in this segment of the list"
    )


class ContactOut(BaseModel):
    id: int
    list_id: int
    phone: str | None
    phone_type: str | None
    phone_region: str | None
    time_zones: list[str]
    sms_capable: bool
    email: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    attributes: dict[str, Any]
    created_at: datetime


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None


class SuppressionCreate(Strict):
    channel: Channel
    address: str = Field(min_length=1, max_length=320, description="Phone number or e-mail address")
    reason: Reason
    source: str = Field("", max_length=200, description="Where the request came from, for the record")
    default_region: str | None = Field(
        None, pattern=r"^[A-Za-z]{2}$", description="ISO country for a phone number written without +CC"
    )


class SuppressionQuery(PageQuery):
    channel: Channel | None = None
    reason: Reason | None = None
    address: str | None = Field(None, min_length=1, max_length=320)


class SuppressionOut(BaseModel):
    id: int
    channel: str
    address: str
    reason: str
    source: str
    created_at: datetime


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None


class SegmentCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    filter: dict[str, Any] = Field(description=FILTER_DOC)


class SegmentPreview(Strict):
    filter: dict[str, Any] = Field(description=FILTER_DOC)


class SegmentQuery(PageQuery):
    list_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only segments of this list")


class SegmentOut(BaseModel):
    id: int
    list_id: int
    name: str
    filter: dict[str, Any]
    count: int | None = Field(None, description="Contacts matching now (only on GET of one segment)")
    created_at: datetime


class SegmentPage(BaseModel):
    items: list[SegmentOut]
    next_cursor: str | None


class AudienceOut(BaseModel):
    count: int
    sample: list[int] = Field(description="The first contact ids that match")
