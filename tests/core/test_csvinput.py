"""Streaming CSV input: encodings, dialects, malformed records, chunking."""

from __future__ import annotations

import codecs
import csv
import io
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.cleaning import Buckets, FileDeduper, Rejection, RejectReason, classify_row
from dispatcher.core.csvdecode import SNIFF_BYTES, sniff_dialect
from dispatcher.core.csvinput import MAX_FIELD_CHARS, MAX_RECORD_CHARS, CsvStream, ParsedRow, iter_rows
from dispatcher.errors import CsvFormatError

FAST = settings(max_examples=200, deadline=None)


def rows_of(data: bytes, chunk: int | None = None) -> list[ParsedRow]:
    if chunk is None:
        return list(iter_rows([data]))
    return list(iter_rows(data[i : i + chunk] for i in range(0, len(data), chunk)))


def values_of(data: bytes) -> list[dict[str, str] | None]:
    return [row.values for row in rows_of(data)]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"phone,name\n+1 201,Ann\n", [{"phone": "+1 201", "name": "Ann"}]),
        (codecs.BOM_UTF8 + b"phone,name\r\n1,Ann\r\n", [{"phone": "1", "name": "Ann"}]),
        (b"phone;name;spend\n1;Ann;1,50\n", [{"phone": "1", "name": "Ann", "spend": "1,50"}]),
        (b"phone\tname\n1\tAnn Lee\n", [{"phone": "1", "name": "Ann Lee"}]),
        (b"email|name\na@b.co|Ann\n", [{"email": "a@b.co", "name": "Ann"}]),
        (b'phone,note\n1,"a, b"\n', [{"phone": "1", "note": "a, b"}]),
        (b'phone,note\n1,"line one\nline two"\n', [{"phone": "1", "note": "line one\nline two"}]),
        (b'phone,n\n1,"a\n\nb, c"\n2,x\n', [{"phone": "1", "n": "a\n\nb, c"}, {"phone": "2", "n": "x"}]),
        (b'phone,note\r\n1,"a\r\nb"\r\n', [{"phone": "1", "note": "a\r\nb"}]),
        (b'phone,note\n1,"say ""hi"""\n', [{"phone": "1", "note": 'say "hi"'}]),
        (b'phone,note\n1,5" screen\n', [{"phone": "1", "note": '5" screen'}]),  # a quote mid-field is text
        (b'"phone","note"\n"1",""\n', [{"phone": "1", "note": ""}]),
        (b"phone,name\n  1  , Ann \n", [{"phone": "1", "name": "Ann"}]),  # values are stripped
        (b"phone,name\n\n1,Ann\n\n   \n", [{"phone": "1", "name": "Ann"}]),  # blank lines are not rows
        (b"phone\tname\n\t\n", [{"phone": "", "name": ""}]),  # but a line of empty fields is
        (b"phone,name\n1,Ann", [{"phone": "1", "name": "Ann"}]),  # no final newline
        (b"phone,name\r1,Ann\r2,Bo\r", [{"phone": "1", "name": "Ann"}, {"phone": "2", "name": "Bo"}]),
        (b"phone,,name\n1,x,Ann\n", [{"phone": "1", "name": "Ann"}]),  # unnamed columns are dropped
        (b"Phone Number,E-Mail\n1,a@b.co\n", [{"Phone Number": "1", "E-Mail": "a@b.co"}]),
        ("phone,name\n1,Müller\n".encode("latin-1"), [{"phone": "1", "name": "Müller"}]),
        ("phone,name\n1,Zoë – €5\n".encode("cp1252"), [{"phone": "1", "name": "Zoë – €5"}]),
        ("phone,name\n1,Müller\n".encode("utf-16"), [{"phone": "1", "name": "Müller"}]),  # Excel "Unicode"
        ("phone,name\n1,日本\n".encode(), [{"phone": "1", "name": "日本"}]),
    ],
)  # fmt: skip
def test_reads_files(data: bytes, expected: list[dict[str, str]]) -> None:
    assert values_of(data) == expected
    assert values_of(data) == [row.values for row in rows_of(data, chunk=1)]


def test_header_only_file_has_no_rows() -> None:
    stream = CsvStream()
    assert stream.feed(b"phone,email,first_name\r\n") == []
    assert stream.close() == []
    assert stream.header == ("phone", "email", "first_name")
    assert stream.encoding == "utf-8"
    assert stream.dialect is not None
    assert stream.dialect.crlf


