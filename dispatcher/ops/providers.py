"""Provider accounts: where a campaign's messages go out, and what each costs.

Secrets in ``config`` (``auth_token``, ``password``, ``dkim_private_key``) are write-only: stored, used by
the channel, never returned (:func:`public_config` shows ``auth_token_set`` and so on instead). An update
that leaves a secret out keeps it. Each kind's config is checked by its channel's own validator before it
is stored, so a provider that would fail to connect for a config reason is refused at the API.
A provider that a campaign still points at cannot be deleted: disable it instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.channels.smpp_config import smpp_config_from_dict
from dispatcher.channels.smtp_config import smtp_config_from_dict
from dispatcher.core.lifecycle import ACTIVE_STATES
from dispatcher.core.netguard import check_public_host, check_public_url, url_host
from dispatcher.errors import ConflictError, InputError, NotFoundError
from dispatcher.storage import providers as store
from dispatcher.storage.content import Provider

SECRET_KEYS: Final = ("auth_token", "password", "dkim_private_key")
_SECRETS_OF_KIND: Final = {
    "twilio_http": ("auth_token",),
    "smpp": ("password",),
    "smtp": ("password", "dkim_private_key"),
}
CHANNEL_OF_KIND: Final = {"twilio_http": "sms", "smpp": "sms", "smtp": "email"}
_REQUIRED_SECRETS: Final = {"twilio_http": ("auth_token",)}
_RESOLVE_S: Final = 2.0


def _check_config(kind: str, config: Mapping[str, Any]) -> None:
    """The channel's own validator (reconnect delays, DKIM pairs, TLS ports...); its InputError names the
    key, prefixed here with ``config.`` so it points into the request body."""
    check = {"smpp": smpp_config_from_dict, "smtp": smtp_config_from_dict}.get(kind)
    try:
        if check is not None:
            check(config)
    except InputError as error:
        details = [{**d, "field": f"config.{d.get('field', '')}"} for d in error.details or []]
        raise InputError(error.message, details=details) from None
    for key in _REQUIRED_SECRETS.get(kind, ()):
        if not config.get(key):
            message = f"{key} is required for a {kind} provider"
            raise InputError(message, details=[{"field": f"config.{key}", "message": message}])


async def _resolve(host: str | None) -> list[str]:
    """Addresses the name resolves to now; none when it does not resolve (the send will fail instead)."""
    if not host:
        return []
    try:
        found = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, None), _RESOLVE_S)
    except (OSError, TimeoutError, UnicodeError):
        return []
    return [str(info[4][0]) for info in found]


async def _check_network(kind: str, config: Mapping[str, Any], *, allow_private: bool) -> None:
    """A tenant must not aim our workers at our own network (SSRF). Checked when saved; a name that later
    re-resolves to a private address is the channel's problem, not this check's."""
    if allow_private:
        return
    if kind == "twilio_http":
        url = str(config.get("base_url") or "")
        resolved = await _resolve(url_host(url))
        check_public_url(url, allow_private=False, field="config.base_url", resolved=resolved)
    elif "host" in config:
        host = str(config["host"])
        resolved = await _resolve(host)
        check_public_host(host, allow_private=False, field="config.host", resolved=resolved)


def public_config(config: Mapping[str, Any], kind: str) -> dict[str, Any]:
    shown = {k: v for k, v in config.items() if k not in SECRET_KEYS}
    for key in _SECRETS_OF_KIND.get(kind, SECRET_KEYS):
        shown[f"{key}_set"] = bool(config.get(key))
    return shown


def _check_kind(kind: str, channel: str) -> None:
    expected = CHANNEL_OF_KIND.get(kind)
    if expected is None:
        raise InputError(f"unknown provider kind {kind!r}", details=[{"field": "kind"}])
    if expected != channel:
        message = f"a {kind} provider sends {expected}, not {channel}"
        raise InputError(message, details=[{"field": "channel", "message": message}])


async def get_provider(session: AsyncSession, workspace_id: int, provider_id: int) -> Provider:
    found = await store.get_provider(session, workspace_id, provider_id)
    if found is None:
        raise NotFoundError(f"provider {provider_id} not found")
    return found


async def create_provider(
    session: AsyncSession,
    workspace_id: int,
    values: Mapping[str, Any],
    *,
    now: datetime,
    allow_private: bool = False,
) -> Provider:
    _check_kind(values["kind"], values["channel"])
    _check_config(values["kind"], values["config"])
    await _check_network(values["kind"], values["config"], allow_private=allow_private)
    return await store.add_provider(session, workspace_id=workspace_id, now=now, **values)


async def update_provider(
    session: AsyncSession,
    workspace_id: int,
    provider_id: int,
    changes: Mapping[str, Any],
    *,
    allow_private: bool = False,
) -> Provider:
    provider = await get_provider(session, workspace_id, provider_id)
    merged = dict(changes)
    kind = merged.get("kind", provider.kind)
    if "config" in merged and kind == provider.kind:
        config = dict(merged["config"])
        for key in SECRET_KEYS:
            if not config.get(key) and provider.config.get(key):
                config[key] = provider.config[key]  # left out of the update: kept
        merged["config"] = config
    elif kind != provider.kind and "config" not in merged:
        message = f"changing kind to {kind} needs a config for it"
        raise InputError(message, details=[{"field": "config", "message": message}])
    _check_kind(kind, merged.get("channel", provider.channel))
    _check_config(kind, merged.get("config", provider.config))
    if "config" in merged:
        await _check_network(kind, merged["config"], allow_private=allow_private)
    changes_channel = "channel" in merged and merged["channel"] != provider.channel
    if changes_channel and await store.campaigns_using(session, workspace_id, provider_id):
        raise ConflictError(f"provider {provider_id} is used by campaigns: its channel cannot change")
    if "name" in merged and await store.name_in_use(
        session, workspace_id, merged["name"], exclude_id=provider_id
    ):
        raise ConflictError(f"a provider named {merged['name']!r} already exists")
    return await store.update_provider(session, provider, merged)


async def delete_provider(session: AsyncSession, workspace_id: int, provider_id: int) -> None:
    await get_provider(session, workspace_id, provider_id)
    active = await store.campaigns_using(session, workspace_id, provider_id, ACTIVE_STATES)
    if active:
        cid, state = active[0]
        raise ConflictError(
            f"provider {provider_id} is used by campaign {cid}, which is {state}; cancel it first"
        )
    others = await store.campaigns_using(session, workspace_id, provider_id)
    if others:
        cid, state = others[0]
        raise ConflictError(
            f"provider {provider_id} is named by campaign {cid} ({state}); disable it (enabled=false) instead"
        )
    if not await store.delete_provider(session, workspace_id, provider_id):
        raise NotFoundError(f"provider {provider_id} not found")
