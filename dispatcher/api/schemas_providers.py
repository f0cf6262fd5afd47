"""Request and response models of provider accounts (SPEC §6)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dispatcher.api.schemas import PageQuery, Strict

Channel = Literal["sms", "email"]
SENDER = r"^(\+[1-9][0-9]{6,14}|[A-Za-z0-9][A-Za-z0-9 ]{0,10}|[^@\s]{1,64}@[^@\s]{1,255})$"


class TwilioConfig(Strict):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    base_url: str = Field(
        pattern=r"^https?://\S+$", max_length=500, description="e.g. https://api.twilio.com"
    )
    account_sid: str = Field(min_length=1, max_length=100)
    auth_token: str | None = Field(
        None, min_length=1, max_length=200, description="Write-only: never returned (see auth_token_set)"
    )
    from_: list[str] = Field(alias="from", min_length=1, max_length=100, description="Sender numbers / IDs")

    @field_validator("from_")
    @classmethod
    def _senders(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not re.match(SENDER, s)]
        if bad:
            raise ValueError(f"not a sender number or ID: {bad[0]!r}")
        return value

    def stored(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class ProviderCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    channel: Channel = "sms"
    kind: Literal["twilio_http"] = Field("twilio_http", description="twilio_http: Twilio-compatible REST API")
    config: TwilioConfig
    price_per_segment: Decimal = Field(Decimal(0), ge=0, le=100, decimal_places=6)
    rate_limit_per_s: float | None = Field(
        None, gt=0, le=100_000, description="Messages per second, all workers"
    )
    priority: int = Field(100, ge=0, le=10_000, description="Lower goes first when several can send")
    enabled: bool = True


class ProviderUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    channel: Channel | None = None
    kind: Literal["twilio_http"] | None = None
    config: TwilioConfig | None = Field(None, description="Replaces the config; a missing auth_token is kept")
    price_per_segment: Decimal | None = Field(None, ge=0, le=100, decimal_places=6)
    rate_limit_per_s: float | None = Field(None, gt=0, le=100_000)
    priority: int | None = Field(None, ge=0, le=10_000)
    enabled: bool | None = None

    def changes(self) -> dict[str, Any]:
        changes = {name: getattr(self, name) for name in self.model_fields_set if name != "config"}
        if self.config is not None:
            changes["config"] = self.config.stored()
        nullable = {"rate_limit_per_s"}
        return {k: v for k, v in changes.items() if v is not None or k in nullable}


class ProviderQuery(PageQuery):
    channel: Channel | None = None


class ProviderOut(BaseModel):
    id: int
    name: str
    channel: str
    kind: str
    config: dict[str, Any] = Field(description="Secrets left out: auth_token_set says whether one is stored")
    price_per_segment: Decimal
    rate_limit_per_s: float | None
    priority: int
    enabled: bool
    created_at: datetime


class ProviderPage(BaseModel):
    items: list[ProviderOut]
    next_cursor: str | None
