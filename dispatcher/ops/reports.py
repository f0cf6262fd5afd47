"""Report services shared by the API, the HTML pages and the CLI: aggregate, name, compute the rates.

The database aggregates (:mod:`dispatcher.storage.reports`), :mod:`dispatcher.core.rates` turns counts into
figures, and this module shapes them into plain dicts (one flat dict of figures per row, with a ``group``
dict naming the row) that the JSON schemas, the CSV writer and the HTML page all read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.csvsafe import safe_cell
from dispatcher.core.rates import COUNT_FIELDS, RATE_FIELDS, Tally, figures
from dispatcher.errors import InputError
from dispatcher.ops.campaigns import get_campaign
from dispatcher.ops.report_html import campaign_page
from dispatcher.storage import reports as store
from dispatcher.storage.report_periods import Period

GROUP_DIMENSIONS: tuple[store.Dimension, ...] = (
    "campaign",
    "batch",
    "channel",
    "provider",
    "sender",
    "variant",
)
NAMED = ("campaign", "batch", "provider")  # dimensions whose key is an id: rows carry its name as well
FIGURE_FIELDS = (*COUNT_FIELDS, "conversion_value", "cost", "median_seconds_to_delivery", *RATE_FIELDS)
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """``GET /v1/reports``: rows grouped by ``group_by`` (plus the period when one is given)."""

    group_by: tuple[store.Dimension, ...] = ("campaign",)
    period: Period | None = None
    local: bool = False
    start: datetime | None = None
    end: datetime | None = None
    campaign_id: int | None = None

    def scope(self, workspace_id: int) -> store.Scope:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise InputError("'from' must be before 'to'", details=[{"field": "from"}])
        return store.Scope(
            workspace_id,
            campaign_id=self.campaign_id,
            start=self.start,
            end=self.end,
            period=self.period or "day",
            local=self.local,
        )

    @property
    def grouping(self) -> store.Grouping:
        return (*self.group_by, "period") if self.period else self.group_by


def parse_group_by(text: str) -> tuple[store.Dimension, ...]:
    """``"batch,channel"`` → dimensions in the order given; unknown or repeated names are an InputError."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in GROUP_DIMENSIONS]
    if unknown or len(set(names)) != len(names):
        raise InputError(
            f"group_by takes distinct names among {', '.join(GROUP_DIMENSIONS)}",
            details=[{"field": "group_by", "message": f"not allowed: {', '.join(unknown) or 'repeats'}"}],
        )
    return tuple(cast(store.Dimension, name) for name in names)


def figures_row(tally: Tally) -> Row:
    """The published numbers of one group: counts, money, median and rates (``None`` when undefined)."""
    shown = figures(tally)
    row: Row = {name: getattr(tally, name) for name in (*COUNT_FIELDS, "conversion_value", "cost")}
    row["median_seconds_to_delivery"] = tally.median_seconds_to_delivery
    row.update({name: getattr(shown, name) for name in RATE_FIELDS})
    return row


def _rows(
    grouping: store.Grouping, groups: Sequence[store.Group], labels: dict[tuple[str, int], str]
) -> list[Row]:
    rows = []
    for group in groups:
        named: Row = {}
        for dimension, value in zip(grouping, group.key, strict=True):
            if dimension in NAMED:
                named[f"{dimension}_id"] = value
                named[dimension] = labels.get((dimension, value)) if value is not None else None
            else:
                named[dimension] = value
        rows.append({"group": named, **figures_row(group.tally)})
    return rows


async def _report(
    session: AsyncSession, scope: store.Scope, groupings: Sequence[store.Grouping]
) -> list[list[Row]]:
    found = await store.aggregate(session, scope, groupings)
    pairs = [
        (grouping, group.key) for grouping, groups in zip(groupings, found, strict=True) for group in groups
    ]
    labels = await store.names(session, scope.workspace_id, pairs)
    return [_rows(grouping, groups, labels) for grouping, groups in zip(groupings, found, strict=True)]


