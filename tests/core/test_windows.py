from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.windows import (
    DEFAULT_QUIET,
    DEFAULT_WINDOWS,
    SEARCH_HORIZON,
    Window,
    ZonePlan,
    ZonePlanner,
    clip_windows,
    known_zones,
    next_send_time,
    parse_window,
    parse_windows,
    resolve_zones,
    send_intervals,
    spread,
)
from dispatcher.errors import InputError

ALL_DAY = parse_window("00:00-24:00")
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
AU_MOBILE = (
    "Australia/Adelaide",
    "Australia/Brisbane",
    "Australia/Eucla",
    "Australia/Lord_Howe",
    "Australia/Perth",
    "Australia/Sydney",
    "Indian/Christmas",
    "Indian/Cocos",
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def w(text: str) -> tuple[Window, ...]:
    return parse_windows(text)


# --- parsing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10:30-11:30,15:00-17:00", ((time(10, 30), time(11, 30)), (time(15), time(17)))),
        (" 15:00 - 17:00 , 9:05-10:00 ", ((time(9, 5), time(10)), (time(15), time(17)))),
        ("22:00-24:00", ((time(22), time(0)),)),
        ("00:00-24:00", ((time(0), time(0)),)),
        ("10:00-11:00,11:00-12:00", ((time(10), time(11)), (time(11), time(12)))),
    ],
)
def test_parse_windows_accepts(text: str, expected: tuple[tuple[time, time], ...]) -> None:
    assert tuple((window.start, window.end) for window in parse_windows(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no send window"),
        (" , ", "no send window"),
        ("10:30", "expected HH:MM-HH:MM"),
        ("10.30-11.30", "expected HH:MM-HH:MM"),
        ("10:30-11:30;15:00-17:00", "expected HH:MM-HH:MM"),
        ("11:30-10:30", "must end after it starts"),
        ("10:30-10:30", "must end after it starts"),
        ("22:00-02:00", "must end after it starts"),
        ("25:00-26:00", "invalid time"),
        ("10:60-11:00", "invalid time"),
        ("24:00-24:00", "invalid time"),
        ("10:00-12:00,11:00-13:00", "overlap"),
        ("15:00-17:00,10:00-15:30", "overlap"),
    ],
)
def test_parse_windows_rejects(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_windows(text)


def test_window_rejects_zoned_times_and_prints_back() -> None:
    with pytest.raises(InputError, match="without a zone"):
        Window(time(10, tzinfo=UTC), time(11))
    assert [str(window) for window in w("10:30-11:30,22:00-24:00")] == ["10:30-11:30", "22:00-24:00"]


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        ("10:30-11:30", time(10, 30), True),
        ("10:30-11:30", time(11, 29, 59, 999999), True),
        ("10:30-11:30", time(11, 30), False),
        ("10:30-11:30", time(10, 29, 59), False),
        ("22:00-24:00", time(23, 59, 59), True),
        ("22:00-24:00", time(0), False),
        ("00:00-24:00", time(0), True),
    ],
)
def test_window_is_half_open(window: str, moment: time, inside: bool) -> None:
    assert parse_window(window).contains(moment) is inside


@pytest.mark.parametrize(
    ("windows", "allowed", "expected"),
    [
        ("07:00-09:00", "08:00-21:00", "08:00-09:00"),
        ("10:30-11:30,15:00-17:00", "08:00-21:00", "10:30-11:30,15:00-17:00"),
        ("06:00-07:00,20:00-24:00", "08:00-21:00", "20:00-21:00"),
        ("06:00-07:00", "08:00-21:00", ""),
        ("20:00-24:00", "00:00-24:00", "20:00-24:00"),
    ],
)
def test_clip_windows_to_allowed_hours(windows: str, allowed: str, expected: str) -> None:
    clipped = clip_windows(w(windows), parse_window(allowed))
    assert ",".join(str(window) for window in clipped) == expected


