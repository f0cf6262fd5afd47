"""Offline marketer tools: ``lists clean``, ``sms-info`` and ``when``. They need neither a database nor Redis.

Registered on the main command group by :mod:`dispatcher.cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import click

from dispatcher.core.windows import DEFAULT_ALLOWED, DEFAULT_WINDOWS
from dispatcher.errors import DispatcherError, InputError


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input is one clear line on stderr and exit code 2, never a traceback."""
    try:
        yield
    except DispatcherError as exc:
        _fail(exc.message)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))


def _dump(body: dict[str, Any]) -> None:
    click.echo(json.dumps(body, ensure_ascii=False))


@click.group("lists")
def lists_group() -> None:
    """Contact lists: offline tools (the API manages the lists themselves)."""


@contextlib.contextmanager
def _progress(path: Path) -> Iterator[Callable[[int], None] | None]:
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=path.stat().st_size, label="cleaning", file=sys.stderr) as bar:
        yield bar.update


def _channels(text: str | None) -> frozenset[str] | None:
    if not text:
        return None
    chosen = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = sorted(chosen - {"sms", "email"})
    if unknown or not chosen:
        raise InputError(f"unknown channel(s) {', '.join(unknown) or text!r}: use sms, email or sms,email")
    return chosen


def _region(value: str | None) -> str | None:
    from dispatcher.core.cleaning_fields import is_supported_region

    if value is None:
        return None
    if not is_supported_region(value.upper()):
        raise InputError(f"unknown region {value!r}: use an ISO 3166 country code such as US or DE")
    return value.upper()


_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_OUTPUT = click.Path(dir_okay=False, writable=True, path_type=Path)


