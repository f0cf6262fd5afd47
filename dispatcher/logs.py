"""Structured logging that never writes a phone number or an e-mail address.

Every string value passing through structlog is masked, so a careless ``log.info(..., to=phone)`` still
logs ``+1555***67``-style text instead of the recipient. Records of the standard library's loggers (arq's
job failures, aiohttp, SQLAlchemy errors quoting their parameters) are masked by a filter on the root
handlers, tracebacks included. Addresses are matched with Unicode local parts and domains, IDNA (``xn--``)
top-level domains and the URL-encoded ``%40``, since all of those reach logs through URLs and exceptions.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Starts only where a run of address characters starts: otherwise a long word is rescanned from every
# character (measured: 20,000 letters took 10 s; now linear).
_EMAIL = re.compile(
    r"(?<![\w.%+\-'])([\w.%+\-'])[\w.%+\-']*(?:@|%40)((?:[\w\-]+\.)+(?:[^\W\d_]{2,}|xn--[\w\-]+))"
)
# Seven or more digits, optionally led by + and broken by spaces, dots, dashes or brackets.
_PHONE = re.compile(r"(?<![\w])\+?\d[\d\s().\-]{5,}\d(?![\w])")


def mask_email(match: re.Match[str]) -> str:
    return f"{match.group(1)}***@{match.group(2)}"


def mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = [c for c in text if c.isdigit()]
    if len(digits) < 7:
        return text
    return f"{'+' if text.startswith('+') else ''}{''.join(digits[:3])}***{''.join(digits[-2:])}"


def mask_pii(text: str) -> str:
    return _PHONE.sub(mask_phone, _EMAIL.sub(mask_email, text))


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


def _mask_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key not in {"timestamp", "level", "logger"}:
            event[key] = _mask_value(value)
    return event


class _MaskRecords(logging.Filter):
    """Masks a standard-library record's text and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, masked, rather than fail
            text = f"{record.msg} {record.args}"
        record.msg, record.args = mask_pii(text), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_pii(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_pii(record.stack_info)
        return True


_MASK_RECORDS = _MaskRecords()


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    for handler in logging.getLogger().handlers:
        if _MASK_RECORDS not in handler.filters:
            handler.addFilter(_MASK_RECORDS)
    for noisy in ("alembic", "aiohttp.access", "arq.jobs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