def test_defaults() -> None:
    assert [str(window) for window in DEFAULT_WINDOWS] == ["10:30-11:30", "15:00-17:00"]
    assert str(DEFAULT_QUIET) == "08:00-21:00"


# --- next send time -------------------------------------------------------------------------------------

NEXT_CASES = [
    # id, now, zones, windows, allowed, expected
    ("ny-before-window", utc(2026, 1, 5, 12), ("America/New_York",), None, None, utc(2026, 1, 5, 15, 30)),
    ("ny-inside-window", utc(2026, 1, 5, 15, 45), ("America/New_York",), None, None, utc(2026, 1, 5, 15, 45)),
    (
        "ny-window-end-excluded",
        utc(2026, 1, 5, 16, 30),
        ("America/New_York",),
        None,
        None,
        utc(2026, 1, 5, 20),
    ),
    ("ny-after-last-window", utc(2026, 1, 5, 22), ("America/New_York",), None, None, utc(2026, 1, 6, 15, 30)),
    ("london-summer", utc(2026, 7, 1, 8), ("Europe/London",), None, None, utc(2026, 7, 1, 9, 30)),
    ("kolkata-half-hour", utc(2026, 1, 5), ("Asia/Kolkata",), None, None, utc(2026, 1, 5, 5)),
    ("lord-howe-dst-inside", utc(2026, 1, 5), ("Australia/Lord_Howe",), None, None, utc(2026, 1, 5)),
    ("lord-howe-dst-next", utc(2026, 1, 5, 1), ("Australia/Lord_Howe",), None, None, utc(2026, 1, 5, 4)),
    ("lord-howe-standard", utc(2026, 6, 30, 23), ("Australia/Lord_Howe",), None, None, utc(2026, 7, 1)),
    ("chatham-dst", utc(2026, 1, 5, 12), ("Pacific/Chatham",), None, None, utc(2026, 1, 5, 20, 45)),
    ("chatham-standard", utc(2026, 7, 5, 12), ("Pacific/Chatham",), None, None, utc(2026, 7, 5, 21, 45)),
    # US spring forward 2026-03-08: 10:30 is EDT (14:30 UTC), not EST.
    ("us-spring-day", utc(2026, 3, 8, 12), ("America/New_York",), None, None, utc(2026, 3, 8, 14, 30)),
    ("us-spring-eve", utc(2026, 3, 7, 22), ("America/New_York",), None, None, utc(2026, 3, 8, 14, 30)),
    ("us-gap-start", utc(2026, 3, 8, 5), ("America/New_York",), "02:30-03:30", ALL_DAY, utc(2026, 3, 8, 7)),
    ("us-gap-whole", utc(2026, 3, 8, 5), ("America/New_York",), "02:00-03:00", ALL_DAY, utc(2026, 3, 9, 6)),
    # US fall back 2026-11-01: the repeated 01:00-02:00 hour opens a 01:00-01:30 window twice.
    (
        "us-fold-first",
        utc(2026, 11, 1, 5),
        ("America/New_York",),
        "01:00-01:30",
        ALL_DAY,
        utc(2026, 11, 1, 5),
    ),
    (
        "us-fold-second",
        utc(2026, 11, 1, 5, 30),
        ("America/New_York",),
        "01:00-01:30",
        ALL_DAY,
        utc(2026, 11, 1, 6),
    ),
    ("us-fall-day", utc(2026, 10, 31, 22), ("America/New_York",), None, None, utc(2026, 11, 1, 15, 30)),
    # EU 2026-03-29 (01:00 UTC) and 2026-10-25 (01:00 UTC).
    ("eu-spring-day", utc(2026, 3, 29), ("Europe/London",), None, None, utc(2026, 3, 29, 9, 30)),
    ("eu-gap-start", utc(2026, 3, 29), ("Europe/London",), "01:30-02:30", ALL_DAY, utc(2026, 3, 29, 1)),
    ("eu-berlin-spring", utc(2026, 3, 28, 20), ("Europe/Berlin",), None, None, utc(2026, 3, 29, 8, 30)),
    ("eu-fall-day", utc(2026, 10, 24, 20), ("Europe/London",), None, None, utc(2026, 10, 25, 10, 30)),
    (
        "eu-fold-twice",
        utc(2026, 10, 25, 0, 45),
        ("Europe/London",),
        "01:00-01:30",
        ALL_DAY,
        utc(2026, 10, 25, 1),
    ),
    # Multi-zone numbers: only instants inside a window in every zone.
    (
        "alaska-winter",
        utc(2026, 1, 5, 12),
        ("America/Anchorage", "America/Adak"),
        None,
        None,
        utc(2026, 1, 6, 1),
    ),
    (
        "alaska-summer",
        utc(2026, 7, 1, 12),
        ("America/Anchorage", "America/Adak"),
        None,
        None,
        utc(2026, 7, 2),
    ),
    (
        "au-east-july",
        utc(2026, 7, 1),
        ("Australia/Sydney", "Australia/Adelaide", "Australia/Brisbane"),
        None,
        None,
        utc(2026, 7, 1, 1),
    ),
    ("au-mobile-none", utc(2026, 1, 5), AU_MOBILE, None, None, None),
    ("sydney-perth-none", utc(2026, 7, 1), ("Australia/Sydney", "Australia/Perth"), None, None, None),
    ("ny-tokyo-none", utc(2026, 1, 5), ("America/New_York", "Asia/Tokyo"), None, None, None),
    # Quiet hours clip windows: 07:00-09:00 with 08:00-21:00 allowed is 08:00-09:00.
    ("clipped-window", utc(2026, 1, 5, 11), ("America/New_York",), "07:00-09:00", None, utc(2026, 1, 5, 13)),
    ("window-all-quiet", utc(2026, 1, 5, 11), ("America/New_York",), "05:00-07:00", None, None),
]


