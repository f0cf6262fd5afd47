"""Known template-injection (SSTI) and resource-exhaustion payloads: each is refused or rendered harmless.

Every payload has a recorded outcome: refused when saved (``compile``), failing cleanly when rendered
(``render``) with a given reason, or rendering (``ok``) to a given harmless text. The table runs against the
SMS part and the autoescaping HTML part, with limits small enough that none takes long (the whole table
runs in about two seconds; timings are not asserted, a hang would show as a pytest-timeout).
"""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.core.rendering import Part, RenderLimits, compile_template, render
from dispatcher.errors import TemplateError

LIMITS = RenderLimits(
    max_output_chars=2_000,
    max_value_chars=2_000,
    max_work_chars=20_000,
    max_source_chars=8_000,
    max_loop_iterations=1_000,
    max_seconds=1.0,
)
VALUES: dict[str, Any] = {
    "x": "",
    "first_name": "Anna",
    "fmt": "%s",
    "n": 10**9,
    "items": [1, 2, 3],
    "contact": {"name": "A"},
    "s": "x" * 1_500,
    "big": 2**300,
    "big2": "9" * 4_000,
}
LEAK_MARKERS = ("<class", "<function", "<module", "<built-in", "<bound", "object at 0x", "subprocess",
                "Popen", "__globals__", "__builtins__", "os.", "Undefined", "LoopContext")  # fmt: skip

DEEP_PARENS = "{{ x ~ (" + "(" * 60 + "1" + ")" * 60 + ") }}"
DOUBLING = "{% set a = 'ab' %}" + "{% set a = a ~ a %}" * 30 + "{{ a }}"

