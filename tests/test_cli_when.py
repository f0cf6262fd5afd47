"""``dispatcher when``: a recipient's candidate zones and next send instant, at a fixed ``--at``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from dispatcher.cli import main

MONDAY_NOON = "2026-11-23T12:00:00Z"  # 07:00 in New York (EST), 03:00 in Anchorage (AKST)


def when(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(main, ["when", "--json", *args])
    body = json.loads(result.stdout) if result.exit_code == 0 else {}
    return result.exit_code, body, result.stderr


@pytest.mark.parametrize(
    ("phone", "args", "zones", "next_utc"),
    [
        # before the first window: 10:30 EST
        ("+1 212 555 0100", ["--at", MONDAY_NOON], ["America/New_York"], "2026-11-23T15:30:00Z"),
        # inside a window: now
        ("+1 212 555 0100", ["--at", "2026-11-23T15:45:00Z"], ["America/New_York"], "2026-11-23T15:45:00Z"),
        # 11:30 local is the excluded end of the first window: the next one opens at 15:00
        ("+1 212 555 0100", ["--at", "2026-11-23T16:30:00Z"], ["America/New_York"], "2026-11-23T20:00:00Z"),
        # after the last window: tomorrow 10:30
        ("+1 212 555 0100", ["--at", "2026-11-23T23:00:00Z"], ["America/New_York"], "2026-11-24T15:30:00Z"),
        # the day New York springs forward: 10:30 EDT is 14:30 UTC
        ("+1 212 555 0100", ["--at", "2026-03-08T12:00:00Z"], ["America/New_York"], "2026-03-08T14:30:00Z"),
        # a national number read with --region
        ("(415) 555-0100", ["--at", MONDAY_NOON, "--region", "us"], ["America/Los_Angeles"],
         "2026-11-23T18:30:00Z"),
        # Alaska: Adak is an hour behind Anchorage; they share only 15:00-16:00 Adak = 16:00-17:00 Anchorage
        ("+1 907 555 0123", ["--at", MONDAY_NOON], ["America/Adak", "America/Anchorage"],
         "2026-11-24T01:00:00Z"),
        # custom windows
        ("+1 212 555 0100", ["--at", MONDAY_NOON, "--windows", "09:00-09:30"], ["America/New_York"],
         "2026-11-23T14:00:00Z"),
        # custom allowed hours let a late window through
        ("+1 212 555 0100", ["--at", MONDAY_NOON, "--windows", "22:00-23:00", "--allowed", "00:00-24:00"],
         ["America/New_York"], "2026-11-24T03:00:00Z"),
        # --at without an offset is UTC; with one it is converted
        ("+1 212 555 0100", ["--at", "2026-11-23T12:00:00"], ["America/New_York"], "2026-11-23T15:30:00Z"),
        ("+1 212 555 0100", ["--at", "2026-11-23T07:00:00-05:00"], ["America/New_York"],
         "2026-11-23T15:30:00Z"),
    ],
)  # fmt: skip
def test_next_send_time(phone: str, args: list[str], zones: list[str], next_utc: str) -> None:
    code, body, err = when(phone, *args)
    assert code == 0, err
    assert body["zones"] == zones
    assert body["next_send_utc"] == next_utc
    assert body["fallback"] is False
    assert list(body["next_send_local"]) == zones


def test_local_times_are_given_per_zone() -> None:
    _, body, _ = when("+1 907 555 0123", "--at", MONDAY_NOON)
    assert body["next_send_local"] == {
        "America/Adak": "2026-11-23T15:00:00-10:00",
        "America/Anchorage": "2026-11-23T16:00:00-09:00",
    }
    assert body["at"] == MONDAY_NOON
    assert body["windows"] == ["10:30-11:30", "15:00-17:00"]
    assert body["allowed"] == "08:00-21:00"


def test_zones_with_no_shared_window_fall_back_to_the_given_zone() -> None:
    code, body, _ = when("+61 412 345 678", "--at", MONDAY_NOON, "--fallback-zone", "Australia/Sydney")
    assert code == 0
    assert len(body["number_zones"]) > 1
    assert "Australia/Perth" in body["number_zones"]
    assert body["fallback"] is True
    assert (body["zones"], body["next_send_utc"]) == (["Australia/Sydney"], "2026-11-23T23:30:00Z")


def test_zones_with_no_shared_window_and_no_fallback_never_go_at_night_in_one_of_them() -> None:
    # UTC would have sent at 15:00Z: 02:00 in Sydney
    code, body, _ = when("+61 412 345 678", "--at", MONDAY_NOON)
    assert code == 0
    assert body["zones"] == body["number_zones"]
    assert body["fallback"] is False
    assert body["next_send_utc"] is None
    assert "share no send time" in body["message"]


def test_no_send_time_within_the_horizon_is_null_not_an_error() -> None:
    code, body, _ = when("+1 212 555 0100", "--at", MONDAY_NOON, "--windows", "22:00-23:00")
    assert code == 0
    assert body["next_send_utc"] is None
    assert body["next_send_local"] == {}
    assert "no send time within 14 days" in body["message"]
    human = CliRunner().invoke(main, ["when", "+12125550100", "--windows", "22:00-23:00"])
    assert human.exit_code == 0
    assert "no send time within 14 days: the send windows lie outside the allowed hours" in human.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+1 212 555 0100", "--windows", "10:30"], "invalid window '10:30'"),
        (["+1 212 555 0100", "--windows", "25:00-26:00"], "invalid time in window"),
        (["+1 212 555 0100", "--windows", "10:00-12:00,11:00-13:00"], "overlap"),
        (["+1 212 555 0100", "--windows", "12:00-10:00"], "must end after it starts"),
        (["+1 212 555 0100", "--allowed", "nope"], "invalid window 'nope'"),
        (["+1 212 555 0100", "--at", "next tuesday"], "invalid --at 'next tuesday'"),
        (["+1 212 555 0100", "--fallback-zone", "Mars/Base"], "unknown IANA time zone 'Mars/Base'"),
        (["+1 212 555 0100", "--region", "XX"], "unknown region 'XX'"),
        (["12345"], "invalid phone number '12345'"),
        (["(212) 555-0100"], "need --region"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["when", *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_human_output() -> None:
    result = CliRunner().invoke(main, ["when", "+1 907 555 0123", "--at", MONDAY_NOON])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "+19075550123 (fixed_line_or_mobile, US)",
        "zones:     America/Adak, America/Anchorage",
        "next send: 2026-11-24T01:00:00Z",
        "  America/Adak             2026-11-23T15:00:00-10:00",
        "  America/Anchorage        2026-11-23T16:00:00-09:00",
    ]


def test_at_defaults_to_now() -> None:
    code, body, _ = when("+1 212 555 0100")
    assert code == 0
    assert body["at"].endswith("Z")
    assert body["next_send_utc"] >= body["at"]
