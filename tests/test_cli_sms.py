"""``dispatcher sms-info``: encoding, units, segments and lint of a text, as JSON or for people."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from dispatcher.cli import main

STOP = " Reply STOP"  # keeps the opt-out warning out of tables that are about length


def info(*args: str, stdin: str | None = None) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["sms-info", "--json", *args], input=stdin)
    return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else {}


@pytest.mark.parametrize(
    ("text", "encoding", "units", "characters", "segments", "non_gsm"),
    [
        ("a" * 160, "GSM-7", 160, 160, 1, []),
        ("a" * 161, "GSM-7", 161, 161, 2, []),
        ("a" * 306, "GSM-7", 306, 306, 2, []),
        ("a" * 307, "GSM-7", 307, 307, 3, []),
        ("€" * 80, "GSM-7", 160, 80, 1, []),  # extension characters weigh two septets
        ("€" * 81, "GSM-7", 162, 81, 2, []),
        ("a" * 152 + "€", "GSM-7", 154, 153, 1, []),
        ("ж" * 70, "UCS-2", 70, 70, 1, ["ж"]),
        ("ж" * 71, "UCS-2", 71, 71, 2, ["ж"]),
        ("ж" * 134, "UCS-2", 134, 134, 2, ["ж"]),
        ("ж" * 135, "UCS-2", 135, 135, 3, ["ж"]),
        ("😀" * 35, "UCS-2", 70, 35, 1, ["😀"]),  # emoji are two UTF-16 units
        ("😀" * 36, "UCS-2", 72, 36, 2, ["😀"]),
        ("Sale – 20% off…", "UCS-2", 15, 15, 1, ["–", "…"]),
        ("", "GSM-7", 0, 0, 1, []),
    ],
)  # fmt: skip
def test_encoding_and_segment_boundaries(
    text: str, encoding: str, units: int, characters: int, segments: int, non_gsm: list[str]
) -> None:
    code, body = info("--", text)
    assert code == 0
    assert (body["encoding"], body["units"], body["characters"], body["segments"]) == (
        encoding,
        units,
        characters,
        segments,
    )
    assert body["non_gsm_characters"] == non_gsm


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("Spring sale: 20% off today." + STOP, []),
        ("Spring sale: 20% off today.", ["no_opt_out"]),
        ("Spring sale ’20’." + STOP, ["ucs2_forced"]),
        ("x" * 480 + STOP, ["too_many_segments"]),
        ("Shop https://shop.example/sale" + STOP, ["untracked_link"]),
        ("Hi {{ first_name }}!" + STOP, ["unresolved_variable"]),
    ],
)
def test_warnings_carry_lint_codes(text: str, codes: list[str]) -> None:
    code, body = info(text)
    assert code == 0
    assert [warning["code"] for warning in body["warnings"]] == codes
    assert all(warning["message"] for warning in body["warnings"])


def test_suggestions_name_a_gsm_stand_in() -> None:
    _, body = info("“Hello” — world" + STOP)
    assert body["suggestions"] == {"“": '"', "”": '"', "—": "-"}


def test_smart_reports_the_text_before_and_after() -> None:
    text = "Don’t miss it – 2 days left!" + STOP + " " + "x" * 40
    code, body = info("--smart", text)
    assert code == 0
    assert body["text"] == "Don't miss it - 2 days left!" + STOP + " " + "x" * 40
    assert body["changed"] is True
    assert (body["encoding"], body["segments"]) == ("GSM-7", 1)
    assert (body["original"]["encoding"], body["original"]["segments"]) == ("UCS-2", 2)
    assert body["original"]["non_gsm_characters"] == ["’", "–"]


def test_smart_keeps_what_has_no_stand_in() -> None:
    _, body = info("--smart", "Party 🎉" + STOP)
    assert body["changed"] is False
    assert body["encoding"] == "UCS-2"


def test_dash_reads_stdin_and_drops_one_trailing_newline() -> None:
    code, body = info("-", stdin="a" * 160 + "\n")
    assert code == 0
    assert (body["characters"], body["segments"]) == (160, 1)
    _, body = info("-", stdin="line one\nline two\r\n")
    assert body["characters"] == len("line one\nline two")


def test_human_output() -> None:
    result = CliRunner().invoke(main, ["sms-info", "Café – €5 today"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "encoding:   UCS-2" in lines
    assert "units:      15 UTF-16 code units" in lines
    assert "segments:   1 (70 units each)" in lines
    assert "non-GSM:    – → -" in lines
    assert any(line.startswith("warning [no_opt_out]") for line in lines)


def test_human_output_with_smart() -> None:
    result = CliRunner().invoke(main, ["sms-info", "--smart", "It’s on." + STOP])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:2] == [
        "smart encoding: UCS-2, 1 segment(s) → GSM-7, 1 segment(s)",
        "text:       It's on. Reply STOP",
    ]
    assert "units:      19 septets" in result.stdout