@pytest.mark.parametrize(
    ("now", "zones", "windows", "allowed", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in NEXT_CASES],
)
def test_next_send_time(
    now: datetime,
    zones: tuple[str, ...],
    windows: str | None,
    allowed: Window | None,
    expected: datetime | None,
) -> None:
    found = next_send_time(now, zones, w(windows) if windows else DEFAULT_WINDOWS, allowed or DEFAULT_QUIET)
    assert found == expected


@pytest.mark.parametrize(
    ("not_after", "expected"),
    [
        (utc(2026, 1, 5, 15, 30), None),  # the end is exclusive
        (utc(2026, 1, 5, 15, 30, 1), utc(2026, 1, 5, 15, 30)),
        (utc(2026, 1, 5, 12), None),
        (utc(2026, 1, 4), None),
        (utc(2027, 1, 5), utc(2026, 1, 5, 15, 30)),
    ],
)
def test_not_after_expires(not_after: datetime, expected: datetime | None) -> None:
    assert next_send_time(utc(2026, 1, 5, 12), ["America/New_York"], not_after=not_after) == expected


def test_seasonal_intersection_needs_a_long_search() -> None:
    # London and Abidjan agree only outside British Summer Time; a one-hour window meets only then.
    zones, windows = ["Europe/London", "Africa/Abidjan"], w("10:00-11:00")
    assert next_send_time(utc(2026, 4, 1), zones, windows) is None
    found = next_send_time(utc(2026, 4, 1), zones, windows, not_after=utc(2026, 12, 1))
    assert found == utc(2026, 10, 25, 10)


