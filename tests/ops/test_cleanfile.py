"""Offline file cleaning: the buckets, the output files, malformed files, and the process pool."""

from __future__ import annotations

import asyncio
import csv
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.csvsafe import safe_cell
from dispatcher.errors import CsvFormatError
from dispatcher.ops.cleanfile import OUT_COLUMNS, CleanFileOptions, clean_file

# A hand-made export from a European spreadsheet: BOM, ';', CRLF, quoted fields (one spanning two lines),
# full-width digits, 00 and tel: prefixes, a float-mangled number, duplicates, junk and a malformed record.
MESSY = (
    "\ufeffphone;email;first_name;city\r\n"
    '"(212) 555-0100";ann@example.com;Ann;"New York; NY"\r\n'  # line 2: accepted
    "212.555.0100;other@example.com;Dup;Boston\r\n"  # 3: duplicate of line 2's phone
    "１２１２５５５０１０１;;Full;\r\n"  # 4: accepted, full-width digits
    "+44 7911 123456;bob@example.co.uk;Bob;London\r\n"  # 5: accepted
    '"00 44 7911 123456";;Bob again;\r\n'  # 6: duplicate of line 5
    'junk;nope;Bad;=HYPERLINK("x")\r\n'  # 7: invalid_phone
    ";;Empty;\r\n"  # 8: empty
    ';carol@example.com;Carol;"multi\r\nline"\r\n'  # 9-10: accepted, e-mail only
    ";CAROL@Example.com;Carol2;\r\n"  # 11: duplicate (e-mail keys are casefolded)
    '"a;b";c\r\n'  # 12: malformed_row (2 fields, not 4)
    "tel:+1-415-555-0100;;Tel;\r\n"  # 13: accepted
    "1.2125550102E10;;Float;\r\n"  # 14: accepted
    "555;x@;Short;\r\n"  # 15: invalid_phone
    "+1 415 555 0199;not-an-email;Warn;\r\n"  # 16: accepted, the e-mail dropped with a warning
).encode()
MESSY_COUNTS = {
    "rows": 14,  # 15 data lines, one record spanning two
    "accepted": 7,
    "rejected": 4,
    "duplicate": 3,
    "suppressed": 0,
    "reasons": {"duplicate_in_file": 3, "empty": 1, "invalid_phone": 2, "malformed_row": 1},
    "warnings": {"invalid_email": 1},
}


def counts(body: dict[str, object]) -> dict[str, object]:
    return {key: body[key] for key in MESSY_COUNTS}


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def clean(path: Path, **kwargs: object) -> dict[str, object]:
    options = CleanFileOptions(default_region="US", processes=0)
    return asyncio.run(clean_file(path, options, **kwargs)).as_dict()  # type: ignore[arg-type]


def test_messy_file_lands_in_the_expected_buckets(tmp_path: Path) -> None:
    source = tmp_path / "messy.csv"
    source.write_bytes(MESSY)
    body = clean(source, out=tmp_path / "out.csv", rejects=tmp_path / "rejects.csv")
    assert counts(body) == MESSY_COUNTS
    assert body["delimiter"] == ";"
    assert body["bytes"] == len(MESSY)

    out = read_csv(tmp_path / "out.csv")
    assert out[0] == [*OUT_COLUMNS, "city"]
    assert [row[0] for row in out[1:]] == [
        "+12125550100",
        "+12125550101",
        "+447911123456",
        "",
        "+14155550100",
        "+12125550102",
        "+14155550199",
    ]
    assert out[1] == [
        "+12125550100", "fixed_line_or_mobile", "US", "America/New_York", "true",
        "ann@example.com", "Ann", "", "", "New York; NY",
    ]  # fmt: skip
    assert out[4][4:7] == ["false", "carol@example.com", "Carol"]
    assert out[7][5] == ""  # the bad e-mail is dropped, the row kept

    rejects = read_csv(tmp_path / "rejects.csv")
    assert rejects == [
        ["row_number", "reason", "phone", "email", "first_name", "city"],
        ["7", "invalid_phone", "junk", "nope", "Bad", '\'=HYPERLINK("x")'],
        ["8", "empty", "", "", "Empty", ""],
        ["12", "malformed_row", "a;b", "c"],
        ["15", "invalid_phone", "555", "x@", "Short", ""],
    ]


def test_without_a_region_national_numbers_are_rejected_but_rows_with_email_stay(tmp_path: Path) -> None:
    source = tmp_path / "messy.csv"
    source.write_bytes(MESSY)
    options = CleanFileOptions(default_region=None, processes=0)
    body = asyncio.run(clean_file(source, options)).as_dict()
    assert body["rows"] == 14
    assert body["accepted"] + body["rejected"] + body["duplicate"] + body["suppressed"] == 14
    assert body["reasons"]["invalid_phone"] > MESSY_COUNTS["reasons"]["invalid_phone"]  # type: ignore[index]