def test_malformed_rows_keep_their_line_numbers_and_reading_goes_on() -> None:
    data = b'phone,name\n1,Ann\n2,Bo,extra\n\n3\n4,"multi\nline"\n5,Cy\n'
    rows = rows_of(data)
    assert [(row.line, row.values, row.raw, row.problem) for row in rows] == [
        (2, {"phone": "1", "name": "Ann"}, ["1", "Ann"], None),
        (3, None, ["2", "Bo", "extra"], "expected 2 fields, found 3"),
        (5, None, ["3"], "expected 2 fields, found 1"),
        (6, {"phone": "4", "name": "multi\nline"}, ["4", "multi\nline"], None),
        (8, {"phone": "5", "name": "Cy"}, ["5", "Cy"], None),
    ]


def test_unterminated_quote_spoils_only_its_own_line() -> None:
    data = b'phone,name\n1,"Ann\n2,Bo\n3,Cy\n'
    assert [(row.line, row.problem) for row in rows_of(data)] == [
        (2, "unterminated quoted field"),
        (3, None),
        (4, None),
    ]
    assert rows_of(data, chunk=1) == rows_of(data)


def test_runaway_quote_is_cut_at_the_record_limit() -> None:
    filler = b"".join(b"%d,Bo\n" % n for n in range(30_000))  # well past MAX_RECORD_CHARS
    data = b'phone,name\n1,"Ann\n' + filler + b'9,"ok"\n'
    rows = rows_of(data)
    assert rows[0].line == 2
    assert rows[0].problem == "unterminated quoted field"
    assert len(rows) == 1 + 30_000 + 1
    assert all(row.values is not None for row in rows[1:])
    assert rows[-1].values == {"phone": "9", "name": "ok"}
    assert rows[-1].line == 3 + 30_000


def test_field_over_64_kib_is_malformed() -> None:
    big = "x" * (MAX_FIELD_CHARS + 1)
    rows = rows_of(f"phone,note\n1,{big}\n2,ok\n".encode())
    assert rows[0].values is None
    assert rows[0].problem == f"a field is longer than {MAX_FIELD_CHARS} characters"
    assert len(rows[0].raw[1]) == MAX_FIELD_CHARS
    assert rows[1].values == {"phone": "2", "note": "ok"}


@pytest.mark.parametrize("chunk", [None, 1, 4096])
def test_line_over_record_limit_is_malformed_whatever_the_chunking(chunk: int | None) -> None:
    data = ("phone,note\n1," + "y" * (MAX_RECORD_CHARS + 10) + "\n2,ok\n").encode()
    rows = rows_of(data, chunk)
    assert [(row.line, row.problem) for row in rows] == [
        (2, f"line longer than {MAX_RECORD_CHARS} characters"),
        (3, None),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (codecs.BOM_UTF8, "no header row"),
        (b"\r\n\n  \n", "no header row"),
        (b"name,city\nAnn,Oslo\n", "no phone or email column; columns found: 'name', 'city'"),
        (b"phone,Phone\n1,2\n", "duplicate column names in the header (line 1): phone"),
        (b"email,name,NAME\n", "duplicate column names in the header (line 1): name"),
        (b'phone,"name\n', "unreadable header row (line 1): unterminated quoted field"),
        (bytes(range(256)) * 8, "NUL byte in the file (line 1)"),
        (bytes(range(1, 256)) * 8, "not a text CSV file: 488 control characters in its first 2040"),
        (b"phone\n\x01\x02\x03\x04\x05" * 50, "not a text CSV file"),
        (b"phone,name\n1,A\x00n\n", "NUL byte in the file (line 2)"),
        ("phone,name\n1,Ann\n".encode("utf-32"), "NUL byte"),
    ],
)
def test_unreadable_files_raise(data: bytes, message: str) -> None:
    with pytest.raises(CsvFormatError) as caught:
        rows_of(data)
    assert message in caught.value.message
    assert caught.value.code == "invalid_csv"


def test_invalid_utf8_after_the_sniff_window_names_byte_and_line() -> None:
    lines = SNIFF_BYTES // 7 + 10
    head = b"phone,name\n" + b"1,Zo\xc3\xab\n" * lines  # valid UTF-8 for more than 64 KiB
    data = head + b"2,M\xfcller\n"
    for chunk in (None, 1000):
        with pytest.raises(CsvFormatError) as caught:
            rows_of(data, chunk)
        line = 2 + lines
        assert caught.value.details == [{"byte": len(head) + 3, "line": line}]
        assert f"at byte {len(head) + 3} (line {line})" in caught.value.message


