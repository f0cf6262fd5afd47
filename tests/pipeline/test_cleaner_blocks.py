"""Blocks cut by RecordCutter and parsed apart give exactly the rows of one whole-file parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.csvinput import ParsedRow, iter_rows
from dispatcher.errors import CsvFormatError
from dispatcher.pipeline.cleaner_blocks import RecordCutter, TextBlock, parse_block


def _by_blocks(data: bytes, block_chars: int, chunk: int) -> list[ParsedRow]:
    cutter = RecordCutter(block_chars)
    blocks = []
    for start in range(0, len(data), chunk):
        blocks += cutter.feed(data[start : start + chunk])
    blocks += cutter.close()
    rows: list[ParsedRow] = []
    for block in blocks:
        rows += parse_block(block) if isinstance(block, TextBlock) else block
    return rows


def _whole(data: bytes) -> list[ParsedRow] | str:
    try:
        return list(iter_rows([data]))
    except CsvFormatError as exc:
        return exc.message


_CELL = st.sampled_from(["a", "", "1", '"q"', '"a,b"', '"x\ny"', '"un', 'end"', '""', " s ", "é", "\r"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(_CELL, min_size=1, max_size=4), min_size=0, max_size=40),
    st.sampled_from([8, 16, 64, 4096]),
    st.sampled_from([1, 7, 64, 1 << 16]),
)
def test_blocks_parse_to_the_whole_file_rows(rows: list[list[str]], block_chars: int, chunk: int) -> None:
    data = ("phone,email,x\n" + "".join(",".join(cells) + "\n" for cells in rows)).encode()
    expected = _whole(data)
    if isinstance(expected, str):
        with pytest.raises(CsvFormatError):
            _by_blocks(data, block_chars, chunk)
        return
    assert _by_blocks(data, block_chars, chunk) == expected


def test_a_large_file_is_cut_into_many_blocks_with_the_same_rows() -> None:
    body = "".join(f'+1415555{n % 10000:04d},"Name, {n}\nline two",p{n}@example.com\n' for n in range(3000))
    data = ("phone,note,email\n" + body).encode()
    cutter = RecordCutter(4096)
    blocks = cutter.feed(data) + cutter.close()
    assert len(blocks) > 10
    assert _by_blocks(data, 4096, 1000) == list(iter_rows([data]))