@lists_group.command("clean")
@click.argument("file", type=_FILE)
@click.option("--default-region", help="ISO 3166 country for numbers written without +CC, e.g. US")
@click.option("--out", type=_OUTPUT, help="Write accepted rows here (E.164 phone, zones, attributes)")
@click.option("--rejects", type=_OUTPUT, help="Write rejected rows here: row_number, reason, original values")
@click.option(
    "--channels",
    help="sms, email or sms,email; with sms alone a number that cannot take SMS is "
    "rejected (not_mobile) unless the row has an e-mail",
)
@click.option(
    "--processes",
    type=click.IntRange(min=0),
    help="Cleaning processes (default one per core; 0 cleans in this process)",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the counts")
def lists_clean(
    file: Path,
    default_region: str | None,
    out: Path | None,
    rejects: Path | None,
    channels: str | None,
    processes: int | None,
    as_json: bool,
) -> None:
    """Clean a contact CSV offline exactly as an upload would, and report where every row went.

    Every data row is counted once: accepted, rejected (with a reason code), duplicate (of an earlier row
    of the file) or suppressed. suppressed is always 0 here: suppressions and contacts already on a list
    live on the server and are applied on upload. A progress bar shows on a terminal (stderr only).
    """
    from dispatcher.ops.cleanfile import CleanFileOptions, clean_file

    with _user_errors():
        options = CleanFileOptions(_region(default_region), _channels(channels), processes)
        with _progress(file) as on_progress:
            report = asyncio.run(clean_file(file, options, out=out, rejects=rejects, on_progress=on_progress))
    body = report.as_dict()
    if as_json:
        _dump(body)
        return
    click.echo(
        f"{body['rows']} rows: {body['accepted']} accepted, {body['rejected']} rejected, "
        f"{body['duplicate']} duplicate, 0 suppressed (suppressions apply on upload)"
    )
    for title, counts in (("reasons", body["reasons"]), ("kept with a dropped field", body["warnings"])):
        if counts:
            click.echo(f"  {title}: " + ", ".join(f"{code} {n}" for code, n in counts.items()))
    if body["reasons"].get("invalid_phone") and default_region is None:
        click.echo("  hint: numbers written without +CC need --default-region")
    click.echo(f"  {body['seconds']:.2f} s, {body['rows_per_second']:,.0f} rows/s")
    for label, path in (("cleaned rows", out), ("rejected rows", rejects)):
        if path is not None:
            click.echo(f"  {label} written to {path}")


@click.command("sms-info")
@click.argument("text")
@click.option(
    "--smart",
    is_flag=True,
    help="First replace look-alikes (curly quotes, dashes, …) by GSM-7 "
    "characters, and report the text before and after",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
def sms_info(text: str, smart: bool, as_json: bool) -> None:
    """Encoding, units, segments and lint warnings of an SMS text.

    TEXT "-" reads the text from stdin (one trailing newline is dropped). Put "--" before a TEXT that
    starts with "-". Units are GSM-7 septets (extension characters such as € count two) or UTF-16 code
    units (emoji count two).
    """
    from dispatcher.core.sms import analyse_sms, analysis_as_dict, lint_sms, smart_encode

    if text == "-":
        text = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    sent = smart_encode(text) if smart else text
    analysis = analyse_sms(sent)
    body = analysis_as_dict(analysis)
    body["warnings"] = [{"code": w.code, "message": w.message} for w in lint_sms(sent, analysis=analysis)]
    if smart:
        body.update(text=sent, changed=sent != text, original=analysis_as_dict(analyse_sms(text)))
    if as_json:
        _dump(body)
    else:
        _print_sms(body)


def _print_sms(body: dict[str, Any]) -> None:
    if "original" in body:
        before = body["original"]
        click.echo(
            f"smart encoding: {before['encoding']}, {before['segments']} segment(s) → "
            f"{body['encoding']}, {body['segments']} segment(s)"
        )
        click.echo(f"text:       {body['text']}")
    kind = "septets" if body["encoding"] == "GSM-7" else "UTF-16 code units"
    click.echo(f"encoding:   {body['encoding']}")
    click.echo(f"characters: {body['characters']}")
    click.echo(f"units:      {body['units']} {kind}")
    click.echo(f"segments:   {body['segments']} ({body['segment_capacity']} units each)")
    if body["non_gsm_characters"]:
        names = [
            f"{c} → {body['suggestions'][c]}" if c in body["suggestions"] else f"{c} (no stand-in)"
            for c in body["non_gsm_characters"]
        ]
        click.echo(f"non-GSM:    {', '.join(names)}")
    for warning in body["warnings"]:
        click.echo(f"warning [{warning['code']}]: {warning['message']}")


def _parse_at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"invalid --at {text!r}: expected ISO 8601, e.g. 2026-11-23T12:00:00Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@click.command()
@click.argument("phone")
@click.option("--at", "at_text", help="Plan from this instant, ISO 8601 (default now); no offset means UTC")
@click.option(
    "--windows",
    default=",".join(map(str, DEFAULT_WINDOWS)),
    show_default=True,
    help="Send windows in the recipient's local time, half-open",
)
@click.option(
    "--allowed", default=str(DEFAULT_ALLOWED), show_default=True, help="Allowed (non-quiet) local hours"
)
@click.option("--region", help="ISO 3166 country for numbers written without +CC, e.g. US")
@click.option("--fallback-zone", help="IANA zone used when the number's zones share no send time")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
def when(
    phone: str,
    at_text: str | None,
    windows: str,
    allowed: str,
    region: str | None,
    fallback_zone: str | None,
    as_json: bool,
) -> None:
    """When a message to PHONE would go: its candidate zones and the next send instant (14 days ahead)."""
    with _user_errors():
        body = _when(phone, _parse_at(at_text), windows, allowed, _region(region), fallback_zone)
    if as_json:
        _dump(body)
        return
    click.echo(f"{body['phone']} ({body['number_type']}, {body['phone_region']})")
    click.echo(f"zones:     {', '.join(body['zones'])}")
    if body["fallback"]:
        click.echo(f"           (the number's zones {', '.join(body['number_zones'])} share no send time)")
    if body["next_send_utc"] is None:
        click.echo(body["message"])
        return
    click.echo(f"next send: {body['next_send_utc']}")
    for zone, local in body["next_send_local"].items():
        click.echo(f"  {zone:<24} {local}")


def _when(
    phone: str, at: datetime, windows_text: str, allowed_text: str, region: str | None, fallback: str | None
) -> dict[str, Any]:
    from dispatcher.core.cleaning import Rejection, clean_phone
    from dispatcher.core.windows import (
        SEARCH_HORIZON,
        clip_windows,
        known_zones,
        next_send_time,
        parse_window,
        parse_windows,
        resolve_zones,
    )
    from dispatcher.core.zones import is_known_zone

    windows, allowed = parse_windows(windows_text), parse_window(allowed_text)
    if fallback is not None and not is_known_zone(fallback):
        raise InputError(f"unknown IANA time zone {fallback!r} for --fallback-zone")
    number = clean_phone(phone, region)
    if isinstance(number, Rejection):
        hint = "; numbers written without +CC need --region" if region is None else ""
        raise InputError(f"invalid phone number {phone!r}: {number.detail}{hint}")
    # --fallback-zone stands in for the contact's zone field; there is no list default offline
    zones = resolve_zones(number.time_zones, fallback, None, windows, allowed, at)
    found = next_send_time(at, zones, windows, allowed)
    body: dict[str, Any] = {
        "phone": number.e164,
        "number_type": number.number_type,
        "phone_region": number.region,
        "number_zones": list(number.time_zones),
        "zones": list(zones),
        "fallback": zones != known_zones(number.time_zones),
        "at": _utc(at),
        "windows": [str(window) for window in windows],
        "allowed": str(allowed),
        "next_send_utc": _utc(found) if found else None,
        "next_send_local": {zone: found.astimezone(ZoneInfo(zone)).isoformat() for zone in zones}
        if found
        else {},
    }
    if found is None:
        why = "" if clip_windows(windows, allowed) else ": the send windows lie outside the allowed hours"
        if why == "" and len(zones) > 1:
            why = (
                ": the number's zones share no send time, so a campaign expires its message unless the"
                " contact or the list names a zone (try --fallback-zone)"
            )
        body["message"] = f"no send time within {SEARCH_HORIZON.days} days{why}"
    return body


TOOLS = (lists_group, sms_info, when)
