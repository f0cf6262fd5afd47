"""Contact imports: streamed upload (text/csv or multipart), progress, and the rejects download."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web

from dispatcher.api.http import dump, open_multipart, path_id, validate
from dispatcher.api.keys import REDIS, SESSIONS, SETTINGS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas import ImportOut, ImportQuery
from dispatcher.core.csvsafe import safe_cell
from dispatcher.errors import InputError, NotFoundError
from dispatcher.ops.imports import ImportOptions, parse_channels, receive_upload
from dispatcher.storage import imports as store
from dispatcher.storage.contacts import ContactImport

READ_BYTES = 256 * 1024
_FORM_FIELDS = set(ImportQuery.model_fields)


async def create_import(request: web.Request) -> web.Response:
    list_id = path_id(request, "list_id")
    fields = dict(request.query)
    if request.content_type == "multipart/form-data":
        reader = await open_multipart(request)
        part, form = await _file_part(reader)
        fields.update(form)
        body, filename = _chunks(part), part.filename
    elif request.content_type in {"text/csv", "application/csv", "text/plain", "application/octet-stream"}:
        body, filename = _chunks(request.content), None
    else:
        raise InputError(f"send the file as text/csv or multipart/form-data, not {request.content_type!r}")
    query = validate(ImportQuery, fields)
    settings = request.app[SETTINGS]
    job = await receive_upload(
        request.app[SESSIONS],
        request.app[REDIS],
        workspace_id=principal(request).workspace_id,
        list_id=list_id,
        options=ImportOptions(
            default_region=query.default_region,
            dry_run=query.dry_run,
            consent_source=query.consent_source,
            channels=parse_channels(query.channels),
            check_deliverability=query.check_deliverability,
            filename=filename,
        ),
        body=body,
        max_bytes=settings.max_upload_bytes,
        queue_name=settings.queue_name,
    )
    return dump(import_out(job, now=datetime.now(UTC)), status=202)


async def _file_part(reader: MultipartReader) -> tuple[BodyPartReader, dict[str, str]]:
    """Form fields before the file are options; the first part with a filename (or named ``file``) is the
    CSV."""
    form: dict[str, str] = {}
    while True:
        part = await reader.next()
        if part is None:
            raise InputError("multipart body has no file part; send the CSV as a part named 'file'")
        if not isinstance(part, BodyPartReader):
            raise InputError("nested multipart bodies are not supported")
        if part.filename is not None or part.name == "file":
            return part, form
        if part.name in _FORM_FIELDS:
            form[part.name] = (await part.read(decode=True)).decode("utf-8", "replace")[:300]
        else:
            raise InputError(f"unknown form field {part.name!r}")


async def _chunks(source: StreamReader | BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        if isinstance(source, BodyPartReader):
            piece = await source.read_chunk(READ_BYTES)
        else:
            piece = await source.read(READ_BYTES)
        if not piece:
            return
        yield piece


def import_out(job: ContactImport, *, now: datetime) -> ImportOut:
    percent = rate = eta = None
    if job.bytes_total:
        percent = round(100.0 * job.bytes_done / job.bytes_total, 1) if job.state != "completed" else 100.0
    if job.started_at is not None and job.rows_done:
        elapsed = max(((job.finished_at or now) - job.started_at).total_seconds(), 1e-3)
        rate = round(job.rows_done / elapsed, 1)
        if job.state == "running" and job.bytes_total and job.bytes_done:
            eta = round(elapsed * (job.bytes_total - job.bytes_done) / job.bytes_done, 1)
    return ImportOut(
        id=job.id,
        list_id=job.list_id,
        state=job.state,
        dry_run=job.dry_run,
        filename=job.filename,
        rows_done=job.rows_done,
        accepted=job.accepted,
        rejected=job.rejected,
        duplicate=job.duplicate,
        suppressed=job.suppressed,
        reasons={str(k): int(v) for k, v in job.reasons.items()},
        bytes_total=job.bytes_total,
        bytes_done=job.bytes_done,
        percent=percent,
        rows_per_second=rate,
        eta_seconds=eta,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


async def get_import(request: web.Request) -> web.Response:
    import_id = path_id(request, "import_id")
    async with request.app[SESSIONS]() as session:
        job = await store.get_import(session, principal(request).workspace_id, import_id)
    if job is None:
        raise NotFoundError(f"import {import_id} not found")
    return dump(import_out(job, now=datetime.now(UTC)))


async def get_rejects(request: web.Request) -> web.StreamResponse:
    import_id = path_id(request, "import_id")
    async with request.app[SESSIONS]() as session:
        job = await store.get_import(session, principal(request).workspace_id, import_id)
        if job is None:
            raise NotFoundError(f"import {import_id} not found")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="import-{import_id}-rejects.csv"',
            }
        )
        await response.prepare(request)
        columns = list(job.columns)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["row_number", "reason", *map(safe_cell, columns)])
        async for reject in store.iter_rejects(session, import_id):
            writer.writerow([reject.row_number, reject.reason, *_values(reject.values, columns)])
            if buffer.tell() > 64 * 1024:
                await response.write(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
        await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response


def _values(values: dict[str, str], columns: list[str]) -> list[str]:
    if columns and all(name in values for name in columns):
        return [safe_cell(str(values[name])) for name in columns]
    # a malformed row keeps its fields by position ("1", "2", …)
    return [safe_cell(str(values[key])) for key in sorted(values, key=lambda k: (len(k), k))]


def register(api: Registry) -> None:
    api.route(
        "POST",
        "/v1/lists/{list_id}/imports",
        summary="Upload a CSV (text/csv or multipart) into a list; cleaned in the background",
        scope="write",
        query=ImportQuery,
        response=ImportOut,
        status=202,
        raw_body=("text/csv", "multipart/form-data"),
        tags=("lists",),
    )(create_import)
    api.route(
        "GET",
        "/v1/imports/{import_id}",
        summary="Import progress: rows done, buckets so far, rate, ETA",
        scope="read",
        response=ImportOut,
        tags=("lists",),
    )(get_import)
    api.route(
        "GET",
        "/v1/imports/{import_id}/rejects",
        summary="Rejected rows as CSV: row number, reason, original values",
        scope="read",
        raw_response="text/csv",
        tags=("lists",),
    )(get_rejects)