def test_sms_only_rejects_numbers_that_cannot_take_sms(tmp_path: Path) -> None:
    source = tmp_path / "voip.csv"
    source.write_bytes(b"phone\n+44 20 7946 0000\n+44 7911 123456\n")  # a London landline, a mobile
    options = CleanFileOptions(default_region=None, channels=frozenset({"sms"}), processes=0)
    body = asyncio.run(clean_file(source, options)).as_dict()
    assert (body["accepted"], body["rejected"], body["reasons"]) == (1, 1, {"not_mobile": 1})


def test_a_file_failing_half_way_leaves_no_output_files(tmp_path: Path) -> None:
    rows = b"".join(b"+1212555%04d,a%d@example.com\n" % (i, i) for i in range(9000))
    source = tmp_path / "bad.csv"
    source.write_bytes(b"phone,email\n" + rows + b"+12125550000,\xff\xfebad\n")  # bad UTF-8 past 64 KiB
    with pytest.raises(CsvFormatError, match="line 9002"):
        clean(source, out=tmp_path / "out.csv", rejects=tmp_path / "rejects.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_an_existing_output_file_survives_a_failed_run(tmp_path: Path) -> None:
    source = tmp_path / "empty.csv"
    source.write_bytes(b"")
    previous = tmp_path / "out.csv"
    previous.write_text("keep me")
    with pytest.raises(CsvFormatError, match="empty file"):
        clean(source, out=previous)
    assert previous.read_text() == "keep me"


def test_a_header_only_file_still_writes_headers(tmp_path: Path) -> None:
    source = tmp_path / "head.csv"
    source.write_bytes(b"email,plan\n")
    body = clean(source, out=tmp_path / "out.csv", rejects=tmp_path / "rejects.csv")
    assert body["rows"] == 0
    assert read_csv(tmp_path / "out.csv") == [[*OUT_COLUMNS, "plan"]]
    assert read_csv(tmp_path / "rejects.csv") == [["row_number", "reason", "email", "plan"]]


def test_progress_reports_every_byte(tmp_path: Path) -> None:
    source = tmp_path / "messy.csv"
    source.write_bytes(MESSY)
    seen: list[int] = []
    clean(source, on_progress=seen.append)
    assert sum(seen) == len(MESSY)


def test_process_pool_gives_the_same_answer_as_inline(tmp_path: Path) -> None:
    lines = [b"phone,email,plan"]
    for i in range(5000):  # three batches, with duplicates across batch boundaries
        lines.append(b"+1212555%04d,u%d@example.com,gold" % (i % 4500, i))
        if i % 97 == 0:
            lines.append(b"junk,,x")
    source = tmp_path / "big.csv"
    source.write_bytes(b"\n".join(lines) + b"\n")
    inline = clean(source, out=tmp_path / "inline.csv")
    pooled_options = CleanFileOptions(default_region="US", processes=2)
    pooled = asyncio.run(clean_file(source, pooled_options, out=tmp_path / "pooled.csv")).as_dict()
    assert counts(pooled) == counts(inline)
    assert (inline["accepted"], inline["duplicate"], inline["rejected"]) == (4500, 500, 52)
    assert (tmp_path / "pooled.csv").read_bytes() == (tmp_path / "inline.csv").read_bytes()


@pytest.mark.parametrize("value", ["=1+1", "+1 555", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_safe_cell_defuses_formulas(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["", "Ann", "1+1", "a=b", "'quoted"])
def test_safe_cell_keeps_plain_text(value: str) -> None:
    assert safe_cell(value) == value


_CELL = st.sampled_from(["+1 212 555 0100", "212-555-0101", "a@b.co", "junk", "", '"', ";", "\n", "x,y"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_CELL, min_size=1, max_size=4), max_size=30))
def test_buckets_add_up_on_generated_garbage(records: list[list[str]]) -> None:
    data = ("phone,email\n" + "\n".join(",".join(cells) for cells in records)).encode()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "garbage.csv"
        source.write_bytes(data)
        try:
            body = clean(source, rejects=Path(folder) / "rejects.csv")
        except CsvFormatError:
            return
        rejected_rows = len(read_csv(Path(folder) / "rejects.csv")) - 1
    assert body["accepted"] + body["rejected"] + body["duplicate"] + body["suppressed"] == body["rows"]
    assert rejected_rows == body["rejected"]
