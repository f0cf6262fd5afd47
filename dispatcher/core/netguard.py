"""Refusing tenant-configured URLs and hosts that point into our own network (server-side request forgery).

A provider's ``base_url`` (and any host a tenant can name) is fetched by *our* workers, from inside our
network: pointed at ``169.254.169.254`` it would read cloud credentials, at ``127.0.0.1:6379`` it would talk
to Redis. So such a value must name a public host, unless the operator allows private ones (the demo, the
tests and the benchmarks talk to local stand-ins).

What counts as private is everything :mod:`ipaddress` does not call global (loopback, RFC 1918, link-local,
CGNAT, unspecified, documentation, benchmarking, …) plus multicast, and IPv6 forms that carry an IPv4
address inside (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4, Teredo)
are judged by that address. Host *names* are checked twice: special-use names (``localhost``, ``*.local``,
``*.internal`` …) are refused as typed, and the caller resolves the name and passes the addresses in
``resolved`` (the core does no I/O). Numeric spellings that resolvers accept but ``ipaddress`` does not
(``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``) are decoded the way ``inet_aton`` decodes them, so
they cannot slip through as "names".

A check when the URL is saved does not stop DNS rebinding (a name that resolves to a public address now
and to ``127.0.0.1`` at send time); the channel must apply :func:`is_public_address` to the address it
connects to.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from dispatcher.errors import InputError

__all__ = ["check_public_host", "check_public_url", "is_public_address", "parse_ip", "url_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SPECIAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_SPECIAL_SUFFIXES: Final = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
_NAT64: Final = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_NUMERIC_PART: Final = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_SCHEMES: Final = frozenset({"http", "https"})


def _refused(field: str, message: str) -> InputError:
    text = f"{field} {message}"
    return InputError(text, details=[{"field": field, "message": text}])


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """Decode the legacy numeric forms ``inet_aton`` accepts (1-4 parts, octal and hex), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART.fullmatch(p) for p in parts):
        return None
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                return None
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an address in any spelling a resolver accepts (brackets allowed), else None."""
    text = host.strip().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return ipaddress.ip_address(text.partition("%")[0])  # an IPv6 zone id does not change the address
    except ValueError:
        return _inet_aton(text)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64) or int(address) >> 32 == 0:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress | str) -> bool:
    """True only for a globally routable unicast address (an embedded IPv4 address must be one too)."""
    ip = parse_ip(address) if isinstance(address, str) else address
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public_address(inner):
            return False
    return ip.is_global and not ip.is_multicast


def _special_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name in _SPECIAL_NAMES or name.endswith(_SPECIAL_SUFFIXES) or "." not in name


def check_public_host(
    host: str, *, allow_private: bool, field: str = "host", resolved: Iterable[str] = ()
) -> None:
    """Raise InputError naming ``field`` unless ``host`` (and every address it resolved to) is public."""
    if allow_private:
        return
    ip = parse_ip(host)
    if ip is not None and not is_public_address(ip):
        raise _refused(field, f"points at a private or internal address ({ip}): not allowed")
    if ip is None and _NUMERIC_PART.fullmatch(host.rstrip(".").rpartition(".")[2]):
        raise _refused(field, f"is neither a valid address nor a host name ({host!r})")
    if ip is None and _special_name(host):
        raise _refused(field, f"names a local or internal host ({host!r}): not allowed")
    for address in resolved:
        if not is_public_address(address):
            raise _refused(field, f"resolves to a private or internal address ({address}): not allowed")


def url_host(url: str) -> str | None:
    """The host of an http(s) URL as a resolver would get it, or None when there is none."""
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None


def check_public_url(
    url: str, *, allow_private: bool, field: str = "base_url", resolved: Iterable[str] = ()
) -> None:
    """Raise InputError naming ``field`` unless ``url`` is http(s) to a public host.

    ``resolved`` are the addresses the caller's resolver gave for :func:`url_host` (none for an address).
    """
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise _refused(field, "is not a valid URL") from None
    if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        raise _refused(field, "must be an http(s) URL with a host")
    if any(ord(c) < 33 or c == "\x7f" for c in url.strip()):
        raise _refused(field, "must not contain spaces or control characters")
    check_public_host(parts.hostname, allow_private=allow_private, field=field, resolved=resolved)
