"""Settings of one SMTP relay, checked once when the channel is built.

TLS is explicit (``none`` | ``starttls`` | ``tls``): aiosmtplib would otherwise upgrade to STARTTLS on its
own whenever a server offers it, and a relay that stops offering it would silently get plain text.
``local_hostname`` always has a value, or every connection looks the machine's name up first.
Keys the engine reads from the same provider config (``from``, ``mail_from``, ``reply_to``,
``message_id_domain``, ``routes``) are accepted and left to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from dispatcher.core.mime_headers import idna_domain, split_mailbox
from dispatcher.errors import InputError

__all__ = ["DEFAULT_PORTS", "SmtpConfig", "TlsMode", "smtp_config_from_dict"]

TlsMode = Literal["none", "starttls", "tls"]
DEFAULT_PORTS: Final[Mapping[str, int]] = {"none": 25, "starttls": 587, "tls": 465}
ENGINE_KEYS: Final = frozenset({"from", "mail_from", "reply_to", "message_id_domain", "routes"})


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    tls: TlsMode = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0  # each SMTP command, and connecting
    local_hostname: str = "localhost"
    connections: int = 10  # reused connections, messages spread over them
    name: str = "smtp"
    tls_verify: bool = True
    ca_file: str | None = None  # extra CA bundle (a private relay's own CA)
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key: str | None = None
    dkim_algorithm: str = "rsa-sha256"
    throttle_retry_after: float = 60.0  # SMTP says "later" (421, 450, 451, 452) but never how much later

    @property
    def dkim(self) -> bool:
        return self.dkim_private_key is not None


_STRINGS: Final = {
    "host": (1, 255),
    "username": (1, 255),
    "password": (1, 1024),
    "local_hostname": (1, 255),
    "name": (1, 64),
    "ca_file": (1, 4096),
    "dkim_selector": (1, 63),
    "dkim_domain": (1, 253),
    "dkim_private_key": (1, 20_000),
    "dkim_algorithm": (1, 32),
}
_INTS: Final = {"port": (1, 65535), "connections": (1, 200)}


def _problem(key: str, value: Any) -> str | None:
    if key in _STRINGS:
        shortest, longest = _STRINGS[key]
        ok = isinstance(value, str) and value.isprintable() and shortest <= len(value) <= longest
        if key == "dkim_private_key":  # a PEM spans lines
            ok = isinstance(value, str) and value.isascii() and shortest <= len(value) <= longest
        return None if ok else f"must be text of {shortest} to {longest} characters"
    if key in _INTS:
        low, high = _INTS[key]
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"must be an integer from {low} to {high}"
    if key in ("timeout", "timeout_s", "throttle_retry_after"):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return (
            None
            if number and math.isfinite(value) and 0.1 <= value <= 3600
            else "must be 0.1 to 3600 seconds"
        )
    if key == "tls":
        return None if value in DEFAULT_PORTS else "must be one of none, starttls, tls"
    if key == "tls_verify":
        return None if isinstance(value, bool) else "must be true or false"
    if key in _HEADER_KEYS:
        return _header_problem(key, value)
    return None if key in ENGINE_KEYS else "is not a known setting"


_HEADER_KEYS: Final = frozenset({"from", "mail_from", "reply_to", "message_id_domain"})


def _header_problem(key: str, value: Any) -> str | None:
    """These end up in headers or the envelope of every message: a bad one is refused when saved, not
    discovered by failing every send of the provider."""
    values = value if key == "from" and isinstance(value, list) else [value]
    for one in values:
        if not isinstance(one, str):
            return "must be text"
        try:
            if key == "message_id_domain":
                idna_domain(key, one)
            else:
                split_mailbox(key, one)
        except InputError as error:
            return error.message.removeprefix(f"{key} ")
    return None


def _pair_problems(config: Mapping[str, Any]) -> list[dict[str, str]]:
    details = []
    if ("username" in config) != ("password" in config):
        details.append({"field": "password", "problem": "username and password go together"})
    dkim = ("dkim_selector", "dkim_domain", "dkim_private_key")
    present = [key for key in dkim if config.get(key) is not None]
    if present and len(present) != len(dkim):
        missing = next(key for key in dkim if key not in present)
        details.append({"field": missing, "problem": "is required when DKIM is configured"})
    return details


def smtp_config_from_dict(config: Mapping[str, Any]) -> SmtpConfig:
    """Validated settings; InputError lists every bad, unknown or missing key at once."""
    if not isinstance(config, Mapping):
        raise InputError("SMTP config must be an object", details=[{"config": type(config).__name__}])
    given = {str(key): value for key, value in config.items() if value is not None}
    details = [
        {"field": key, "problem": problem}
        for key, value in given.items()
        if (problem := _problem(key, value)) is not None
    ]
    if "host" not in given:
        details.append({"field": "host", "problem": "is required"})
    details += _pair_problems(given)
    if details:
        raise InputError(
            "invalid SMTP config: " + ", ".join(f"{d['field']} {d['problem']}" for d in details),
            details=details,
        )
    values = {key: value for key, value in given.items() if key not in ENGINE_KEYS}
    if "timeout_s" in values:
        values["timeout"] = values.pop("timeout_s")
    values["timeout"] = float(values.get("timeout", 30.0))
    values["throttle_retry_after"] = float(values.get("throttle_retry_after", 60.0))
    values.setdefault("port", DEFAULT_PORTS[values.get("tls", "starttls")])
    return SmtpConfig(**values)