async def grouped_report(session: AsyncSession, workspace_id: int, request: ReportRequest) -> Row:
    rows, totals = await _report(session, request.scope(workspace_id), [request.grouping, ()])
    return {
        "group_by": list(request.group_by),
        "period": request.period,
        "tz": "local" if request.local else "utc",
        "from": request.start,
        "to": request.end,
        "totals": _without_group(totals),
        "rows": rows,
    }


async def campaign_report(session: AsyncSession, workspace_id: int, campaign_id: int) -> Row:
    """Totals, per batch / channel / variant, per UTC day, and the failure reasons of one campaign."""
    campaign = await get_campaign(session, workspace_id, campaign_id)
    scope = store.Scope(workspace_id, campaign_id=campaign_id, period="day")
    totals, batches, channels, variants, timeline = await _report(
        session, scope, [(), ("batch",), ("channel",), ("variant",), ("period",)]
    )
    reasons = await store.failure_reasons(session, scope)
    return {
        "campaign": {
            "id": campaign.id,
            "name": campaign.name,
            "channel": campaign.channel,
            "state": campaign.state,
        },
        "totals": _without_group(totals),
        "batches": batches,
        "channels": channels,
        "variants": variants,
        "timeline": timeline,
        "failure_reasons": [{"code": code, "count": count} for code, count in reasons],
    }


async def overview_report(session: AsyncSession, workspace_id: int, request: ReportRequest) -> Row:
    """The overview page: per campaign, per channel, per period (``request.period``, default day)."""
    scope = request.scope(workspace_id)
    totals, campaigns, channels, timeline = await _report(
        session, scope, [(), ("campaign",), ("channel",), ("period",)]
    )
    return {
        "period": scope.period,
        "tz": "local" if scope.local else "utc",
        "totals": _without_group(totals),
        "campaigns": campaigns,
        "channels": channels,
        "timeline": timeline,
    }


def _without_group(rows: list[Row]) -> Row:
    (row,) = rows  # the empty grouping always yields exactly one row, zeros when nothing matched
    return {key: value for key, value in row.items() if key != "group"}


def csv_header(group_columns: Sequence[str]) -> list[str]:
    return [*group_columns, *FIGURE_FIELDS]


def group_columns(grouping: store.Grouping) -> list[str]:
    columns: list[str] = []
    for dimension in grouping:
        columns += [f"{dimension}_id", dimension] if dimension in NAMED else [dimension]
    return columns


def csv_cells(row: Row, columns: Sequence[str]) -> list[Any]:
    """One CSV record; text cells made safe against spreadsheet formulas, ``None`` as an empty cell."""
    values = [row["group"].get(c) for c in columns] + [row.get(f) for f in FIGURE_FIELDS]
    return ["" if v is None else safe_cell(v) if isinstance(v, str) else v for v in values]


def campaign_csv_records(report: Row) -> Iterator[list[Any]]:
    """The campaign report as one table: a ``section`` column tells totals, batches, channels … apart."""
    columns = ["key", "name"]
    yield ["section", *csv_header(columns)]
    keyed = {"batches": ("batch", "batch_id", "batch"), "channels": ("channel", "channel", None)}
    keyed["variants"] = ("variant", "variant", None)
    yield ["totals", "", "", *csv_cells({"group": {}, **report["totals"]}, [])]
    for rows, (section, key, name) in keyed.items():
        for row in report[rows]:
            group = {"key": row["group"][key], "name": row["group"][name] if name else None}
            yield [section, *csv_cells({**row, "group": group}, columns)]
    for row in report["timeline"]:
        yield ["day", *csv_cells({**row, "group": {"key": row["group"]["period"]}}, columns)]
    for reason in report["failure_reasons"]:
        counts = [reason["count"] if field == "failed" else "" for field in FIGURE_FIELDS]
        yield ["failure_reason", safe_cell(reason["code"]), "", *counts]


async def write_campaign_report_html(
    session: AsyncSession, workspace_id: int, campaign_id: int, path: Path
) -> Path:
    """Write the campaign's self-contained HTML report (charts included) to ``path``; returns it."""
    report = await campaign_report(session, workspace_id, campaign_id)
    await asyncio.to_thread(_write, path, campaign_page(report))
    return path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
