"""Template compilation and rendering: filters, fallbacks, escaping per part, line-numbered errors, limits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from dispatcher.core.rendering import (
    DEFAULT_LIMITS,
    CompiledTemplate,
    Part,
    RenderLimits,
    compile_template,
    render,
    variables,
)
from dispatcher.core.sandbox import RenderLimitError
from dispatcher.errors import TemplateError

EXPIRES = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)


def run(source: str, part: Part = "sms", **values: Any) -> str:
    return render(compile_template(source, part=part), values)


def render_failure(
    source: str, part: Part = "sms", limits: RenderLimits | None = None, **values: Any
) -> dict[str, Any]:
    compiled = compile_template(source, part=part, limits=limits)
    with pytest.raises(TemplateError) as caught:
        render(compiled, values)
    assert caught.value.code == "invalid_template"
    return caught.value.details[0]


def compile_failure(source: str, part: Part = "sms") -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        compile_template(source, part=part)
    return caught.value


# ------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("Hi {{ first_name }}!", {"first_name": "Anna"}, "Hi Anna!"),
        ("Hi {{ first_name | default('there') }}!", {}, "Hi there!"),
        ("Hi {{ first_name | default('there') }}!", {"first_name": "Bo"}, "Hi Bo!"),
        ("Hi {{ contact.first_name | default('there') }}", {"contact": {}}, "Hi there"),
        (
            "{{ name | upper }} {{ name | lower }} {{ name | title }}",
            {"name": "aNNa lee"},
            "ANNA LEE anna lee Anna Lee",
        ),
        ("[{{ name | trim }}]", {"name": "  Anna \n"}, "[Anna]"),
        ("{{ text | truncate(11) }}", {"text": "Spring sale on all shoes"}, "Spring..."),
        ("{{ text | truncate(11, true) }}", {"text": "Spring sale on all shoes"}, "Spring s..."),
        ("{{ text | truncate(24) }}", {"text": "Spring sale on all shoes"}, "Spring sale on all shoes"),
        ("{{ text | truncate(10, end='…') }}", {"text": "Spring sale on all shoes"}, "Spring…"),
        ("{{ pct | round }}", {"pct": 12.5}, "12.0"),
        ("{{ pct | round(1, 'floor') }}", {"pct": 12.57}, "12.5"),
        ("{{ pct | round(1, 'ceil') }}", {"pct": 12.51}, "12.6"),
        ("{{ pct | round | int }}%", {"pct": 19.6}, "20%"),
        ("{{ count | int }}", {"count": "42"}, "42"),
        ("{{ count | int(7) }}", {"count": "many"}, "7"),
        ("{{ price * qty }}", {"price": Decimal("2.50"), "qty": 3}, "7.50"),
        ("{{ first ~ ' ' ~ last }}", {"first": "Anna", "last": "Lee"}, "Anna Lee"),
        ("{{ '-' * 5 }}", {}, "-----"),
        ("{{ 7 % 3 }} {{ 7 // 2 }} {{ 7 / 2 }}", {}, "1 3 3.5"),
        ("{% if vip %}VIP {% endif %}offer", {"vip": True}, "VIP offer"),
        ("{% if vip %}VIP {% else %}Our {% endif %}offer", {"vip": False}, "Our offer"),
        ("{% if code is defined %}Code {{ code }}{% endif %}.", {}, "."),
        (
            "{% for item in items %}{{ loop.index }}.{{ item }} {% endfor %}",
            {"items": ["a", "b"]},
            "1.a 2.b ",
        ),
        ("{% for item in items %}{{ item }}{% else %}none{% endfor %}", {"items": []}, "none"),
        ("{% for k in items if k is odd %}{{ k }}{% endfor %}", {"items": [1, 2, 3]}, "13"),
        ("{% set greeting = 'Hello ' ~ name %}{{ greeting }}", {"name": "Bo"}, "Hello Bo"),
        ("{% with n = 3 %}{{ n }} left{% endwith %}", {}, "3 left"),
        ("{{ contact.items }} {{ contact['count'] }}", {"contact": {"items": 2, "count": 5}}, "2 5"),
        (
            "{{ names[0] }}/{{ names[-1] }}/{{ code[:3] }}",
            {"names": ["a", "b"], "code": "SPRING25"},
            "a/b/SPR",
        ),
        ("Hi {{ nickname }}!", {"nickname": None}, "Hi !"),
        ("Reply STOP\n", {}, "Reply STOP\n"),
    ],
)
def test_render_sms(source: str, values: dict[str, Any], expected: str) -> None:
    assert run(source, **values) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("12.5"), "USD", "$12.50"),
        (Decimal("12.5"), "EUR", "12,50 €"),
        (Decimal("1234.5"), "EUR", "1.234,50 €"),
        (Decimal("1234567.891"), "USD", "$1,234,567.89"),
        (12.5, "GBP", "£12.50"),
        (1250, "JPY", "¥1,250"),
        (Decimal("1249.5"), "JPY", "¥1,250"),
        (Decimal("99.995"), "INR", "₹100.00"),
        (Decimal("0.125"), "AUD", "A$0.13"),
        (Decimal("5"), "CAD", "CA$5.00"),
        (Decimal("12.5"), "XYZ", "12.50 XYZ"),
        (Decimal("12.5"), "chf", "12.50 CHF"),
        (Decimal("-3.2"), "USD", "-$3.20"),
        (Decimal("-0.001"), "USD", "$0.00"),
        ("19.99", "usd", "$19.99"),
        (0.1 + 0.2, "USD", "$0.30"),
    ],
)
def test_money(amount: Any, currency: str, expected: str) -> None:
    assert run("{{ amount | money(currency) }}", amount=amount, currency=currency) == expected


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("{{ e | date('%d %b %H:%M') }}", {"e": EXPIRES, "timezone": "Europe/Paris"}, "01 Feb 00:30"),
        ("{{ e | date('%d %b %H:%M') }}", {"e": EXPIRES, "timezone": "America/New_York"}, "31 Jan 18:30"),
        ("{{ e | date('%d %b %H:%M') }}", {"e": EXPIRES}, "31 Jan 23:30"),
        ("{{ e | date('%H:%M', 'Asia/Kolkata') }}", {"e": EXPIRES, "timezone": "Europe/Paris"}, "05:00"),
        ("{{ e | date('%H:%M', tz) }}", {"e": EXPIRES, "tz": ZoneInfo("Asia/Tokyo")}, "08:30"),
        ("{{ e | date }}", {"e": EXPIRES, "timezone": "Europe/Paris"}, "01 Feb 2025"),
        ("{{ e | date('%d %b') }}", {"e": "2025-01-31T23:30:00Z", "timezone": "Europe/Paris"}, "01 Feb"),
        ("{{ e | date('%H:%M') }}", {"e": "2025-01-31T23:30:00+02:00"}, "23:30"),
        ("{{ e | date('%d %b') }}", {"e": "2025-03-09", "timezone": "Pacific/Kiritimati"}, "09 Mar"),
        ("{{ e | date('%d/%m') }}", {"e": date(2025, 12, 24), "timezone": "Europe/Paris"}, "24/12"),
        (
            "{{ e | date('%H:%M') }}",
            {"e": datetime(2025, 6, 1, 12, tzinfo=timezone(timedelta(hours=-3)))},
            "12:00",
        ),
    ],
)
def test_date(source: str, values: dict[str, Any], expected: str) -> None:
    assert run(source, **values) == expected


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ("html", "<p>Hi &lt;b&gt;Tom &amp; Jerry&lt;/b&gt; &#34;x&#34;</p>"),
        ("text", '<p>Hi <b>Tom & Jerry</b> "x"</p>'),
        ("sms", '<p>Hi <b>Tom & Jerry</b> "x"</p>'),
        ("subject", '<p>Hi <b>Tom & Jerry</b> "x"</p>'),
    ],
)
def test_autoescape_only_in_html(part: Part, expected: str) -> None:
    assert run("<p>Hi {{ name }} {{ q }}</p>", part, name="<b>Tom & Jerry</b>", q='"x"') == expected


def test_html_escapes_concatenation_and_filters() -> None:
    assert run("{{ a ~ b }}|{{ a | upper }}", "html", a="<i>", b="&") == "&lt;i&gt;&amp;|&lt;I&gt;"


# ---------------------------------------------------------------------------------- errors at render


@pytest.mark.parametrize(
    ("source", "values", "variable"),
    [
        ("Hi {{ first_name }}", {}, "first_name"),
        ("{% if vip %}x{% endif %}", {}, "vip"),
        ("{% for i in items %}{% endfor %}", {}, "items"),
        ("{{ contact.city }}", {"contact": {}}, "city"),
        ("{{ price | money('USD') }}", {}, "price"),
        ("{{ a ~ b }}", {"a": "x"}, "b"),
    ],
)
def test_undefined_variable_names_it(source: str, values: dict[str, Any], variable: str) -> None:
    detail = render_failure(source, **values)
    assert detail == {"part": "sms", "reason": "undefined_variable", "variable": variable}


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("{{ x | money('USD') }}", {"x": "twelve"}),
        ("{{ x | money('USD') }}", {"x": True}),
        ("{{ x | money('USD') }}", {"x": float("nan")}),
        ("{{ x | money('USD') }}", {"x": Decimal("1e20")}),
        ("{{ x | money('US') }}", {"x": 1}),
        ("{{ x | money }}", {"x": 1}),
        ("{{ x | date }}", {"x": datetime(2025, 1, 1, 12)}),  # naive: refused, never guessed
        ("{{ x | date }}", {"x": "2025-01-01T12:00:00"}),
        ("{{ x | date }}", {"x": "next tuesday"}),
        ("{{ x | date }}", {"x": 1700000000}),
        ("{{ x | date('%d', 'Mars/Olympus') }}", {"x": EXPIRES}),
        ("{{ x | round(11) }}", {"x": 1.5}),
        ("{{ x | round }}", {"x": "1.5"}),
        ("{{ x | truncate(2) }}", {"x": "abc"}),
        ("{{ 1 // x }}", {"x": 0}),
        ("{{ x * 1.5 }}", {"x": "ab"}),
        ("{{ items }}", {"items": [1, 2]}),
    ],
)
def test_bad_values_are_invalid_value(source: str, values: dict[str, Any]) -> None:
    assert render_failure(source, **values)["reason"] == "invalid_value"


SMALL = RenderLimits(
    max_output_chars=100,
    max_value_chars=50,
    max_work_chars=500,
    max_source_chars=1000,
    max_loop_iterations=20,
)


@pytest.mark.parametrize(
    ("source", "values", "reason"),
    [
        ("{{ text }}", {"text": "x" * 101}, "output_too_large"),
        (
            "{% for i in items %}{{ text }}{% endfor %}",
            {"items": range(11), "text": "x" * 10},
            "output_too_large",
        ),
        ("{{ 'ab' * n }}", {"n": 26}, "output_too_large"),
        ("{{ a + a }}", {"a": "x" * 26}, "output_too_large"),
        ("{{ a ~ a }}", {"a": "x" * 26}, "output_too_large"),
        ("{{ a | upper }}", {"a": "x" * 51}, "output_too_large"),
        ("{{ a[:] }}", {"a": "x" * 51}, "output_too_large"),
        ("{{ n * n }}", {"n": 2**600}, "output_too_large"),
        ("{% for i in items %}{% endfor %}", {"items": range(21)}, "render_timeout"),
        ("{% for i in s %}{% for j in s %}{% endfor %}{% endfor %}", {"s": "x" * 5}, "render_timeout"),
        ("{% for i in s %}{% set t = s ~ s %}{% endfor %}", {"s": "x" * 25}, "render_timeout"),
        ("{{ fmt % 1 }}", {"fmt": "%0999999d"}, "unsafe"),
        ("{{ items * 3 }}", {"items": [1]}, "unsafe"),
        ("{{ s.upper }}", {"s": "x"}, "unsafe"),
    ],
)
def test_limits(source: str, values: dict[str, Any], reason: str) -> None:
    assert render_failure(source, limits=SMALL, **values)["reason"] == reason


def test_limits_at_the_boundary_pass() -> None:
    assert render(compile_template("{{ 'ab' * n }}", part="sms", limits=SMALL), {"n": 25}) == "ab" * 25
    exactly = compile_template("{% for i in items %}{{ text }}{% endfor %}", part="sms", limits=SMALL)
    assert render(exactly, {"items": range(10), "text": "x" * 10}) == "x" * 100


def test_time_budget_is_checked() -> None:
    expired = RenderLimits(100, 50, 500, 1000, max_seconds=-1.0)
    detail = render_failure("{% for i in items %}{% endfor %}", limits=expired, items=[1])
    assert detail == {"part": "sms", "reason": "render_timeout"}


def test_a_failed_render_leaves_the_template_usable() -> None:
    compiled = compile_template("{{ 'ab' * n }}", part="sms", limits=SMALL)
    with pytest.raises(TemplateError):
        render(compiled, {"n": 10**9})
    assert render(compiled, {"n": 2}) == "abab"


def test_no_budget_outlives_a_render() -> None:
    """The guards refuse to run without an active budget, so jinja's own render must fail after ours."""
    looping = compile_template("{% for i in items %}{{ i }}{% endfor %}", part="sms", limits=SMALL)
    with pytest.raises(TemplateError):
        render(looping, {"items": range(100)})
    assert render(looping, {"items": range(3)}) == "012"
    with pytest.raises(RenderLimitError) as caught:
        looping.template.render(items=[1])
    assert caught.value.reason == "unsafe"


