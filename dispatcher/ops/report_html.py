"""The report pages: one self-contained HTML document (inline CSS, vanilla JS, the report as JSON).

The page needs no build step, no CDN and no network: the script in ``dispatcher/api/static/report.js``
reads the JSON embedded in the page and draws the tables and SVG charts. The same document is served by
the API and written to a file for the CLI and the demo.
"""

from __future__ import annotations

import html
import json
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from string import Template
from typing import Any, Literal

# Package data shipped with the API (pyproject's package-data); read as files, no import of the api layer.
_STATIC = resources.files("dispatcher").joinpath("api", "static")


@cache
def _asset(name: str) -> str:
    return _STATIC.joinpath(name).read_text(encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def embedded_json(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``</script>``, ``<!--`` or line separators can close or break it."""
    text = json.dumps(data, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def _page(kind: Literal["campaign", "overview"], title: str, subtitle: str, data: Any) -> str:
    return Template(_asset("report.html")).substitute(
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        kind=kind,
        css=_asset("report.css"),
        js=_asset("report.js"),
        data=embedded_json(data),
    )


def campaign_page(report: dict[str, Any]) -> str:
    campaign = report["campaign"]
    subtitle = f"Campaign #{campaign['id']} · {campaign['channel']} · {campaign['state']}"
    return _page("campaign", f"Report: {campaign['name']}", subtitle, report)


def overview_page(report: dict[str, Any]) -> str:
    zone = "recipients' local time" if report["tz"] == "local" else "UTC"
    return _page("overview", "Campaign overview", f"Per {report['period']}, {zone}", report)
