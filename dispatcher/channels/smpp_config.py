"""Settings of one SMPP provider, checked once when the channel is built.

Lengths follow SMPP 3.4 §5.2 (system_id 15, password 8, system_type 12 octets): a longer value would
only fail later, at bind time, as an unhelpful bind error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dispatcher.errors import InputError

__all__ = ["ENGINE_KEYS", "SmppConfig", "smpp_config_from_dict"]

#: keys of the same provider config that the engine and the inbound handler read, not the connection
ENGINE_KEYS = frozenset({"from", "routes", "stop_reply", "start_reply", "help_reply"})


@dataclass(frozen=True, slots=True)
class SmppConfig:
    host: str
    system_id: str
    password: str = ""
    port: int = 2775
    system_type: str = ""
    name: str = "smpp"
    window: int = 64  # submit_sm in flight at once
    enquire_link_interval: float = 30.0  # seconds of silence before a keepalive
    connect_timeout: float = 10.0  # to bind (send_batch gives up after it), and each socket step
    submit_timeout: float = 60.0  # for a whole batch to be answered
    reconnect_min_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    throttle_retry_after: float = 1.0  # SMPP throttling says "slow down" but not for how long
    registered_delivery: bool = True  # ask for a delivery receipt (on the last part)


_STRINGS = {
    "host": (1, 255),
    "system_id": (1, 15),
    "password": (0, 8),
    "system_type": (0, 12),
    "name": (1, 64),
}
_INTS = {"port": (1, 65535), "window": (1, 1024)}
_FLOATS = {
    "enquire_link_interval": (1.0, 3600.0),
    "connect_timeout": (0.1, 300.0),
    "submit_timeout": (0.1, 3600.0),
    "reconnect_min_delay": (0.01, 60.0),
    "reconnect_max_delay": (0.01, 3600.0),
    "throttle_retry_after": (0.0, 3600.0),
}


def _problem(key: str, value: Any) -> str | None:
    if key in _STRINGS:
        shortest, longest = _STRINGS[key]
        ok = isinstance(value, str) and value.isascii() and shortest <= len(value) <= longest
        return None if ok else f"must be ASCII text of {shortest} to {longest} characters"
    if key in _INTS:
        low_int, high_int = _INTS[key]
        ok = isinstance(value, int) and not isinstance(value, bool) and low_int <= value <= high_int
        return None if ok else f"must be an integer from {low_int} to {high_int}"
    if key in _FLOATS:
        low, high = _FLOATS[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        ok = number and math.isfinite(value) and low <= value <= high
        return None if ok else f"must be a number of seconds from {low} to {high}"
    if key == "registered_delivery":
        return None if isinstance(value, bool) else "must be true or false"
    return "is not a known setting"


def smpp_config_from_dict(config: Mapping[str, Any]) -> SmppConfig:
    """Validated settings; InputError lists every bad or unknown key at once."""
    if not isinstance(config, Mapping):
        raise InputError("SMPP config must be an object", details=[{"config": type(config).__name__}])
    details = [
        {"field": key, "problem": problem}
        for key, value in config.items()
        if key not in ENGINE_KEYS and (problem := _problem(str(key), value)) is not None
    ]
    details += [
        {"field": key, "problem": "is required"} for key in ("host", "system_id") if key not in config
    ]
    if not details and config.get("reconnect_min_delay", 0.5) > config.get("reconnect_max_delay", 30.0):
        details.append({"field": "reconnect_min_delay", "problem": "must not exceed reconnect_max_delay"})
    if details:
        raise InputError(
            "invalid SMPP config: " + ", ".join(f"{d['field']} {d['problem']}" for d in details),
            details=details,
        )
    known = {field.name for field in fields(SmppConfig)}
    values: dict[str, Any] = {key: value for key, value in config.items() if key in known}
    values.update({key: float(value) for key, value in values.items() if key in _FLOATS})
    return SmppConfig(**values)
