"""Bulk writes of rows encoded ahead: COPY text lines on PostgreSQL, tuples for executemany elsewhere.

Import rows are encoded in the cleaning processes (see pipeline.cleaner.stage_block) and written in bulk by
the parent, which alone holds the connection.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

# A COPY line is built whole with NUL between fields and a lone surrogate for NULL, then escaped with a few
# str.replace calls: decoded uploads hold neither character (NUL bytes are refused, strict codecs never
# yield surrogates), and whole-line C calls cost far less than per-field work (or a translate table, which
# looks up every character in a dict).
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_NULL = "\ud800"
_ZONES_JSON: dict[tuple[str, ...], str] = {}  # few distinct zone lists: one per region or area code


def zones_json(zones: tuple[str, ...]) -> str:
    found = _ZONES_JSON.get(zones)
    if found is None:
        if len(_ZONES_JSON) > 4096:
            _ZONES_JSON.clear()
        found = _ZONES_JSON[zones] = json.dumps(list(zones), ensure_ascii=False)
    return found


def copy_line(values: Sequence[Any]) -> str:
    fields = [
        _COPY_NULL if v is None else ("t" if v else "f") if isinstance(v, bool) else str(v) for v in values
    ]
    line = "\x00".join(fields)
    if _COPY_SPECIAL.search(line) is not None:
        line = line.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return line.replace("\x00", "\t").replace(_COPY_NULL, "\\N") + "\n"


async def bulk_write(conn: AsyncConnection, table: str, columns: Sequence[str], rows: Sequence[Any]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        with io.BytesIO("".join(rows).encode()) as data:  # closed: see import_load._copy
            await driver.copy_to_table(table, source=data, columns=list(columns), format="text")
        return
    names = ", ".join(f'"{name}"' for name in columns)
    marks = ", ".join("?" for _ in columns)
    # through the connection (not its driver), which begins the transaction the caller commits
    await conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(rows))  # noqa: S608