def test_returned_instant_keeps_microseconds_and_converts_other_zones() -> None:
    now = datetime(2026, 1, 5, 11, 0, 0, 123456, tzinfo=ZoneInfo("America/New_York"))
    assert next_send_time(now, ["America/New_York"]) == now.astimezone(UTC)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: next_send_time(datetime(2026, 1, 5), ["UTC"]), "timezone-aware"),
        (lambda: next_send_time(utc(2026, 1, 5), []), "at least one time zone"),
        (lambda: next_send_time(utc(2026, 1, 5), ["Mars/Olympus"]), "unknown time zone"),
        (lambda: spread(utc(2026, 1, 5), [["UTC"]], bucket=timedelta(0)), "positive"),
    ],
)
def test_bad_arguments_raise_input_error(call: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()  # type: ignore[operator]


# --- intervals and plans --------------------------------------------------------------------------------


def hours(day: datetime, *bounds: tuple[float, float]) -> list[tuple[datetime, datetime]]:
    """UTC intervals given as hours after ``day``'s midnight, to keep the tables readable."""
    return [(day + timedelta(hours=low), day + timedelta(hours=high)) for low, high in bounds]


JAN5, MAR8, NOV1 = utc(2026, 1, 5), utc(2026, 3, 8), utc(2026, 11, 1)
NY = ("America/New_York",)

INTERVAL_CASES = [
    # id, start, end, zones, windows, allowed, expected
    (
        "ny-winter-day",
        JAN5,
        JAN5 + DAY,
        NY,
        DEFAULT_WINDOWS,
        DEFAULT_QUIET,
        hours(JAN5, (15.5, 16.5), (20, 22)),
    ),
    (
        "ny-spring-day",
        MAR8,
        MAR8 + DAY,
        NY,
        DEFAULT_WINDOWS,
        DEFAULT_QUIET,
        hours(MAR8, (14.5, 15.5), (19, 21)),
    ),
    (
        "ny-fold-twice",
        NOV1 + 4 * HOUR,
        NOV1 + 8 * HOUR,
        NY,
        w("00:30-01:30"),
        ALL_DAY,
        hours(NOV1, (4.5, 5.5), (6, 6.5)),
    ),
    (
        "clipped-to-range",
        JAN5 + 16 * HOUR,
        JAN5 + 21 * HOUR,
        NY,
        DEFAULT_WINDOWS,
        DEFAULT_QUIET,
        hours(JAN5, (16, 16.5), (20, 21)),
    ),
    ("ny-tokyo-never", JAN5, JAN5 + DAY, (*NY, "Asia/Tokyo"), DEFAULT_WINDOWS, DEFAULT_QUIET, []),
    (
        "alaska-meets",
        JAN5 + 12 * HOUR,
        JAN5 + 36 * HOUR,
        ("America/Anchorage", "America/Adak"),
        DEFAULT_WINDOWS,
        DEFAULT_QUIET,
        hours(JAN5, (25, 26)),
    ),
    ("quiet-clips-window", JAN5, JAN5 + DAY, NY, w("07:00-09:00"), DEFAULT_QUIET, hours(JAN5, (13, 14))),
    # Touching windows form one interval; on 2026-03-08 the gap makes 01:00-02:00 and 03:00-04:00 touch.
    (
        "touching-windows",
        JAN5,
        JAN5 + DAY,
        ("UTC",),
        w("10:00-11:00,11:00-12:00"),
        ALL_DAY,
        hours(JAN5, (10, 12)),
    ),
    ("gap-joins-windows", MAR8, MAR8 + DAY, NY, w("01:00-02:00,03:00-04:00"), ALL_DAY, hours(MAR8, (6, 8))),
]


@pytest.mark.parametrize(
    ("start", "end", "zones", "windows", "allowed", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in INTERVAL_CASES],
)
def test_send_intervals(
    start: datetime,
    end: datetime,
    zones: tuple[str, ...],
    windows: tuple[Window, ...],
    allowed: Window,
    expected: list[tuple[datetime, datetime]],
) -> None:
    assert send_intervals(start, end, zones, windows, allowed) == expected


def test_zone_plan_lookups_match_next_send_time() -> None:
    start = utc(2026, 3, 1)
    plan = ZonePlan.build(("America/New_York", "America/Chicago"), start, start + timedelta(days=30))
    for hours in range(0, 30 * 24, 5):
        now = start + timedelta(hours=hours, minutes=17)
        horizon_end = start + timedelta(days=30)
        assert plan.next_after(now) == next_send_time(now, plan.zones, not_after=horizon_end)
    assert plan.next_after(start + timedelta(days=31)) is None
    # New York's 15:00-17:00 EST meets Chicago's 15:00-17:00 CST for one hour; the morning windows never meet.
    assert plan.interval_at(utc(2026, 3, 2, 21, 59)) == (utc(2026, 3, 2, 21), utc(2026, 3, 2, 22))
    assert plan.interval_at(utc(2026, 3, 2, 22)) is None
    assert plan.interval_at(utc(2026, 3, 2, 16)) is None


@pytest.mark.parametrize(
    ("zone", "summer", "winter"),
    [
        (
            "America/New_York",
            (utc(2026, 7, 1, 14, 30), utc(2026, 7, 1, 15, 30)),
            (utc(2026, 12, 1, 15, 30), utc(2026, 12, 1, 16, 30)),
        ),
        (
            "Australia/Lord_Howe",
            (utc(2026, 7, 1), utc(2026, 7, 1, 1)),
            (utc(2026, 11, 30, 23, 30), utc(2026, 12, 1, 0, 30)),
        ),
    ],
)
def test_year_long_plan_follows_both_transitions(
    zone: str, summer: tuple[datetime, datetime], winter: tuple[datetime, datetime]
) -> None:
    plan = ZonePlan.build([zone], utc(2026, 1, 1), utc(2027, 1, 1), w("10:30-11:30,15:00-17:00"), ALL_DAY)
    assert plan.interval_at(summer[0] + timedelta(minutes=1)) == summer
    assert plan.interval_at(winter[0] + timedelta(minutes=1)) == winter
    assert len(plan.intervals) in {2 * 365, 2 * 365 + 1}


def test_planner_caches_one_plan_per_zone_tuple() -> None:
    planner = ZonePlanner(utc(2026, 1, 5), utc(2026, 1, 19))
    first = planner.plan(("Asia/Kolkata",))
    assert planner.plan(["Asia/Kolkata"]) is first
    assert planner.next_after(["Asia/Kolkata"], utc(2026, 1, 5)) == utc(2026, 1, 5, 5)


def test_spread_buckets_next_send_times() -> None:
    zone_lists = [["America/New_York"]] * 3 + [["Asia/Kolkata"]] * 2 + [AU_MOBILE, ["Europe/London"]]
    result = spread(utc(2026, 1, 5), zone_lists)
    assert result == {utc(2026, 1, 5, 5): 2, utc(2026, 1, 5, 10): 1, utc(2026, 1, 5, 15): 3}
    assert list(result) == sorted(result)
    daily = spread(utc(2026, 1, 5), zone_lists, bucket=timedelta(days=1))
    assert daily == {utc(2026, 1, 5): 6}


# --- zone resolution ------------------------------------------------------------------------------------

NOW = utc(2026, 1, 5)


@pytest.mark.parametrize(
    ("number_zones", "contact_zone", "list_default", "expected"),
    [
        (("America/New_York",), "Europe/London", "Asia/Tokyo", ("America/New_York",)),
        (("Etc/Unknown", "America/New_York"), None, None, ("America/New_York",)),
        (("America/Anchorage", "America/Adak"), "Europe/London", None, ("America/Anchorage", "America/Adak")),
        (("America/Adak", "America/Adak"), None, None, ("America/Adak",)),
        (AU_MOBILE, "Australia/Perth", "Australia/Sydney", ("Australia/Perth",)),
        (AU_MOBILE, None, "Australia/Sydney", ("Australia/Sydney",)),
        (AU_MOBILE, "Not/AZone", "Australia/Sydney", ("Australia/Sydney",)),
        (AU_MOBILE, "Not/AZone", "../../etc/passwd", AU_MOBILE),  # expires rather than goes at night
        ((), "Europe/Paris", None, ("Europe/Paris",)),
        (("Etc/Unknown",), "", None, ("UTC",)),
        ((), None, None, ("UTC",)),
    ],
)
def test_resolve_zones(
    number_zones: tuple[str, ...],
    contact_zone: str | None,
    list_default: str | None,
    expected: tuple[str, ...],
) -> None:
    assert (
        resolve_zones(number_zones, contact_zone, list_default, DEFAULT_WINDOWS, DEFAULT_QUIET, NOW)
        == expected
    )


def test_known_zones_ignores_junk() -> None:
    assert known_zones(["America", "", None, "UTC", "a" * 300, "UTC", "Asia/Kolkata"]) == (
        "UTC",
        "Asia/Kolkata",
    )


# --- properties -----------------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "America/Adak",
    "America/Sao_Paulo",
    "America/St_Johns",
    "America/Santiago",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Moscow",
    "Africa/Lagos",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Asia/Tehran",
    "Asia/Dubai",
    "Asia/Shanghai",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Perth",
    "Australia/Eucla",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Auckland",
    "Pacific/Kiritimati",
    "Pacific/Marquesas",
    "Indian/Cocos",
]
QUARTER = timedelta(minutes=15)


