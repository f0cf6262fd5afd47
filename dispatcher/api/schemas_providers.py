"""Request and response models of provider accounts (SPEC §6)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from dispatcher.api.schemas import PageQuery, Strict

Channel = Literal["sms", "email"]
SENDER = r"^(\+[1-9][0-9]{6,14}|[A-Za-z0-9][A-Za-z0-9 ]{0,10}|[^@\s]{1,64}@[^@\s]{1,255})$"


class Routes(Strict):
    """Narrows which messages this provider may carry; unset means all of its channel."""

    prefixes: list[str] = Field(
        default_factory=list, max_length=500, description="E.164 prefixes, e.g. +44 or +1212 (SMS)"
    )
    campaigns: list[int] = Field(default_factory=list, max_length=10_000, description="Campaign ids")

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not re.match(r"^\+[0-9]{1,14}$", p)]
        if bad:
            raise ValueError(f"not an E.164 prefix: {bad[0]!r}")
        return value


class _ProviderConfig(Strict):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    from_: list[str] = Field(alias="from", min_length=1, max_length=100, description="Sender numbers / IDs")
    routes: Routes | None = None

    @field_validator("from_")
    @classmethod
    def _senders(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not re.match(SENDER, s)]
        if bad:
            raise ValueError(f"not a sender number or ID: {bad[0]!r}")
        return value

    def stored(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class _SmsReplies(_ProviderConfig):
    stop_reply: str | None = Field(None, min_length=1, max_length=320, description="Answer to STOP")
    start_reply: str | None = Field(None, min_length=1, max_length=320, description="Answer to START")
    help_reply: str | None = Field(None, min_length=1, max_length=320, description="Answer to HELP")


class TwilioConfig(_SmsReplies):
    """kind twilio_http: a Twilio-compatible REST API."""

    base_url: str = Field(
        pattern=r"^https?://\S+$", max_length=500, description="e.g. https://api.twilio.com"
    )
    account_sid: str = Field(min_length=1, max_length=100)
    auth_token: str | None = Field(
        None, min_length=1, max_length=200, description="Write-only: never returned (see auth_token_set)"
    )
    concurrency: int | None = Field(None, ge=1, le=1000, description="Requests in flight per worker")
    timeout_s: float | None = Field(None, gt=0, le=300)
    idempotency: bool | None = Field(None, description="The API honours an Idempotency-Key header")


class SmppProviderConfig(_SmsReplies):
    """kind smpp: an SMSC over SMPP 3.4 (transceiver bind)."""

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: str | None = Field(None, max_length=8, description="Write-only: never returned")
    system_type: str | None = Field(None, max_length=12)
    window: int | None = Field(None, ge=1, le=1024, description="submit_sm in flight (default 64)")
    registered_delivery: bool | None = Field(None, description="Ask for delivery receipts (default true)")
    throttle_retry_after: float | None = Field(None, ge=0, le=3600)


class SmtpProviderConfig(_ProviderConfig):
    """kind smtp: an SMTP relay; ``from`` is the default From of campaigns that name none."""

    from_: list[str] = Field(default_factory=list, alias="from", max_length=100, description="Default From")
    host: str = Field(min_length=1, max_length=255)
    port: int | None = Field(None, ge=1, le=65535, description="Default by tls: 25, 587 or 465")
    tls: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = Field(None, min_length=1, max_length=255)
    password: str | None = Field(None, min_length=1, max_length=1024, description="Write-only")
    local_hostname: str | None = Field(None, min_length=1, max_length=255)
    connections: int | None = Field(None, ge=1, le=100)
    timeout: float | None = Field(None, gt=0, le=300)
    tls_verify: bool | None = None
    mail_from: str | None = Field(None, max_length=320, description="Envelope sender (bounces go there)")
    reply_to: str | None = Field(None, max_length=320)
    message_id_domain: str | None = Field(None, max_length=253)
    dkim_selector: str | None = Field(None, min_length=1, max_length=63)
    dkim_domain: str | None = Field(None, min_length=1, max_length=253)
    dkim_private_key: str | None = Field(
        None, min_length=1, max_length=20_000, description="PEM; write-only: never returned"
    )


ProviderConfig = TwilioConfig | SmppProviderConfig | SmtpProviderConfig
Kind = Literal["twilio_http", "smpp", "smtp"]
_KIND_HELP = "twilio_http: Twilio-compatible REST API; smpp: SMPP 3.4 SMSC; smtp: SMTP relay (email)"
_CONFIG_OF_KIND: dict[str, type[_ProviderConfig]] = {
    "twilio_http": TwilioConfig,
    "smpp": SmppProviderConfig,
    "smtp": SmtpProviderConfig,
}


def _config_by_kind(data: Any, default_kind: str | None) -> Any:
    """Check ``config`` against its kind's model only, so an error names ``config.<key>`` instead of one
    guess per kind (a plain union reports every member's complaints)."""
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        return data
    model = _CONFIG_OF_KIND.get(str(data.get("kind", default_kind)))
    if model is None:
        return data  # an unknown kind is reported on ``kind``
    try:
        config = model.model_validate(data["config"])
    except ValidationError as exc:
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(e["type"], e["msg"]), loc=("config", *e["loc"]), input=e["input"]
            )
            for e in exc.errors()
        ]
        raise ValidationError.from_exception_data(exc.title, errors) from None
    return {**data, "config": config}


class ProviderCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    channel: Channel = "sms"
    kind: Kind = Field("twilio_http", description=_KIND_HELP)
    config: ProviderConfig = Field(description="Settings of the kind; secrets are write-only")
    price_per_segment: Decimal = Field(Decimal(0), ge=0, le=100, decimal_places=6)
    rate_limit_per_s: float | None = Field(
        None, gt=0, le=100_000, description="Messages per second, all workers"
    )
    priority: int = Field(100, ge=0, le=10_000, description="Lower goes first when several can send")
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _config_of_kind(cls, data: Any) -> Any:
        return _config_by_kind(data, "twilio_http")


class ProviderUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    channel: Channel | None = None
    kind: Kind | None = None
    config: ProviderConfig | None = Field(None, description="Replaces the config; a missing secret is kept")
    price_per_segment: Decimal | None = Field(None, ge=0, le=100, decimal_places=6)
    rate_limit_per_s: float | None = Field(None, gt=0, le=100_000)
    priority: int | None = Field(None, ge=0, le=10_000)
    enabled: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _config_of_kind(cls, data: Any) -> Any:
        return _config_by_kind(data, None)  # the route fills in the stored kind when the body has none

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