# ----------------------------------------------------------------------------------- save-time errors


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        ("Hi {{ name }", 1, "syntax"),
        ("Hi\nthere\n{% if x %}open", 3, "syntax"),
        ("{% for x in y %}\n{{ x }}\n{% endif %}", 3, "syntax"),
        ("a\nb\nc\n{{ 1 + }}", 4, "syntax"),
        ("ok\n{% unknowntag %}", 2, "syntax"),
        ("ok\n{{ x | bogus }}", 2, "unsafe"),
        ("ok\n\n{{ x is callable }}", 3, "unsafe"),
        ("ok\n{{ x.__class__ }}", 2, "unsafe"),
        ("ok\n{% if a %}\n{{ x.upper() }}\n{% endif %}", 3, "unsafe"),
        ("{% include 'a' %}", 1, "unsafe"),
        ("\n\n\n\n{{ 2 ** 3 }}", 5, "unsafe"),
        ("{{ 'x' * 100000 }}", 1, "unsafe"),
        ("{{ '%s' % name }}", 1, "unsafe"),
        ("a\n{% autoescape false %}{{ x }}{% endautoescape %}", 2, "unsafe"),
        ("{{ " + "(" * 300 + "1" + ")" * 300 + " }}", 1, "unsafe"),
        ("{{ " + "-" * 100 + "1 }}", 1, "unsafe"),
    ],
)
def test_compile_errors_name_the_line(source: str, line: int, reason: str) -> None:
    error = compile_failure(source)
    assert error.details == [{"part": "sms", "line": line, "reason": reason}]
    assert f"line {line}:" in error.message
    assert error.code == "invalid_template"
    assert error.status == 422


