"""Template injection (SSTI) through the templates API: every payload is refused or rendered harmless.

``tests/core/test_injection.py`` holds the pure table; this one sends a different set of payloads the way an
attacker would, over HTTP, into every part a template has (SMS body, e-mail subject, text and HTML), then
previews the saved ones with hostile sample values. Each payload has a recorded outcome:

* ``refused:<reason>``: the save answers 422 naming the part and line;
* ``failed:<reason>``: the save succeeds, the preview answers 200 with the part empty and a
  ``render_failed`` warning (what a send would record for that recipient);
* ``=<text>``: the preview renders exactly this harmless text.

Every answer is also checked for what a successful attack would show: object reprs, server paths,
tracebacks, file contents, and for its size (bounded output), and never a 5xx.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import KeyMaker, bearer

VALUES: dict[str, Any] = {
    "first_name": "Anna",
    "s": "x" * 1500,
    "n": 10**9,
    "items": [1, 2, 3],
    "d": "2024-05-01T10:00:00+00:00",
    "tzname": "America",  # a directory under the zoneinfo path, not a zone
    "evil": "{{ 7*7 }}{% include 'x' %}",
    "tag": "<img src=x onerror=alert(1)>",
}
LEAKS = ("<class", "<function", "<module", "<built-in", "<bound", "object at 0x", "Traceback",
         "site-packages", "/work/", "root:x:0:0", "uid=", "__globals__'", "LoopContext")  # fmt: skip
MAX_ANSWER_BYTES = 256 * 1024

NESTED = "{% for a in first_name * 50 %}{% for b in first_name * 50 %}{% for c in first_name * 50 %}"
NESTED += "{% endfor %}{% endfor %}{% endfor %}"
CONCAT = "{{ " + " ~ ".join(["s"] * 18) + " }}"
POWER_TOWER = "{{ " + " * ".join(["n"] * 35) + " }}"

# Payloads for any part: (source, outcome in an SMS body / plain text, outcome in HTML if it differs).
PAYLOADS: list[tuple[str, str, str | None]] = [
    ("{{ lipsum|attr('__globals__') }}", "refused:unsafe", None),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "refused:unsafe", None),
    ("{{ joiner().__init__ }}", "refused:unsafe", None),
    ("{{ namespace(x=1) }}", "refused:unsafe", None),
    ("{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }}", "refused:unsafe", None),
    ("{{ self.__init__.__globals__.__builtins__ }}", "refused:unsafe", None),
    ("{{ self.__dict__._TemplateReference__context.cycler }}", "refused:unsafe", None),
    ("{{ config.from_pyfile('/etc/passwd') }}", "refused:unsafe", None),
    ("{{ request.environ }}", "failed:undefined_variable", None),
    ("{{ ''|attr('__cla' ~ 'ss__') }}", "refused:unsafe", None),
    ("{{ first_name|attr('upper') }}", "refused:unsafe", None),
    ("{{ first_name['__class__'] }}", "refused:unsafe", None),
    ("{{ first_name.__class__.__base__.__subclasses__()[40]('/etc/passwd').read() }}", "refused:unsafe",
     None),
    ("{{ ()|attr('\\x5f\\x5fclass\\x5f\\x5f') }}", "refused:unsafe", None),
    ("{{ '%(a)s' % {'a': first_name} }}", "refused:unsafe", None),
    ("{{ first_name.__getattribute__('__class__') }}", "refused:unsafe", None),
    ("{{ getattr(first_name, '__class__') }}", "refused:unsafe", None),
    ("{{ __import__('os').system('id') }}", "refused:unsafe", None),
    ("{{ 0.0.__class__ }}", "refused:unsafe", None),
    ("{{ {}.__class__.__base__ }}", "refused:unsafe", None),
    ("{% with a = ''.__class__ %}{{ a }}{% endwith %}", "refused:unsafe", None),
    ("{% if ''.__class__ %}x{% endif %}", "refused:unsafe", None),
    ("{{ 'a' if first_name else ''.__class__ }}", "refused:unsafe", None),
    ("{{ first_name|default(first_name.__class__) }}", "refused:unsafe", None),
    ("{% set a = [first_name] %}{{ a.__getitem__ }}", "refused:unsafe", None),
    ("{{ items|sum(attribute='__class__') }}", "refused:unsafe", None),
    ("{{ items|first }}", "refused:unsafe", None),
    ("{{ first_name is sameas first_name }}", "refused:unsafe", None),
    ("{{ loop.cycle('a') }}", "refused:unsafe", None),
    ("{{ caller() }}", "refused:unsafe", None),
    ("{{ first_name.encode }}", "failed:unsafe", None),
    ("{{ first_name.translate }}", "failed:unsafe", None),
    ("{% include '/etc/passwd' %}", "refused:unsafe", None),
    ("{% import '/etc/passwd' as p %}", "refused:unsafe", None),
    ("{% extends '../../../etc/passwd' %}", "refused:unsafe", None),
    ("{% from 'x' import y with context %}", "refused:unsafe", None),
    ("{% debug %}", "refused:syntax", None),
    ("{% do items.append(1) %}", "refused:syntax", None),
    ("{{ range(10) }}", "refused:unsafe", None),
    ("{{ lipsum(n=9999999) }}", "refused:unsafe", None),
    ("{{ cycler(1, 2).next() }}", "refused:unsafe", None),
    ("{{ 'x'|center(99999) }}", "refused:unsafe", None),
    ("{{ first_name|truncate(10**9) }}", "refused:unsafe", None),
    ("{{ 999999999999 * 999999999999 }}", "refused:unsafe", None),
    ("{{ " + "(" * 200 + "1" + ")" * 200 + " }}", "refused:unsafe", None),
    (NESTED, "failed:render_timeout", None),
    ("{{ 'A' * 9999 * 9999 }}", "failed:output_too_large", None),
    (CONCAT, "failed:output_too_large", None),
    (POWER_TOWER, "failed:output_too_large", None),
    ("{{ n // 0 }}", "failed:invalid_value", None),
    ("{{ items[::-1] }}", "failed:invalid_value", None),
    ("{{ d|date('%Y', tz='../../../../etc/passwd') }}", "failed:invalid_value", None),
    ("{{ d|date('%Y', tz='/etc/passwd') }}", "failed:invalid_value", None),
    ("{{ d|date('%Y', tz=tzname) }}", "failed:invalid_value", None),
    ("{{ evil }}", "={{ 7*7 }}{% include 'x' %}", "={{ 7*7 }}{% include &#39;x&#39; %}"),
    ("{{ tag }}", "=<img src=x onerror=alert(1)>", "=&lt;img src=x onerror=alert(1)&gt;"),
    ("{{ '<script>alert(1)</script>' }}", "=<script>alert(1)</script>",
     "=&lt;script&gt;alert(1)&lt;/script&gt;"),
    ('{{ "\\x7b\\x7b 7*7 \\x7d\\x7d" }}', "={{ 7*7 }}", None),
    ("{#- {{ ''.__class__ }} -#}ok", "=ok", None),
    ("{% raw %}{% include 'x' %}{% endraw %}", "={% include 'x' %}", "={% include 'x' %}"),
    ("{{ first_name[0:999999999] }}", "=Anna", None),
]  # fmt: skip


def _email(part: str, source: str) -> dict[str, Any]:
    parts = {"subject": "Hi", "text": "Offer. Unsubscribe: {{ unsubscribe_url }}", part: source}
    return {"channel": "email", **parts}


async def _outcome(client: TestClient, key: str, index: int, template: dict[str, Any], part: str) -> str:
    """Save, preview, and describe what happened in the outcome notation of the table."""
    body = {"name": f"attack {index} {part}", **template}
    saved = await client.post("/v1/templates", json=body, headers=bearer(key))
    text = await saved.text()
    _harmless_answer(saved.status, text)
    if saved.status != 201:
        assert saved.status == 422, text
        detail = (await saved.json())["error"]["details"][0]
        assert detail["part"] == ("sms" if part == "body" else part), detail
        assert detail["line"] >= 1
        return f"refused:{detail['reason']}"
    template_id = (await saved.json())["id"]
    response = await client.post(
        f"/v1/templates/{template_id}/preview", json={"variables": VALUES}, headers=bearer(key)
    )
    text = await response.text()
    _harmless_answer(response.status, text)
    assert response.status == 200, text
    preview = await response.json()
    rendered = preview["parts"][part]
    if rendered is not None:
        return f"={rendered}"
    failures = [w for w in preview["warnings"] if w["code"] == "render_failed"]
    assert [w["details"]["field"] for w in failures] == [part], preview["warnings"]
    return f"failed:{failures[0]['details']['reason']}"


def _harmless_answer(status: int, text: str) -> None:
    assert status < 500, text
    assert len(text.encode()) < MAX_ANSWER_BYTES
    leaked = [marker for marker in LEAKS if marker in text]
    assert not leaked, (leaked, text[:500])


def test_the_table_is_long_and_has_no_repeats() -> None:
    sources = [source for source, _, _ in PAYLOADS]
    assert len(sources) >= 40
    assert len(set(sources)) == len(sources)


@pytest.mark.parametrize("part", ["body", "subject", "text", "html"])
async def test_every_payload_is_refused_or_harmless_in_every_part(
    client: TestClient, make_key: KeyMaker, part: str
) -> None:
    key = await make_key()
    wrong: list[tuple[str, str, str]] = []
    for index, (source, plain, html) in enumerate(PAYLOADS):
        template = {"channel": "sms", "body": source} if part == "body" else _email(part, source)
        expected = html if part == "html" and html is not None else plain
        if part == "subject" and expected.startswith("failed:output_too_large"):
            expected = "failed:output_too_large"  # the subject's smaller limits fail the same way
        got = await _outcome(client, key, index, template, part)
        if got != expected:
            wrong.append((source, expected, got))
    assert not wrong, wrong


async def test_values_are_data_never_template_code(client: TestClient, make_key: KeyMaker) -> None:
    """A contact's name that looks like a template is printed as typed, not evaluated (no second pass)."""
    key = await make_key()
    body = {"name": "greeting", "channel": "sms", "body": "Hi {{ first_name }}. Reply STOP to opt out"}
    saved = await client.post("/v1/templates", json=body, headers=bearer(key))
    template_id = (await saved.json())["id"]
    for name in ["{{ 7*7 }}", "{{ ''.__class__.__mro__ }}", "{% include 'x' %}", "${7*7}", "#{7*7}"]:
        response = await client.post(
            f"/v1/templates/{template_id}/preview",
            json={"contact": {"first_name": name}},
            headers=bearer(key),
        )
        preview = await response.json()
        assert response.status == 200, preview
        assert preview["parts"]["body"] == f"Hi {name}. Reply STOP to opt out"


async def test_a_time_zone_naming_a_directory_is_a_clean_error(
    client: TestClient, make_key: KeyMaker
) -> None:
    """zoneinfo answers "America" with IsADirectoryError; it once escaped the renderer with a server path."""
    key = await make_key()
    body = {"name": "dated", "channel": "sms", "body": "Ends {{ d|date('%d %b') }}. Reply STOP to opt out"}
    template_id = (await (await client.post("/v1/templates", json=body, headers=bearer(key))).json())["id"]
    for zone in ["America", "Europe", "x" * 5000, "UTC\u0000"]:
        response = await client.post(
            f"/v1/templates/{template_id}/preview",
            json={"variables": {"d": VALUES["d"], "timezone": zone}},
            headers=bearer(key),
        )
        text = await response.text()
        _harmless_answer(response.status, text)
        if response.status != 200 and zone not in {"America", "Europe"}:  # refusing the value is as good
            assert 400 <= response.status < 500, text
            continue
        preview = await response.json()
        assert preview["parts"]["body"] is None
        assert [w["details"]["reason"] for w in preview["warnings"] if w["code"] == "render_failed"] == [
            "invalid_value"
        ]