def _is_send_instant(
    moment: datetime, zones: Sequence[str], windows: Sequence[Window], allowed: Window
) -> bool:
    """The rule, checked independently of the implementation: read each zone's clock."""
    for zone in zones:
        clock = moment.astimezone(ZoneInfo(zone)).time()
        if not (allowed.contains(clock) and any(window.contains(clock) for window in windows)):
            return False
    return True


def _quarters(start: datetime, end: datetime) -> list[datetime]:
    """Every UTC quarter hour in (start, end): all zones above, windows and transitions sit on this grid."""
    first = datetime.fromtimestamp((start.timestamp() // 900 + 1) * 900, tz=UTC)
    return [
        first + index * QUARTER
        for index in range(int((end - first) / QUARTER) + 1)
        if first + index * QUARTER < end
    ]


nows = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
zone_sets = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True)


def _quarter_clock(quarter: int) -> time:
    return time(0) if quarter == 96 else time(quarter // 4, quarter % 4 * 15)


@st.composite
def window_sets(draw: st.DrawFn) -> tuple[Window, ...]:
    quarters = draw(st.lists(st.integers(0, 96), min_size=2, max_size=6, unique=True).map(sorted))
    pairs = list(zip(quarters[::2], quarters[1::2], strict=False))
    return tuple(Window(_quarter_clock(low), _quarter_clock(high)) for low, high in pairs)


allowed_hours = st.one_of(
    st.just(DEFAULT_QUIET), st.just(ALL_DAY), window_sets().map(lambda windows: windows[0])
)


@settings(max_examples=200, deadline=None)
@given(
    now=nows,
    zones=zone_sets,
    windows=st.one_of(st.just(DEFAULT_WINDOWS), window_sets()),
    allowed=allowed_hours,
)
def test_next_send_time_is_the_earliest_valid_instant(
    now: datetime, zones: list[str], windows: tuple[Window, ...], allowed: Window
) -> None:
    found = next_send_time(now, zones, windows, allowed)
    end = found if found is not None else now + SEARCH_HORIZON
    if found is not None:
        assert now <= found < now + SEARCH_HORIZON
        assert _is_send_instant(found, zones, windows, allowed)
    for candidate in [moment for moment in [now, *_quarters(now, end)] if moment < end]:
        assert not _is_send_instant(candidate, zones, windows, allowed), candidate


@settings(max_examples=200, deadline=None)
@given(start=nows, zones=zone_sets, windows=window_sets(), allowed=allowed_hours)
def test_send_intervals_are_never_crossed(
    start: datetime, zones: list[str], windows: tuple[Window, ...], allowed: Window
) -> None:
    end = start + timedelta(days=3)
    intervals = send_intervals(start, end, zones, windows, allowed)
    for (_, earlier_end), (later_start, _) in pairwise(intervals):
        assert earlier_end < later_start
    for low, high in intervals:
        assert start <= low < high <= end
        for moment in (low, low + (high - low) / 2, high - timedelta(microseconds=1)):
            assert _is_send_instant(moment, zones, windows, allowed), moment
        if high < end:
            assert not _is_send_instant(high, zones, windows, allowed)