def test_first_problem_in_source_order_is_reported() -> None:
    error = compile_failure("{{ a.__x }}\n{{ b | bogus }}\n{{ c() }}")
    assert error.details[0]["line"] == 1


def test_source_too_large() -> None:
    error = compile_failure("x" * (DEFAULT_LIMITS["subject"].max_source_chars + 1), "subject")
    assert error.details == [{"part": "subject", "line": 1, "reason": "source_too_large"}]


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("Hi {{ first_name | default('there') }}, {{ code }}", {"first_name", "code"}),
        ("{% for i in items %}{{ i }}{{ loop.index }}{% endfor %}", {"items"}),
        ("{% set x = 1 %}{{ x }}{{ y }}", {"y"}),
        ("{{ e | date('%d') }}", {"e"}),
        ("plain text", set()),
    ],
)
def test_variables(source: str, names: set[str]) -> None:
    assert variables(compile_template(source, part="text")) == names


def test_compiled_template_is_immutable() -> None:
    compiled = compile_template("x", part="sms")
    assert isinstance(compiled, CompiledTemplate)
    assert compiled.limits == DEFAULT_LIMITS["sms"]
    with pytest.raises(AttributeError):
        compiled.part = "html"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------- properties

PLAIN = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="{%#"), max_size=400)


@settings(max_examples=200, deadline=None)
@given(PLAIN)
def test_plain_text_renders_unchanged(text: str) -> None:
    expected = text.replace("\r\n", "\n").replace("\r", "\n")  # jinja normalises line endings
    assert render(compile_template(text, part="sms"), {}) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_values_are_escaped_only_in_html(value: str) -> None:
    assert run("{{ v }}", "sms", v=value) == value
    assert run("{{ v }}", "html", v=value) == str(escape(value))


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=-(10**12), max_value=10**12, allow_nan=False, places=4))
def test_money_round_trips(amount: Decimal) -> None:
    text = run("{{ a | money('USD') }}", a=amount)
    expected = amount.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    assert Decimal(text.replace("$", "").replace(",", "")) == expected
    assert text.startswith("-$") == (expected < 0)
