"""Reports: per campaign and grouped, as JSON, streamed CSV or a self-contained HTML page with charts.

``GET /v1/reports/campaigns/{campaign_id}.html`` is registered before the JSON route of the same prefix:
the router tries resources in order and ``{campaign_id}`` alone would also match ``5.html``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from dispatcher.api.http import dump, parse_query, path_id
from dispatcher.api.keys import SESSIONS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas_reports import (
    CampaignReport,
    FormatQuery,
    GroupedReport,
    ReportPageQuery,
    ReportQuery,
)
from dispatcher.ops import report_html
from dispatcher.ops import reports as ops

_TAGS = ("reports",)
_FLUSH_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


def _request(query: ReportQuery | ReportPageQuery, group_by: str = "campaign") -> ops.ReportRequest:
    return ops.ReportRequest(
        group_by=ops.parse_group_by(group_by),
        period=query.period,
        local=query.tz == "local",
        start=query.from_,
        end=query.to,
        campaign_id=query.campaign_id,
    )


async def _stream_csv(
    request: web.Request, records: Iterable[list[Any]], filename: str
) -> web.StreamResponse:
    """Written in chunks as the records come: the figures are computed before the first byte goes out."""
    response = web.StreamResponse(
        headers={
            **_NO_STORE,
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for record in records:
        writer.writerow(record)
        if buffer.tell() >= _FLUSH_BYTES:
            await response.write(buffer.getvalue().encode("utf-8"))
            buffer.seek(0)
            buffer.truncate()
    await response.write(buffer.getvalue().encode("utf-8"))
    await response.write_eof()
    return response


async def campaign_report(request: web.Request) -> web.StreamResponse:
    campaign_id = path_id(request, "campaign_id")
    query = parse_query(request, FormatQuery)
    async with request.app[SESSIONS]() as session:
        report = await ops.campaign_report(session, principal(request).workspace_id, campaign_id)
    if query.format == "csv":
        return await _stream_csv(
            request, ops.campaign_csv_records(report), f"campaign-{campaign_id}-report.csv"
        )
    return dump(CampaignReport.model_validate(report))


async def grouped_report(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, ReportQuery)
    wanted = _request(query, query.group_by)
    async with request.app[SESSIONS]() as session:
        report = await ops.grouped_report(session, principal(request).workspace_id, wanted)
    if query.format == "csv":
        columns = ops.group_columns(wanted.grouping)
        records = (ops.csv_cells(row, columns) for row in report["rows"])
        return await _stream_csv(request, _prepend(ops.csv_header(columns), records), "report.csv")
    return dump(GroupedReport.model_validate(report))


def _prepend(first: list[Any], rest: Iterable[list[Any]]) -> Iterable[list[Any]]:
    yield first
    yield from rest


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", headers=_NO_STORE)


async def campaign_page(request: web.Request) -> web.Response:
    campaign_id = path_id(request, "campaign_id")
    async with request.app[SESSIONS]() as session:
        report = await ops.campaign_report(session, principal(request).workspace_id, campaign_id)
    return _html(report_html.campaign_page(report))


async def overview_page(request: web.Request) -> web.Response:
    query = parse_query(request, ReportPageQuery)
    async with request.app[SESSIONS]() as session:
        report = await ops.overview_report(session, principal(request).workspace_id, _request(query))
    return _html(report_html.overview_page(report))


def register(api: Registry) -> None:
    api.route(
        "GET",
        "/v1/reports/campaigns/{campaign_id}.html",
        summary="A campaign's report page: figures, charts per batch, channel and day (self-contained HTML)",
        scope="read",
        raw_response="text/html",
        tags=_TAGS,
    )(campaign_page)
    api.route(
        "GET",
        "/v1/reports/campaigns/{campaign_id}",
        summary="A campaign's report: totals, per batch, channel, variant and day, failure reasons "
        "(format=csv for a spreadsheet)",
        scope="read",
        query=FormatQuery,
        response=CampaignReport,
        also_returns=("text/csv",),
        tags=_TAGS,
    )(campaign_report)
    api.route(
        "GET",
        "/v1/reports.html",
        summary="Overview page: rates per campaign and channel, volume and rates over time",
        scope="read",
        query=ReportPageQuery,
        raw_response="text/html",
        tags=_TAGS,
    )(overview_page)
    api.route(
        "GET",
        "/v1/reports",
        summary="Figures grouped by campaign, batch, channel, provider, sender, variant and period "
        "(format=csv streams a spreadsheet-safe file)",
        scope="read",
        query=ReportQuery,
        response=GroupedReport,
        also_returns=("text/csv",),
        tags=_TAGS,
    )(grouped_report)
