"""Request and response models: they validate requests and feed the OpenAPI document."""

from __future__ import annotations

import types
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NaiveDatetime,
    ValidationInfo,
    field_validator,
)

from dispatcher.core.zones import is_known_zone

Scope = Literal["read", "write", "send", "admin"]
_DEFAULT_SCOPES: tuple[Scope, ...] = ("read", "write", "send")
# Ids are 64-bit in the database: a larger number must be refused here, not overflow a query parameter.
MAX_ID = 10**18
MAX_VERSION = 2**31 - 1  # template version numbers are 32-bit


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_json(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse what the lax mode would coerce or the database could not store, naming the field."""
        _refuse_unstorable(value)
        kinds = _kinds(cls.model_fields[info.field_name or ""].annotation)
        if isinstance(value, bool) and "number" in kinds and "bool" not in kinds:
            raise ValueError("must be a number, not true or false")
        if isinstance(value, int | float) and not isinstance(value, bool) and kinds == {"bool"}:
            raise ValueError("must be true or false, not a number")
        if kinds == {"datetime"} and _is_number(value):  # lax mode reads numbers as Unix timestamps
            raise ValueError("must be an ISO 8601 date-time such as 2030-01-14T10:30:00+01:00")
        return value


def _is_number(value: Any) -> bool:
    if isinstance(value, int | float):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _kinds(annotation: Any) -> set[str]:
    if get_origin(annotation) is Annotated:
        return _kinds(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in get_args(annotation)))
    if annotation is bool:
        return {"bool"}
    if annotation in (int, float, Decimal):
        return {"number"}
    if annotation in (datetime, AwareDatetime, NaiveDatetime):
        return {"datetime"}
    if annotation is type(None):
        return set()
    return {"other"}


def _refuse_unstorable(value: Any, depth: int = 0) -> None:
    """PostgreSQL text and JSONB hold no NUL character, and UTF-8 has no lone surrogate (``"\\ud800"``)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain the NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must not contain an unpaired surrogate") from None
    elif isinstance(value, dict) and depth < 50:
        for key, item in value.items():
            _refuse_unstorable(key, depth + 1)
            _refuse_unstorable(item, depth + 1)
    elif isinstance(value, list) and depth < 50:
        for item in value:
            _refuse_unstorable(item, depth + 1)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    field: str | None = None
    message: str | None = None


class ErrorInner(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. invalid_input, not_found")
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorInner


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=500, description="Page size")
    cursor: str | None = Field(None, pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")

    def after(self) -> int:
        return int(self.cursor) if self.cursor else 0


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "unavailable"]
    database: str
    redis: str
    workers: int = Field(description="Workers with a heartbeat in the last 30 s")


class WorkspaceOut(BaseModel):
    id: int
    slug: str
    name: str
    key_id: int
    scopes: list[str]


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=lambda: list(_DEFAULT_SCOPES), min_length=1)


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The full key. Shown once; only its hash is stored.")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None


class ListCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    default_region: str | None = Field(
        None, pattern=r"^[A-Za-z]{2}$", description="ISO 3166 country for numbers written without +CC"
    )
    default_timezone: str | None = Field(None, max_length=64, description="IANA zone used when none is known")

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not is_known_zone(value):
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value


class ListOut(BaseModel):
    id: int
    name: str
    description: str
    default_region: str | None
    default_timezone: str | None
    contact_count: int
    created_at: datetime


class ListPage(BaseModel):
    items: list[ListOut]
    next_cursor: str | None


class ImportQuery(Strict):
    default_region: str | None = Field(
        None,
        pattern=r"^[A-Za-z]{2}$",
        description="ISO country for numbers without +CC (default: the list's)",
    )
    dry_run: bool = Field(False, description="Clean and count everything, write no contact")
    consent_source: str | None = Field(
        None, max_length=200, description="Recorded as consent for each address"
    )
    channels: str | None = Field(
        None, pattern=r"^(sms|email)(,(sms|email))?$", description="sms, email or both: what the list is for"
    )
    check_deliverability: bool = Field(False, description="Also check that e-mail domains accept mail (DNS)")


class ImportOut(BaseModel):
    id: int
    list_id: int
    state: Literal["receiving", "queued", "running", "completed", "failed"] = Field(
        description="receiving: the file is still arriving; queued: complete, waiting for a worker; running: "
        "being cleaned (a big file already while it uploads, so the 202 may say running); completed or failed"
    )
    dry_run: bool
    filename: str | None
    rows_done: int = Field(description="Data rows processed so far (the header is not a row)")
    accepted: int
    rejected: int
    duplicate: int
    suppressed: int
    reasons: dict[str, int] = Field(
        description="Reason code → rows, for rejected, duplicate and suppressed rows"
    )
    bytes_total: int | None
    bytes_done: int
    percent: float | None = Field(description="Share of the file processed, 0–100")
    rows_per_second: float | None
    eta_seconds: float | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
