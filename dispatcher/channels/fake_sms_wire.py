"""The Twilio wire format as the local stand-in speaks it: form parsing, validation, JSON bodies.

Validation follows Twilio's order and error codes for the fields a marketing sender uses, and answers
Twilio's magic test numbers with their documented errors.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from email.utils import formatdate
from functools import lru_cache
from typing import Any, Final
from urllib.parse import unquote_plus

import orjson
from aiohttp import web

from dispatcher.channels.fake_sms_store import FakeSmsConfig, SmsRecord
from dispatcher.channels.twilio_http import API_VERSION, messages_path

__all__ = ["MAGIC_NUMBERS", "message_body", "message_json", "parse_form", "twilio_error", "validate_form"]

_E164: Final = re.compile(r"\+[1-9]\d{6,14}")
_MAX_BODY: Final = 1600
# Twilio's magic test numbers and the errors a test account answers them with.
MAGIC_NUMBERS: Final[Mapping[str, tuple[int, str]]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550003": (21408, "Permission to send an SMS has not been enabled for the region."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}


def twilio_error(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


def validate_form(form: Mapping[str, str]) -> tuple[int, str] | None:
    to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
    callback = form.get("StatusCallback")
    if not to:
        return 21604, "A 'To' phone number is required."
    if not sender:
        return 21603, "A 'From' phone number is required."
    if not body:
        return 21602, "Message body is required."
    if len(body) > _MAX_BODY:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    if callback is not None and not callback.startswith(("http://", "https://")):
        return 21609, "Invalid StatusCallback url"
    if not _E164.fullmatch(to):
        return 21211, f"The 'To' number {to} is not a valid phone number."
    return MAGIC_NUMBERS.get(to)


@lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


@lru_cache(maxsize=16)
def _messages_uri(account_sid: str) -> str:
    return messages_path(account_sid).removesuffix(".json")


def message_json(config: FakeSmsConfig, record: SmsRecord) -> dict[str, Any]:
    created = _http_date(int(record.received_at))
    return {
        "sid": record.sid,
        "account_sid": config.account_sid,
        "api_version": API_VERSION,
        "to": record.to,
        "from": record.sender,
        "body": record.body,
        "status": record.status,
        "direction": "outbound-api",
        "num_segments": str(record.segments),
        "num_media": "0",
        "error_code": None,
        "error_message": None,
        "price": None,
        "price_unit": "USD",
        "date_created": created,
        "date_updated": created,
        "uri": f"{_messages_uri(config.account_sid)}/{record.sid}.json",
    }


def message_body(config: FakeSmsConfig, record: SmsRecord) -> bytes:
    """:func:`message_json` serialised: the answer to every message the stand-in takes (orjson, a third of
    the standard library's time)."""
    return orjson.dumps(message_json(config, record))


def parse_form(text: str) -> dict[str, str]:
    """An urlencoded body as a dict (last value wins).

    Hot path: a plain split, decoding only what is encoded, is ~3x cheaper than ``request.post()``.
    """
    form = {}
    for part in text.split("&"):
        if part:
            key, _, value = part.partition("=")
            form[_unquote(key)] = _unquote(value)
    return form


def _unquote(text: str) -> str:
    """``unquote_plus(text)``, at about six times its speed for an encoded message body.

    A well-formed form body is ASCII: each ``%XX`` becomes a ``\\xXX`` escape that the C escape decoder
    turns into bytes, read back as UTF-8. Anything else (a stray ``%``, raw non-ASCII, bytes that are not
    UTF-8) takes ``unquote_plus`` itself, so the result is the same either way."""
    if "%" not in text:
        return text.replace("+", " ") if "+" in text else text
    if text.isascii():
        escaped = text.replace("\\", "\\\\").replace("+", " ").replace("%", "\\x")
        try:
            return codecs.escape_decode(escaped.encode("ascii"))[0].decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            pass
    return unquote_plus(text)
