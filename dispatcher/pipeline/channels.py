"""Channel clients for a worker: which class talks to which kind of provider, built from its config."""

from __future__ import annotations

from collections.abc import Callable

from dispatcher.channels.base import EmailChannel, SmsChannel
from dispatcher.channels.smpp import smpp_channel_from_config
from dispatcher.channels.smtp import smtp_channel_from_config
from dispatcher.channels.twilio_http import TwilioHttpChannel
from dispatcher.errors import InputError
from dispatcher.pipeline.context import WorkerResources
from dispatcher.pipeline.smpp_events import SmppEvents
from dispatcher.storage.content import Provider


def channel_factory(res: WorkerResources) -> Callable[[Provider], SmsChannel | EmailChannel]:
    def build(provider: Provider) -> SmsChannel | EmailChannel:
        config = provider.config or {}
        if provider.kind == "twilio_http":
            return TwilioHttpChannel(
                base_url=str(config["base_url"]),
                account_sid=str(config["account_sid"]),
                auth_token=str(config["auth_token"]),
                session=res.http,
                concurrency=int(config.get("concurrency", 50)),
                timeout=float(config.get("timeout_s", 10.0)),
                supports_idempotency=bool(config.get("idempotency", True)),
            )
        if provider.kind == "smtp":
            return smtp_channel_from_config(config)
        if provider.kind == "smpp":
            events = SmppEvents(provider, res.sessions)
            channel = smpp_channel_from_config(
                config, on_receipt=events.on_receipt, on_inbound=events.on_inbound
            )
            events.channel = channel
            return channel
        raise InputError(f"provider kind {provider.kind!r} has no channel")

    return build
