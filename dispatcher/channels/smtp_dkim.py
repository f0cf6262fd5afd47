"""DKIM signatures (RFC 6376, relaxed/relaxed) for the SMTP channel, with dkimpy.

Signing lives at the channel edge, not in core: dkimpy stamps ``t=`` from the clock. RSA signing runs in
pure Python inside dkimpy (about 150 signatures/s per core with a 2048-bit key, see bench/smtp_ceiling.py);
ed25519-sha256 (RFC 8463) needs PyNaCl and is far cheaper. Headers the skeleton never writes for a message
(``Reply-To``, ``List-Unsubscribe``...) are still named in ``h=``: that signs their absence, so nobody can
add them on the way without breaking the signature.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import dkim  # type: ignore[import-untyped]

from dispatcher.errors import InputError

__all__ = ["SIGNED_HEADERS", "DkimAlgorithm", "DkimSigner"]

DkimAlgorithm = Literal["rsa-sha256", "ed25519-sha256"]
SIGNED_HEADERS: Final = (
    "from",
    "reply-to",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
_SELECTOR: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})")
_DOMAIN: Final = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+"
)
_PROBE: Final = b"From: probe@example.invalid\r\nSubject: probe\r\n\r\nprobe\r\n"


class DkimSigner:
    """Prepends a ``DKIM-Signature`` to serialised messages; the key is checked once, when built."""

    __slots__ = ("_algorithm", "_domain", "_headers", "_key", "_selector", "algorithm")

    def __init__(
        self,
        *,
        selector: str,
        domain: str,
        private_key: str | bytes,
        algorithm: DkimAlgorithm = "rsa-sha256",
        headers: tuple[str, ...] = SIGNED_HEADERS,
    ) -> None:
        if _SELECTOR.fullmatch(selector) is None:
            raise InputError(f"dkim selector {selector!r} is not a DNS label")
        if _DOMAIN.fullmatch(domain) is None:
            raise InputError(f"dkim domain {domain!r} is not an ASCII domain name")
        if algorithm not in ("rsa-sha256", "ed25519-sha256"):
            raise InputError(f"dkim algorithm must be rsa-sha256 or ed25519-sha256, not {algorithm!r}")
        if "from" not in headers:
            raise InputError("dkim must sign the From header")
        self.algorithm: DkimAlgorithm = algorithm
        self._algorithm = algorithm.encode("ascii")
        self._selector = selector.encode("ascii")
        self._domain = domain.encode("ascii")
        self._key = private_key.encode("ascii") if isinstance(private_key, str) else private_key
        self._headers = [name.lower().encode("ascii") for name in headers]
        try:
            self.sign(_PROBE)
        except (dkim.DKIMException, ValueError, IndexError, TypeError) as exc:
            raise InputError(f"dkim private key is not usable for {algorithm}: {exc}") from None

    def sign(self, message: bytes) -> bytes:
        """``message`` with its signature header in front (CRLF line endings in and out)."""
        signature: bytes = dkim.sign(
            message,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=self._algorithm,
            include_headers=self._headers,
            linesep=b"\r\n",
        )
        return signature + message
