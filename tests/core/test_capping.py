from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.capping import CapKeys, CapPolicy, cap_decision, cap_keys, local_date_key
from dispatcher.errors import InputError

DEFAULT = CapPolicy()
NY = "America/New_York"
KOLKATA = "Asia/Kolkata"
TWO_A_DAY = CapPolicy(per_local_day=2)
TWO_IN_TWO_DAYS = CapPolicy(per_rolling_days=2, rolling_days=2)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def days_before(at: datetime, *days: float) -> list[datetime]:
    return [at - timedelta(days=day) for day in days]


AT = utc(2026, 1, 15, 15, 30)  # 10:30 in New York
SECOND = timedelta(seconds=1)

DECISIONS = [
    # id, history, at, zone, policy, allowed
    ("empty-history", [], AT, NY, DEFAULT, True),
    ("earlier-same-local-day", [utc(2026, 1, 15, 5, 30)], AT, NY, DEFAULT, False),  # 00:30 EST
    ("previous-local-day", [utc(2026, 1, 15, 4, 30)], AT, NY, DEFAULT, True),  # 23:30 EST the day before
    # 23:30 and 00:30 local are different days in New York, the same day in UTC.
    ("midnight-splits-days-ny", [utc(2026, 1, 6, 4, 30)], utc(2026, 1, 6, 5, 30), NY, DEFAULT, True),
    ("midnight-same-day-utc", [utc(2026, 1, 6, 4, 30)], utc(2026, 1, 6, 5, 30), "UTC", DEFAULT, False),
    # Kolkata's day starts at 18:30 UTC.
    ("kolkata-before-midnight", [utc(2026, 1, 5, 18, 29)], utc(2026, 1, 5, 18, 30), KOLKATA, DEFAULT, True),
    ("kolkata-after-midnight", [utc(2026, 1, 5, 18, 30)], utc(2026, 1, 5, 18, 45), KOLKATA, DEFAULT, False),
    ("later-send-same-day", [utc(2026, 1, 15, 20)], AT, NY, DEFAULT, False),
    # Rolling window (at - 7 days, at]: 3 allowed.
    ("two-in-window", days_before(AT, 1, 3), AT, NY, DEFAULT, True),
    ("three-in-window", days_before(AT, 1, 3, 6), AT, NY, DEFAULT, False),
    ("oldest-exactly-seven-days", days_before(AT, 1, 3, 7), AT, NY, DEFAULT, True),
    ("oldest-just-inside", [*days_before(AT, 1, 3), AT - timedelta(days=7) + SECOND], AT, NY, DEFAULT, False),
    ("future-sends-not-rolling", [AT + timedelta(days=day) for day in (1, 2, 3)], AT, NY, DEFAULT, True),
    ("custom-rolling-days", days_before(AT, 1, 2.5), AT, NY, TWO_IN_TWO_DAYS, True),
    ("custom-rolling-hit", days_before(AT, 1, 1.5), AT, NY, TWO_IN_TWO_DAYS, False),
    ("two-per-day", [AT - timedelta(hours=1)], AT, NY, TWO_A_DAY, True),
    ("two-per-day-hit", [AT - timedelta(hours=1), AT - timedelta(hours=2)], AT, NY, TWO_A_DAY, False),
    # Zero caps forbid the channel outright.
    ("zero-daily", [], AT, NY, CapPolicy(per_local_day=0), False),
    ("zero-rolling", [], AT, NY, CapPolicy(per_rolling_days=0), False),
    # US spring forward: 2026-03-08 lasts 23 hours (05:00 UTC to 04:00 UTC next day).
    ("dst-23h-day-start-end", [utc(2026, 3, 8, 5, 30)], utc(2026, 3, 9, 3, 30), NY, DEFAULT, False),
    ("dst-23h-next-day", [utc(2026, 3, 8, 5, 30)], utc(2026, 3, 9, 4), NY, DEFAULT, True),
    # US fall back: 2026-11-01 lasts 25 hours (04:00 UTC to 05:00 UTC next day).
    ("dst-25h-day-start-end", [utc(2026, 11, 1, 4, 15)], utc(2026, 11, 2, 4, 45), NY, DEFAULT, False),
    ("dst-25h-repeated-hour", [utc(2026, 11, 1, 5, 15)], utc(2026, 11, 1, 6, 15), NY, DEFAULT, False),
    ("dst-25h-next-day", [utc(2026, 11, 1, 4, 15)], utc(2026, 11, 2, 5), NY, DEFAULT, True),
    # EU: 2026-03-29 in Berlin starts at 23:00 UTC the day before and ends at 22:00 UTC.
    ("eu-dst-day", [utc(2026, 3, 28, 23, 5)], utc(2026, 3, 29, 21, 55), "Europe/Berlin", DEFAULT, False),
    ("eu-dst-next-day", [utc(2026, 3, 28, 23, 5)], utc(2026, 3, 29, 22), "Europe/Berlin", DEFAULT, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("history", "at", "zone", "policy", "allowed"),
    [pytest.param(*case[1:], id=case[0]) for case in DECISIONS],
)
def test_cap_decision(
    history: list[datetime], at: datetime, zone: str, policy: CapPolicy, allowed: bool
) -> None:
    assert cap_decision(history, at, zone, policy) is allowed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_local_day": -1}, "negative"),
        ({"per_rolling_days": -1}, "negative"),
        ({"rolling_days": 0}, "at least one day"),
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InputError, match=message):
        CapPolicy(**kwargs)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cap_decision([], datetime(2026, 1, 5), NY, DEFAULT), "timezone-aware"),
        (lambda: cap_decision([datetime(2026, 1, 5)], AT, NY, DEFAULT), "timezone-aware"),
        (lambda: cap_decision([], AT, "Nowhere/Land", DEFAULT), "unknown time zone"),
        (lambda: cap_keys(1, "sms", AT, "Etc/Unknown", DEFAULT), "unknown time zone"),
        (lambda: cap_keys("a:b", "sms", AT, NY, DEFAULT), "braces, colons"),
        (lambda: cap_keys(1, "s}ms", AT, NY, DEFAULT), "braces, colons"),
        (lambda: cap_keys(1, "", AT, NY, DEFAULT), "non-empty"),
    ],
)
def test_bad_arguments_raise_input_error(call: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()  # type: ignore[operator]


WEEK_MS = 7 * 86_400_000


@pytest.mark.parametrize(
    ("contact", "channel", "at", "zone", "day_start", "day_end"),
    [
        (42, "sms", utc(2026, 1, 5, 15, 30), NY, utc(2026, 1, 5, 5), utc(2026, 1, 6, 5)),
        (42, "sms", utc(2026, 1, 6, 4, 30), NY, utc(2026, 1, 5, 5), utc(2026, 1, 6, 5)),  # 23:30 local
        (42, "sms", utc(2026, 1, 6, 5, 30), NY, utc(2026, 1, 6, 5), utc(2026, 1, 7, 5)),  # 00:30 local
        (
            "c-7",
            "email",
            utc(2026, 1, 5, 18, 30),
            "Asia/Kolkata",
            utc(2026, 1, 5, 18, 30),
            utc(2026, 1, 6, 18, 30),
        ),
        (
            42,
            "sms",
            utc(2026, 3, 8, 5, 30),
            NY,
            utc(2026, 3, 8, 5),
            utc(2026, 3, 9, 4),
        ),  # 23 h day: midnight still EST
        (
            42,
            "sms",
            utc(2026, 3, 9, 3, 59),
            NY,
            utc(2026, 3, 8, 5),
            utc(2026, 3, 9, 4),
        ),  # 23:59 EDT, same day
        (
            42,
            "sms",
            utc(2026, 11, 1, 4, 30),
            NY,
            utc(2026, 11, 1, 4),
            utc(2026, 11, 2, 5),
        ),  # 25 h day: midnight still EDT
        # Santiago skips midnight on 2026-09-06 (00:00 -> 01:00): that day starts at 01:00 -03, 04:00 UTC.
        (42, "sms", utc(2026, 9, 5, 16), "America/Santiago", utc(2026, 9, 5, 4), utc(2026, 9, 6, 4)),
        (42, "sms", utc(2026, 9, 6, 12), "America/Santiago", utc(2026, 9, 6, 4), utc(2026, 9, 7, 3)),
        # Santiago repeats 23:00-24:00 on 2026-04-04: midnight comes once, at 04:00 UTC.
        (42, "sms", utc(2026, 4, 4, 12), "America/Santiago", utc(2026, 4, 4, 3), utc(2026, 4, 5, 4)),
        (42, "sms", utc(2026, 4, 5, 12), "America/Santiago", utc(2026, 4, 5, 4), utc(2026, 4, 6, 4)),
        (42, "sms", utc(2026, 1, 5, 23, 59, 59), "UTC", utc(2026, 1, 5), utc(2026, 1, 6)),
        (
            42,
            "sms",
            utc(2026, 1, 6, 4, 30),
            "Pacific/Chatham",
            utc(2026, 1, 5, 10, 15),
            utc(2026, 1, 6, 10, 15),
        ),
    ],
)
def test_cap_keys(
    contact: str | int, channel: str, at: datetime, zone: str, day_start: datetime, day_end: datetime
) -> None:
    keys = cap_keys(contact, channel, at, zone, DEFAULT)
    at_ms = int(at.timestamp()) * 1000
    assert keys == CapKeys(
        rolling_key=f"cap:{{{channel}:{contact}}}:r",
        rolling_ttl=8 * 86_400,
        at_ms=at_ms,
        floor_ms=at_ms - WEEK_MS,
        day_start_ms=int(day_start.timestamp()) * 1000,
        day_end_ms=int(day_end.timestamp()) * 1000,
        day_limit=1,
        rolling_limit=3,
    )


def test_local_date_key_follows_the_contacts_clock() -> None:
    assert local_date_key(utc(2026, 1, 6, 4, 30), NY) == "2026-01-05"
    assert local_date_key(utc(2026, 1, 6, 4, 30), "Pacific/Chatham") == "2026-01-06"
    assert local_date_key(utc(2026, 1, 6, 4, 30), "Pacific/Kiritimati") == "2026-01-06"
    assert local_date_key(utc(2026, 1, 6, 10), "Pacific/Pago_Pago") == "2026-01-05"


class ScriptModel:
    """The Redis script of the capping module docstring, step for step, over dicts (TTLs left out)."""

    def __init__(self) -> None:
        self.zsets: defaultdict[str, dict[str, int]] = defaultdict(dict)

    def reserve(self, keys: CapKeys, member: str) -> bool:
        rolling = self.zsets[keys.rolling_key]
        if member in rolling:
            return True
        for old in [name for name, score in rolling.items() if score <= keys.floor_ms]:
            del rolling[old]
        if sum(keys.day_start_ms <= score < keys.day_end_ms for score in rolling.values()) >= keys.day_limit:
            return False
        if sum(keys.floor_ms < score <= keys.at_ms for score in rolling.values()) >= keys.rolling_limit:
            return False
        rolling[member] = keys.at_ms
        return True


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 3 * 86_400_000), min_size=1, max_size=25),
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(
        ["UTC", NY, "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham", "Europe/London"]
    ),
    policy=st.builds(CapPolicy, st.integers(0, 3), st.integers(0, 5), st.integers(1, 8)),
)
def test_documented_script_agrees_with_cap_decision(
    gaps: list[int], start: datetime, zone: str, policy: CapPolicy
) -> None:
    model, history = ScriptModel(), []
    at = start.replace(microsecond=0)
    for attempt, gap in enumerate(gaps):
        at += timedelta(milliseconds=gap)
        keys = cap_keys(7, "sms", at, zone, policy)
        expected = cap_decision(history, at, zone, policy)
        assert model.reserve(keys, f"campaign-{attempt}:7") is expected
        if expected:
            history.append(at)
            assert model.reserve(keys, f"campaign-{attempt}:7") is True  # a retried batch is not capped
        today = sum(keys.day_start_ms <= v < keys.day_end_ms for v in model.zsets[keys.rolling_key].values())
        assert today <= policy.per_local_day
