"""What the send path carries of a ledger row: loaded to go (:class:`Due`), and the outcome written back
(:class:`Sent`, :class:`Retry`, :class:`Final`) by :mod:`dispatcher.storage.ledger`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Due:
    """A ledger row loaded for sending, with what rendering needs of its contact."""

    id: int
    contact_id: int
    variant: str
    address: str
    attempts: int
    idempotency_key: str | None
    contact: dict[str, Any]
    time_zones: list[str]
    timezone: str | None
    provider_id: int | None = None  # the provider of the last attempt
    ambiguous: bool = False  # that attempt may have reached it


@dataclass(frozen=True, slots=True)
class Sent:
    id: int
    provider_message_id: str | None
    segments: int | None
    cost: Decimal | None
    possible_duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    id: int
    not_before: datetime
    error_code: str | None
    error_detail: str | None
    possible_duplicate: bool = False
    ambiguous: bool = False  # this attempt may have reached the provider: pin the retry to it
    counted: bool = True  # False: the attempt says nothing about the message (throttled, unreachable)


@dataclass(frozen=True, slots=True)
class Final:
    id: int
    state: str  # failed | capped | suppressed | expired
    error_code: str | None = None
    error_detail: str | None = None