PAYLOADS: list[tuple[str, str, str]] = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "compile", "unsafe"),
    ("{{ ''.__class__.__mro__[1] }}", "compile", "unsafe"),
    ("{{ ().__class__.__bases__[0].__subclasses__() }}", "compile", "unsafe"),
    ("{{ [].__class__.__base__.__subclasses__() }}", "compile", "unsafe"),
    ("{{ config }}", "render", "undefined_variable"),
    ("{{ config.items() }}", "compile", "unsafe"),
    ("{{ config.__class__.__init__.__globals__['os'] }}", "compile", "unsafe"),
    ("{{ self }}", "compile", "unsafe"),
    ("{{ self._TemplateReference__context }}", "compile", "unsafe"),
    ("{{ self.__dict__ }}", "compile", "unsafe"),
    ("{{ cycler.__init__.__globals__.os }}", "compile", "unsafe"),
    ("{{ cycler }}", "render", "undefined_variable"),
    ("{{ joiner.__init__.__globals__ }}", "compile", "unsafe"),
    ("{{ lipsum.__globals__ }}", "compile", "unsafe"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "compile", "unsafe"),
    ("{{ lipsum }}", "render", "undefined_variable"),
    ("{{ request }}", "render", "undefined_variable"),
    (
        "{{ request.application.__globals__.__builtins__.__import__('os').popen('id').read() }}",
        "compile",
        "unsafe",
    ),
    ("{{ namespace.__init__.__globals__ }}", "compile", "unsafe"),
    ("{{ namespace }}", "render", "undefined_variable"),
    ("{{ url_for.__globals__ }}", "compile", "unsafe"),
    ("{{ get_flashed_messages.__globals__ }}", "compile", "unsafe"),
    ("{{ ''|attr('__class__') }}", "compile", "unsafe"),
    ("{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}", "compile", "unsafe"),
    ("{{ ''['\\x5f\\x5fclass\\x5f\\x5f'] }}", "compile", "unsafe"),
    ("{{ ''['\\u005f\\u005fclass\\u005f\\u005f'] }}", "compile", "unsafe"),
    ("{{ x['__cl' ~ 'ass__'] }}", "render", "unsafe"),
    ("{% set k = '__cl' ~ 'ass__' %}{{ x[k] }}", "render", "unsafe"),
    ("{% set k = 'for' ~ 'mat' %}{{ x[k] }}", "render", "unsafe"),
    ("{% set x = ''.__class__ %}{{ x }}", "compile", "unsafe"),
    ("{% set x = first_name %}{{ x.__len__ }}", "compile", "unsafe"),
    ("{{ '{0.__class__}'.format(1) }}", "compile", "unsafe"),
    ("{{ x.format }}", "compile", "unsafe"),
    ("{{ '%s'|format(x) }}", "compile", "unsafe"),
    ("{{ '%s' % x }}", "compile", "unsafe"),
    ("{{ fmt % first_name }}", "render", "unsafe"),
    ("{{ x|format }}", "compile", "unsafe"),
    ("{{ 'x' * 10**9 }}", "compile", "unsafe"),
    ("{{ 'x' * 1000000000 }}", "compile", "unsafe"),
    ("{{ 'x' * n }}", "render", "output_too_large"),
    ("{{ 'a' ~ 'b' * 99999999 }}", "compile", "unsafe"),
    ("{{ 'a' ~ 'b' * n }}", "render", "output_too_large"),
    ("{{ [1]*10**8 }}", "compile", "unsafe"),
    ("{{ [1] * n }}", "render", "unsafe"),
    ("{{ items + items }}", "render", "unsafe"),
    ("{{ 9**9**9 }}", "compile", "unsafe"),
    ("{{ big * big * big * big * big * big }}", "render", "output_too_large"),
    ("{% for i in range(10**9) %}x{% endfor %}", "compile", "unsafe"),
    ("{% for i in range(1000000000) %}{% endfor %}", "compile", "unsafe"),
    (
        "{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}",
        "render",
        "render_timeout",
    ),
    ("{% for a in s %}{{ s }}{% endfor %}", "render", "output_too_large"),
    (
        "{% set a = s ~ s %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{{ d }}",
        "render",
        "output_too_large",
    ),
    ("{% for i in s %}{% set t = s ~ s %}{% endfor %}", "render", "output_too_large"),
    ("{{ joiner }}", "render", "undefined_variable"),
    ("{{ dict(a=1) }}", "compile", "unsafe"),
    ("{{ dict }}", "render", "undefined_variable"),
    ("{{ range }}", "render", "undefined_variable"),
    ("{{ [].pop }}", "render", "unsafe"),
    ("{{ items.pop() }}", "compile", "unsafe"),
    ("{{ items.append(1) }}", "compile", "unsafe"),
    ("{{ items.append }}", "render", "unsafe"),
    ("{{ contact.update({'a': 1}) }}", "compile", "unsafe"),
    ("{{ contact.clear }}", "render", "unsafe"),
    ("{{ items }}", "render", "invalid_value"),
    ("{{ contact }}", "render", "invalid_value"),
    ("{{ x.upper }}", "render", "unsafe"),
    ("{{ x.upper() }}", "compile", "unsafe"),
    ("{{ x.mro }}", "compile", "unsafe"),
    ("{{ x.gi_frame }}", "compile", "unsafe"),
    ("{{ x.func_globals }}", "compile", "unsafe"),
    ("{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}", "compile", "unsafe"),
    ("{% include 'secrets.txt' %}", "compile", "unsafe"),
    ("{% import 'os' as os %}{{ os }}", "compile", "unsafe"),
    ("{% from 'os' import popen %}", "compile", "unsafe"),
    ("{% extends 'base.html' %}", "compile", "unsafe"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "compile", "unsafe"),
    ("{% call m() %}x{% endcall %}", "compile", "unsafe"),
    ("{% filter upper %}{{ s }}{% endfilter %}", "compile", "unsafe"),
    ("{% set b %}{{ s }}{{ s }}{% endset %}{{ b }}", "compile", "unsafe"),
    ("{% autoescape false %}{{ x }}{% endautoescape %}", "compile", "unsafe"),
    ("{{ x|safe }}", "compile", "unsafe"),
    ("{{ x|map(attribute='__class__')|list }}", "compile", "unsafe"),
    ("{{ x|selectattr('__class__') }}", "compile", "unsafe"),
    ("{{ x|pprint }}", "compile", "unsafe"),
    ("{{ x|tojson }}", "compile", "unsafe"),
    ("{{ x|center(1000000000) }}", "compile", "unsafe"),
    ("{{ x|truncate(1000000000) }}", "render", "invalid_value"),
    ("{{ x is callable }}", "compile", "unsafe"),
    ("{% for i in items recursive %}{{ loop(items) }}{% endfor %}", "compile", "unsafe"),
    ("{% for i in items %}{{ loop }}{% endfor %}", "render", "unsafe"),
    ("{% for i in items %}{{ loop.cycle }}{% endfor %}", "render", "unsafe"),
    ("{{ caller }}", "compile", "unsafe"),
    ("{{ varargs }}", "compile", "unsafe"),
    ("{{ __builtins__ }}", "compile", "unsafe"),
    ("{{ _internal }}", "compile", "unsafe"),
    ("{% set ns.x = 1 %}", "compile", "unsafe"),
    ("{{ 1.5|round(1000000000, 'ceil') }}", "render", "invalid_value"),
    ("{{ big2|int }}", "render", "invalid_value"),
    (DEEP_PARENS, "ok", "1"),
    ("{{ super() }}", "compile", "unsafe"),
    ("{% raw %}{{ ''.__class__ }}{% endraw %}", "ok", "{{ ''.__class__ }}"),
    ("{{ x['\\N{LOW LINE}\\N{LOW LINE}class__'] }}", "compile", "unsafe"),
    (DOUBLING, "render", "output_too_large"),
    ("{{ x.__class__.__name__ }}", "compile", "unsafe"),
    ("{% set d = {} %}{{ d.__setitem__ }}", "compile", "unsafe"),
    ("{{ x['__class__'] if x is defined else 'safe' }}", "compile", "unsafe"),
    ("{{ items[0:10**9] }}", "compile", "unsafe"),
    ("{{ loop.__class__ }}", "compile", "unsafe"),
    ("{{ (1, 2)|first }}", "compile", "unsafe"),
    ("{{ x|string }}", "compile", "unsafe"),
    ("{{ x|replace('', 'y') }}", "compile", "unsafe"),
    ("{{ x|indent(1000000) }}", "compile", "unsafe"),
    ("{{ x|wordwrap(1) }}", "compile", "unsafe"),
    ('{{ "__class__" }}', "ok", "__class__"),
]


def outcome(source: str, part: Part) -> tuple[str, str]:
    try:
        compiled = compile_template(source, part=part, limits=LIMITS)
    except TemplateError as exc:
        return "compile", exc.details[0]["reason"]
    try:
        return "ok", render(compiled, VALUES)
    except TemplateError as exc:
        return "render", exc.details[0]["reason"]


def test_the_list_is_long_enough() -> None:
    assert len(PAYLOADS) >= 45
    assert len({source for source, _, _ in PAYLOADS}) == len(PAYLOADS)


@pytest.mark.parametrize("part", ["sms", "html"])
@pytest.mark.parametrize(("source", "stage", "result"), PAYLOADS)
def test_payload_is_refused_or_harmless(source: str, stage: str, result: str, part: Part) -> None:
    assert outcome(source, part) == (stage, result)
    if stage == "ok":
        assert not any(marker in result for marker in LEAK_MARKERS)


@pytest.mark.parametrize(
    "source",
    [source for source, stage, _ in PAYLOADS if stage == "compile"],
)
def test_save_time_refusals_name_a_line(source: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template("first line\n" + source, part="text")
    assert caught.value.details[0]["line"] == 2
