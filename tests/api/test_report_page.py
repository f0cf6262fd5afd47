"""The report pages opened in real headless Chromium: the charts must render, carrying the right numbers.

Chromium runs the page's script and prints the resulting DOM (``--dump-dom``); the SVG bars and points
carry their series, group and value as data attributes, which are checked against the seeded ledger.
Locally a missing Chromium skips these tests; in CI (``CI=true``) it fails them.
"""

from __future__ import annotations

import asyncio
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SESSIONS
from dispatcher.ops.reports import write_campaign_report_html
from tests.conftest import IN_CI, KeyMaker, bearer
from tests.storage.report_seed import Seeded, seed

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--dump-dom")


class _Dom(HTMLParser):
    """Every element as (tag, attributes, text of the element when it is an SVG ``text``)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.labels: dict[tuple[str, str], str] = {}
        self._label: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.elements.append((tag, found))
        if tag == "text" and "bar-label" in found.get("class", ""):
            self._label = (found["data-series"], found["data-group"])

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self.labels[self._label] = data
            self._label = None

    def values(self, chart: str, tag: str) -> dict[tuple[str, str], str]:
        """``(series, group) → data-value`` of ``tag`` elements inside the chart named ``chart``."""
        found: dict[tuple[str, str], str] = {}
        inside = False
        for name, attrs in self.elements:
            if name == "svg":
                inside = attrs.get("data-chart") == chart
            elif inside and name == tag and "data-value" in attrs:
                found[(attrs["data-series"], attrs["data-group"])] = attrs["data-value"]
        return found


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


async def _render(page: Path, profile: Path) -> _Dom:
    process = await asyncio.create_subprocess_exec(
        _chromium(),
        *FLAGS,
        f"--user-data-dir={profile}",
        page.as_uri(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0
    dom = _Dom()
    dom.feed(out.decode("utf-8"))
    return dom


def _rendered(dom: _Dom) -> bool:
    return any(tag == "main" and attrs.get("data-rendered") == "true" for tag, attrs in dom.elements)


@pytest.fixture
async def seeded(client: TestClient, db_url: str) -> Seeded:
    return await seed(db_url)


async def test_campaign_page_draws_rates_per_batch_channel_and_day(
    client: TestClient, seeded: Seeded, tmp_path: Path
) -> None:
    _chromium()
    async with client.app[SESSIONS]() as session:
        page = await write_campaign_report_html(
            session, seeded.workspace_id, seeded.spring, tmp_path / "r.html"
        )
    dom = await _render(page, tmp_path / "profile")
    assert _rendered(dom)
    pilot, main = f"P{seeded.spring}", f"M{seeded.spring}"
    bars = dom.values("batches", "rect")
    assert {k: float(v) for k, v in bars.items()} == {
        ("arrival_rate", pilot): 2 / 3,
        ("response_rate", pilot): 0.5,
        ("arrival_rate", main): 2 / 3,
        ("response_rate", main): 1.0,
    }
    assert dom.labels[("arrival_rate", pilot)] == "66.7%"
    assert dom.labels[("response_rate", main)] == "100.0%"
    channels = {k: float(v) for k, v in dom.values("channels", "rect").items()}
    assert channels == {("arrival_rate", "sms"): 4 / 6, ("response_rate", "sms"): 0.75}
    assert dom.labels[("response_rate", "sms")] == "75.0%"
    volume = dom.values("timeline", "rect")
    assert volume == {("sent", "2030-01-14"): "3", ("sent", "2030-01-15"): "3"}
    points = {k: float(v) for k, v in dom.values("timeline", "circle").items()}
    assert points == {
        ("arrival_rate", "2030-01-14"): 2 / 3,
        ("response_rate", "2030-01-14"): 0.5,
        ("arrival_rate", "2030-01-15"): 2 / 3,
        ("response_rate", "2030-01-15"): 1.0,
    }


async def test_overview_page_served_over_http(
    client: TestClient, make_key: KeyMaker, seeded: Seeded, tmp_path: Path
) -> None:
    _chromium()
    key = await make_key("shop", ("read",))
    response = await client.get("/v1/reports.html", headers=bearer(key))
    assert response.status == 200
    page = tmp_path / "overview.html"
    page.write_text(await response.text(), encoding="utf-8")
    dom = await _render(page, tmp_path / "profile")
    assert _rendered(dom)
    campaigns = {k: float(v) for k, v in dom.values("campaigns", "rect").items()}
    assert campaigns == {
        ("arrival_rate", "spring"): 4 / 6,
        ("response_rate", "spring"): 0.75,
        ("arrival_rate", "news"): 1.0,
        ("response_rate", "news"): 1.0,
    }
    channels = {k: float(v) for k, v in dom.values("channels", "rect").items()}
    assert channels == {
        ("arrival_rate", "email"): 1.0,
        ("response_rate", "email"): 1.0,
        ("arrival_rate", "sms"): 4 / 6,
        ("response_rate", "sms"): 0.75,
    }
    volume = dom.values("timeline", "rect")
    assert volume == {("sent", "2030-01-14"): "3", ("sent", "2030-01-15"): "3", ("sent", "2030-01-16"): "1"}
