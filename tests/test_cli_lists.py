"""``dispatcher lists clean``: the offline cleaner as a marketer runs it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dispatcher.cli import main
from tests.ops.test_cleanfile import MESSY, MESSY_COUNTS


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    path = tmp_path / "messy.csv"
    path.write_bytes(MESSY)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["lists", "clean", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_prints_one_object_with_the_buckets(messy: Path) -> None:
    code, out, err = invoke(str(messy), "--default-region", "us", "--json", "--processes", "0")
    assert code == 0, err
    body = json.loads(out)
    assert {key: body[key] for key in MESSY_COUNTS} == MESSY_COUNTS
    assert body["seconds"] >= 0
    assert body["rows_per_second"] >= 0
    assert err == ""  # no progress bar when stderr is not a terminal


def test_human_summary_and_output_files(messy: Path, tmp_path: Path) -> None:
    out_path, rejects_path = tmp_path / "clean.csv", tmp_path / "rejects.csv"
    code, out, err = invoke(
        str(messy), "--default-region", "US", "--processes", "0",
        "--out", str(out_path), "--rejects", str(rejects_path),
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[0] == (
        "14 rows: 7 accepted, 4 rejected, 3 duplicate, 0 suppressed (suppressions apply on upload)"
    )
    assert "invalid_phone 2" in out
    assert "invalid_email 1" in out
    with out_path.open(newline="") as handle:
        assert len(list(csv.reader(handle))) == 1 + 7
    with rejects_path.open(newline="") as handle:
        assert [row[1] for row in csv.reader(handle)][1:] == [
            "invalid_phone", "empty", "malformed_row", "invalid_phone",
        ]  # fmt: skip


def test_missing_region_hint(messy: Path) -> None:
    code, out, _ = invoke(str(messy), "--processes", "0")
    assert code == 0
    assert "hint: numbers written without +CC need --default-region" in out


def test_sms_channel_only(tmp_path: Path) -> None:
    source = tmp_path / "landline.csv"
    source.write_bytes(b"phone\n+44 20 7946 0000\n")
    code, out, _ = invoke(str(source), "--channels", "sms", "--json", "--processes", "0")
    assert code == 0
    assert json.loads(out)["reasons"] == {"not_mobile": 1}


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"\x00\x01\x02\x03" * 100, [], "error: "),
        (b"", [], "error: empty file"),
        (b"name,city\nAnn,Oslo\n", [], "no phone or email column"),
        (MESSY, ["--default-region", "XX"], "error: unknown region 'XX'"),
        (MESSY, ["--channels", "fax"], "error: unknown channel(s) 'fax'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, content: bytes, args: list[str], message: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(content)
    code, out, err = invoke(
        str(source), "--json", "--processes", "0", "--out", str(tmp_path / "o.csv"), *args
    )
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not (tmp_path / "o.csv").exists()


def test_missing_file_is_clicks_usual_error(tmp_path: Path) -> None:
    code, _, err = invoke(str(tmp_path / "nope.csv"))
    assert code == 2
    assert "does not exist" in err


def test_unwritable_output_is_a_clear_error(messy: Path, tmp_path: Path) -> None:
    code, _, err = invoke(str(messy), "--processes", "0", "--out", str(tmp_path / "no" / "dir" / "o.csv"))
    assert code == 2
    assert err.startswith("error: ")
    assert "Traceback" not in err


def test_module_entry_point_cleans_on_the_process_pool(tmp_path: Path) -> None:
    """One real run through ``python -m dispatcher``, default pool (one process per core)."""
    source = tmp_path / "messy.csv"
    # the messy rows, then enough generated ones that several batches go through the pool
    generated = b"".join(b"+1 (212) 555-%04d;u%d@example.com;Gen;\r\n" % (i % 3000, i) for i in range(4500))
    source.write_bytes(MESSY + generated)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dispatcher",
            "lists",
            "clean",
            str(source),
            "--default-region",
            "US",
            "--json",
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["rows"] == body["accepted"] + body["rejected"] + body["duplicate"] + body["suppressed"]
    # generated phones 0000-2999; +1 212 555 0100..0102 already came from the messy rows
    assert (body["rows"], body["accepted"], body["rejected"], body["duplicate"], body["suppressed"]) == (
        14 + 4500, 7 + 3000 - 3, 4, 3 + 1500 + 3, 0,
    )  # fmt: skip
    assert body["reasons"]["duplicate_in_file"] == body["duplicate"]
