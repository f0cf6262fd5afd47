"""API keys: created once, shown once, stored as a SHA-256 hash, checked in constant time.

Keys are 32 random bytes, so a fast hash is safe here (no dictionary to guess from), and lookups stay cheap
on every request. Format: ``dsp_<prefix>_<secret>``; the prefix finds the row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.errors import AuthenticationError, InputError, PermissionDeniedError
from dispatcher.storage import keys as key_store

SCOPES = ("read", "write", "send", "admin")
DEFAULT_SCOPES = ("read", "write", "send")
# A scope implies the ones before it: a "send" key can also read and write.
_IMPLIES = {"read": {"read"}, "write": {"read", "write"}, "send": {"read", "write", "send"}}
_IMPLIES["admin"] = {"read", "write", "send", "admin"}


@dataclass(frozen=True, slots=True)
class Principal:
    workspace_id: int
    key_id: int
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDeniedError(f"this API key lacks the {scope!r} scope")


@dataclass(frozen=True, slots=True)
class NewKey:
    id: int
    workspace_id: int
    token: str  # the only moment the full key exists outside the caller's hands


def expand_scopes(scopes: Iterable[str]) -> frozenset[str]:
    granted: set[str] = set()
    for scope in scopes:
        if scope not in _IMPLIES:
            raise InputError(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")
        granted |= _IMPLIES[scope]
    return frozenset(granted)


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def split_token(token: str) -> str:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "dsp" or len(parts[1]) != 12 or len(parts[2]) < 20:
        raise AuthenticationError("malformed API key")
    return parts[1]


async def create_key(
    session: AsyncSession, *, workspace_slug: str, name: str, scopes: Iterable[str], now: datetime
) -> NewKey:
    scope_list = sorted(expand_scopes(scopes))
    workspace = await key_store.get_or_create_workspace(session, workspace_slug, now=now)
    return await _mint(session, workspace.id, name, scope_list, now)


async def create_key_in(
    session: AsyncSession, *, workspace_id: int, name: str, scopes: Iterable[str], now: datetime
) -> NewKey:
    return await _mint(session, workspace_id, name, sorted(expand_scopes(scopes)), now)


async def _mint(
    session: AsyncSession, workspace_id: int, name: str, scopes: list[str], now: datetime
) -> NewKey:
    prefix = secrets.token_hex(6)
    token = f"dsp_{prefix}_{secrets.token_urlsafe(32)}"
    row = await key_store.add_key(
        session,
        workspace_id=workspace_id,
        name=name,
        prefix=prefix,
        key_hash=hash_key(token),
        scopes=scopes,
        now=now,
    )
    return NewKey(id=row.id, workspace_id=workspace_id, token=token)


async def authenticate(session: AsyncSession, header: str | None) -> Principal:
    if not header:
        raise AuthenticationError("missing Authorization header; send 'Authorization: Bearer <API key>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization must be 'Bearer <API key>'")
    token = token.strip()
    row = await key_store.key_by_prefix(session, split_token(token))
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(token)):
        raise AuthenticationError("unknown or revoked API key")
    return Principal(workspace_id=row.workspace_id, key_id=row.id, scopes=frozenset(row.scopes))
