"""Request and response models of the inbound side: conversions and the e-mail event webhook's reply."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field, model_validator

from dispatcher.api.schemas import MAX_ID, Strict


class ConversionCreate(Strict):
    token: str | None = Field(
        None, min_length=5, max_length=64, description="Tracking code of the message (the open-pixel token)"
    )
    contact_id: int | None = Field(None, ge=1, le=MAX_ID, description="With campaign_id, instead of a token")
    campaign_id: int | None = Field(None, ge=1, le=MAX_ID)
    value: Decimal | None = Field(None, ge=0, le=Decimal("99999999"), decimal_places=6, description="Revenue")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    external_id: str = Field(
        min_length=1, max_length=150, description="Your order or event id: a repeat counts once (200)"
    )

    @model_validator(mode="after")
    def _attributed(self) -> ConversionCreate:
        if self.token is None and (self.contact_id is None or self.campaign_id is None):
            raise ValueError("give a token, or both contact_id and campaign_id")
        return self


class ConversionOut(BaseModel):
    id: int
    message_id: int | None
    campaign_id: int | None
    contact_id: int | None
    value: Decimal | None
    currency: str | None
    external_id: str
    occurred_at: datetime


class HookTally(BaseModel):
    received: int
    applied: int
    unknown: int
    suppressed: int