def test_nul_after_the_sniff_window_is_refused() -> None:
    data = b"email\n" + b"a@b.co\n" * (SNIFF_BYTES // 7 + 10) + b"\x00\x00\n"
    with pytest.raises(CsvFormatError, match="NUL byte"):
        rows_of(data, 4096)


def test_latin1_decision_is_made_on_the_first_window_only() -> None:
    data = b"phone,name\n" + "1,Müller\n".encode("latin-1") * (SNIFF_BYTES // 9 + 100)
    stream = CsvStream()
    out = stream.feed(data[:100])
    assert out == []  # nothing is released before the encoding is decided
    rows = out + stream.feed(data[100:]) + stream.close()
    assert stream.encoding == "cp1252"
    assert {row.values["name"] for row in rows if row.values} == {"Müller"}
    assert len(rows) == SNIFF_BYTES // 9 + 100


def test_feed_after_close_is_a_bug() -> None:
    stream = CsvStream()
    stream.feed(b"phone\n1\n")
    stream.close()
    assert stream.close() == []
    with pytest.raises(ValueError, match="after close"):
        stream.feed(b"2\n")


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("phone,name\n1,Ann\n", ","),
        ("phone;name\n1;Ann\n", ";"),
        ("phone;name, title\n1;Ann, Dr\n", ";"),  # commas inside values do not fool it
        ("phone\tname;x\n1\tAnn;y\n", "\t"),
        ("phone|name\n1|Ann\n", "|"),
        ("phone\n1\n", ","),  # one column: nothing to split
        ('"phone;x","name"\n"1;2","Ann"\n', ","),  # delimiters inside quotes do not count
    ],
)
def test_sniff_dialect(sample: str, delimiter: str) -> None:
    assert sniff_dialect(sample, complete=True).delimiter == delimiter


def test_big_file_fed_byte_by_byte_matches_whole() -> None:
    lines = ["phone;email;note"]
    lines += [f'+33 6 12 34 {n % 100:02d} {n % 97:02d};u{n}@exämple.com;"é;\n{n}"' for n in range(2500)]
    data = ("\r\n".join(lines) + "\r\n").encode()
    assert len(data) > SNIFF_BYTES
    whole = rows_of(data)
    assert len(whole) == 2500
    assert whole[-1].values == {
        "phone": "+33 6 12 34 99 74",
        "email": "u2499@exämple.com",
        "note": "é;\n2499",
    }
    assert rows_of(data, chunk=1) == whole
    assert rows_of(data, chunk=SNIFF_BYTES - 1) == whole


# No lone "\r": csv.writer leaves it unquoted when the line terminator is "\n", which no reader can undo.
# No "€" either: its cp1252 byte 0x80 after "é" (0xE9) would be valid UTF-8, a genuinely ambiguous file.
FIELD = st.text(alphabet=st.sampled_from(list('ab1 ,;|\t"\néü+@')), max_size=12)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, list[list[str]], list[int]]:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    records = draw(st.lists(st.lists(FIELD, min_size=3, max_size=3), max_size=15))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=terminator)
    writer.writerow(["phone", "email", "note"])
    writer.writerows(records)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    data = buffer.getvalue().encode(encoding)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    return data, records, cuts


@FAST
@given(csv_files())
def test_any_chunking_reads_what_csv_wrote(case: tuple[bytes, list[list[str]], list[int]]) -> None:
    data, records, cuts = case
    bounds = [0, *cuts, len(data)]
    chunks = [data[start:end] for start, end in itertools.pairwise(bounds)]
    whole = list(iter_rows([data]))
    assert list(iter_rows(chunks)) == whole
    assert list(iter_rows(data[i : i + 1] for i in range(len(data)))) == whole
    expected = [{"phone": a.strip(), "email": b.strip(), "note": c.strip()} for a, b, c in records]
    assert [row.values for row in whole] == expected


def test_malformed_row_becomes_a_rejection() -> None:
    good, bad = rows_of(b"phone,name\n1,Ann\n2\n")
    assert good.rejection() is None
    assert bad.rejection() == Rejection(RejectReason.MALFORMED_ROW, "line 3: expected 2 fields, found 1")


GARBAGE_LINE = st.text(alphabet=st.sampled_from(list('+0123456789 ,;"\n@.abé')), max_size=30)


@FAST
@given(st.lists(GARBAGE_LINE, max_size=20), st.sampled_from(["US", "GB", None]))
def test_garbage_file_rows_each_land_in_one_bucket(lines: list[str], region: str | None) -> None:
    data = ("phone,email,note\n" + "\n".join(lines)).encode()
    try:
        parsed = rows_of(data)
    except CsvFormatError:
        return  # a file refused as a whole has no rows to count
    buckets, deduper = Buckets(), FileDeduper()
    for row in parsed:
        outcome = row.rejection() or classify_row(row.values or {}, default_region=region, channels=None)
        if isinstance(outcome, Rejection):
            buckets.add(outcome)
        elif deduper.seen(outcome.dedupe_key):
            buckets.add_duplicate()
        else:
            buckets.add(outcome)
    assert buckets.rows == len(parsed)
    assert buckets.accepted + buckets.rejected + buckets.duplicate + buckets.suppressed == len(parsed)
    assert buckets.reasons["malformed_row"] == sum(row.values is None for row in parsed)
    assert sum(buckets.reasons.values()) == buckets.rejected
