"""Rendering speed: render + SMS analysis of a 3-variable template, next to a bare sandboxed jinja2 render.

    .venv/bin/python -m bench.render [--renders 100000]

Target (issue 4): >= 50,000 messages/s per core for render + analysis. The bare ``SandboxedEnvironment``
render of the same source in the same run is the ceiling to compare with (machines differ; ratios don't).
Also printed: the same with a tracked link rewritten per recipient (what the SMS sender does), and the
HTML link rewrite of a shipped e-mail (``html.parser``), per message.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from jinja2.sandbox import SandboxedEnvironment

from dispatcher.core.links import recipient_token, rewrite_links, tracked_url
from dispatcher.core.rendering import compile_template, render
from dispatcher.core.sms import analyse_sms
from dispatcher.ops.builtin_templates import read_samples, read_shipped, shipped_dir
from dispatcher.ops.templates import compile_parts

SOURCE = (
    "Hi {{ first_name }}, take {{ discount }}% off with code {{ code }} today only. Reply STOP to opt out"
)
LINKED = SOURCE + " https://shop.example/spring-sale?utm_source=sms"
CONTACTS = [
    {"first_name": f"Name{i}", "discount": 10 + i % 40, "code": f"SPRING{i % 97}"} for i in range(1000)
]


def rate(work: Callable[[int], object], count: int, repeats: int = 3) -> float:
    """Median messages/s over ``repeats`` runs of ``count`` calls."""
    results = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(count):
            work(i)
        results.append(count / (time.perf_counter() - start))
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=100_000)
    count = parser.parse_args().renders

    bare = SandboxedEnvironment().from_string(SOURCE)
    compiled = compile_template(SOURCE, part="sms")
    linked = compile_template(LINKED, part="sms")

    def ours(i: int) -> object:
        return analyse_sms(render(compiled, CONTACTS[i % 1000]))

    def with_link(i: int) -> object:
        token = recipient_token("bench-secret", "Ab3xK9", 1_000_000 + i)
        url = tracked_url("https://sho.rt", "Ab3xK9", token)
        text = rewrite_links(render(linked, CONTACTS[i % 1000]), make_url=lambda _: url, kind="sms")
        return analyse_sms(text)

    email = next(t for t in read_shipped(shipped_dir()) if t.name == "builtin/email/discount")
    html = compile_parts("email", email.parts)["html"]
    values = {**read_samples(shipped_dir()), "unsubscribe_url": "https://d.example/u/x"}

    def email_html(i: int) -> object:
        return rewrite_links(
            render(html, values), make_url=lambda _: "https://sho.rt/r/Ab3xK9/x", kind="html"
        )

    bare_rate = rate(lambda i: bare.render(CONTACTS[i % 1000]), count)
    ours_rate = rate(ours, count)
    print(f"bare sandboxed jinja2 render:              {bare_rate:>10,.0f} renders/s")
    print(f"render + SMS analysis (3 variables):       {ours_rate:>10,.0f} messages/s "
          f"({ours_rate / bare_rate:.2f} of bare; target 50,000)")  # fmt: skip
    print(f"  + tracked link rewritten per recipient:  {rate(with_link, count):>10,.0f} messages/s")
    html_rate = rate(email_html, max(count // 20, 100))
    print(f"e-mail HTML render + href rewrite:         {html_rate:>10,.0f} messages/s")


if __name__ == "__main__":
    main()
