"""Where one recipient of a campaign goes: address, A/B variant, pilot or main batch, and first send instant.

Everything here is a pure function of the campaign and the contact, so planning the same campaign twice
(a crashed planning job re-run) decides the same thing for every contact, and a marketer can tell why a
recipient got variant B. Variant and pilot draws hash ``(campaign_id, contact_id)`` with different salts,
so the pilot sample carries the same A/B split as the whole audience.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from dispatcher.core.windows import Window, ZonePlanner, resolve_zones
from dispatcher.errors import InputError

PlacementState = Literal["planned", "expired", "suppressed"]
NO_WINDOW: Final = "no_window_before_end"
_SCALE: Final = float(1 << 64)


def draw(campaign_id: int, contact_id: int, salt: str) -> float:
    """A stable pseudo-random number in ``[0, 1)`` for this recipient of this campaign."""
    digest = hashlib.blake2b(f"{salt}:{campaign_id}:{contact_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def pick_variant(weights: Sequence[tuple[str, int]], point: float) -> str:
    """The variant whose share of the total weight covers ``point`` (weights in the given order)."""
    total = sum(weight for _, weight in weights)
    if total <= 0:
        raise InputError("variant weights must add up to more than 0")
    target = point * total
    running = 0
    for name, weight in weights:
        running += weight
        if target < running:
            return name
    return weights[-1][0]


def in_pilot(percent: int | None, point: float) -> bool:
    return percent is not None and point * 100 < percent


@dataclass(frozen=True, slots=True)
class Recipient:
    """The contact fields planning reads."""

    contact_id: int
    phone: str | None
    email: str | None
    sms_capable: bool
    time_zones: Sequence[str]
    timezone: str | None


def address_for(channel: str, recipient: Recipient) -> str | None:
    """The address a channel sends to, or None when the contact cannot be reached on it."""
    if channel == "sms":
        return recipient.phone if recipient.phone and recipient.sms_capable else None
    if channel == "email":
        return recipient.email or None
    raise InputError(f"unknown channel {channel!r}")


@dataclass(frozen=True, slots=True)
class Placement:
    contact_id: int
    address: str
    variant: str
    pilot: bool
    state: PlacementState
    not_before: datetime | None  # None unless planned


@dataclass(frozen=True, slots=True)
class CampaignShape:
    """What planning needs of a campaign; ``start`` is when sending may begin (max of now and start_at)."""

    campaign_id: int
    channel: str
    weights: tuple[tuple[str, int], ...]
    pilot_percent: int | None
    windows: tuple[Window, ...]
    allowed: Window
    start: datetime
    end: datetime
    list_zone: str | None
    # when recipients' zones are judged (the campaign's start): later ticks judge them at the same instant
    zones_at: datetime | None = None


@dataclass
class AudiencePlanner:
    """Places recipients one by one; zone resolution and zone plans are cached per distinct zone tuple."""

    shape: CampaignShape
    _planner: ZonePlanner = field(init=False)
    _zones: dict[tuple[tuple[str, ...], str | None], tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        shape = self.shape
        self._planner = ZonePlanner(shape.start, shape.end, shape.windows, shape.allowed)
        self._zones = {}

    def zones(self, recipient: Recipient) -> tuple[str, ...]:
        key = (tuple(recipient.time_zones), recipient.timezone)
        found = self._zones.get(key)
        if found is None:
            shape = self.shape
            at = shape.zones_at or shape.start
            found = resolve_zones(key[0], key[1], shape.list_zone, shape.windows, shape.allowed, at)
            self._zones[key] = found
        return found

    def first_send(self, recipient: Recipient) -> datetime | None:
        """The earliest instant in ``[start, end)`` inside a window in every zone of the recipient."""
        return self._planner.next_after(self.zones(recipient), self.shape.start)

    def place(self, recipient: Recipient, *, suppressed: bool) -> Placement | None:
        """None when the contact has no usable address on the channel (it is counted as excluded)."""
        shape = self.shape
        address = address_for(shape.channel, recipient)
        if address is None:
            return None
        variant = pick_variant(shape.weights, draw(shape.campaign_id, recipient.contact_id, "variant"))
        pilot = in_pilot(shape.pilot_percent, draw(shape.campaign_id, recipient.contact_id, "pilot"))
        if suppressed:
            return Placement(recipient.contact_id, address, variant, pilot, "suppressed", None)
        when = self.first_send(recipient)
        state: PlacementState = "planned" if when is not None else "expired"
        return Placement(recipient.contact_id, address, variant, pilot, state, when)


def weights_of(variants: Mapping[str, Mapping[str, object]]) -> tuple[tuple[str, int], ...]:
    """``campaign.variants`` as ordered (name, weight) pairs; order is by name, so it is stable."""
    pairs = []
    for name in sorted(variants):
        weight = variants[name].get("weight", 1)
        if not isinstance(weight, int) or weight < 0:
            raise InputError(f"variant {name} has an invalid weight {weight!r}")
        pairs.append((name, weight))
    return tuple(pairs)
