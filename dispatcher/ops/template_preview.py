"""Template previews: render one recipient's message and say what it will cost and what is wrong with it.

A preview is exploratory, so an unresolved variable is a warning, not an error: the missing variable is
shown as ``[name]`` in the text (and the render retried) so the marketer sees the message and every gap at
once. Counting runs on the text as it will be sent: links are replaced by tracked links of the real length
(``{base}/r/sample/PreviewTkn``, which resolves to nothing) and smart encoding is applied when asked.
The SMS lint warnings are those of :func:`dispatcher.core.sms.lint_sms`; an e-mail whose parts have no
unsubscribe link gets ``no_unsubscribe_link`` (the ``List-Unsubscribe`` headers are added either way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from dispatcher.core.links import LinkKind, find_links, list_unsubscribe_headers, rewrite_links, tracked_url
from dispatcher.core.rendering import CompiledTemplate, render
from dispatcher.core.sms import SmsAnalysis, analyse_sms, estimate_cost, lint_sms, smart_encode
from dispatcher.errors import TemplateError
from dispatcher.ops.templates import UNSUBSCRIBE_VARIABLE

_SAMPLE_CODE: Final = "sample"
_SAMPLE_TOKEN: Final = "PreviewTkn"  # noqa: S105 (not a secret) the length of a real token for a message id below ~14.7 million
_MAX_MISSING: Final = 50
_KIND: Final[Mapping[str, LinkKind]] = {"body": "sms", "text": "text", "html": "html"}


@dataclass(frozen=True, slots=True)
class PreviewOptions:
    base_url: str
    smart_encoding: bool = False
    price_per_segment: Decimal | None = None
    track_links: bool = True
    max_segments: int = 3


@dataclass(slots=True)
class Preview:
    parts: dict[str, str | None] = field(default_factory=dict)
    sms: SmsAnalysis | None = None
    smart_encoded: bool = False
    cost: Decimal | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    missing_variables: list[str] = field(default_factory=list)
    links: list[dict[str, str | None]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def warn(self, code: str, message: str, **details: Any) -> None:
        self.warnings.append({"code": code, "message": message, "details": details})


def _render_leniently(
    compiled: CompiledTemplate, values: dict[str, Any], preview: Preview, name: str
) -> str | None:
    """Render, filling each missing variable with a visible ``[name]`` marker; None when it cannot render."""
    for _ in range(_MAX_MISSING):
        try:
            return render(compiled, values)
        except TemplateError as exc:
            detail = exc.details[0] if exc.details else {}
            variable = detail.get("variable")
            if detail.get("reason") != "undefined_variable" or not variable or variable in values:
                preview.warn("render_failed", exc.message, field=name, **detail)
                return None
            values[variable] = f"[{variable}]"
            if variable not in preview.missing_variables:
                preview.missing_variables.append(variable)
                preview.warn(
                    "unresolved_variable",
                    f"variable {variable!r} has no value and no default; shown as [{variable}]",
                    field=name,
                    variable=variable,
                )
    preview.warn("render_failed", "too many missing variables", field=name)
    return None


def _track(text: str, kind: LinkKind, options: PreviewOptions, preview: Preview) -> str:
    own = options.base_url.rstrip("/") + "/"
    sample = tracked_url(options.base_url, _SAMPLE_CODE, _SAMPLE_TOKEN)
    for url in find_links(text, kind):
        if not url.startswith(own):
            entry = {"url": url, "tracked_url": sample if options.track_links else None}
            if entry not in preview.links:
                preview.links.append(entry)
    if not options.track_links:
        return text
    return rewrite_links(text, make_url=lambda url: None if url.startswith(own) else sample, kind=kind)


def _analyse(text: str, options: PreviewOptions, preview: Preview) -> str:
    analysis = analyse_sms(text)
    if options.smart_encoding:
        candidate = smart_encode(text)
        if candidate != text:
            encoded = analyse_sms(candidate)
            if encoded.segments <= analysis.segments:  # a stand-in can be longer: keep the cheaper text
                text, analysis, preview.smart_encoded = candidate, encoded, True
    preview.sms = analysis
    prefixes = (f"{options.base_url.rstrip('/')}/r/",)
    for warning in lint_sms(
        text, max_segments=options.max_segments, tracked_prefixes=prefixes, analysis=analysis
    ):
        preview.warnings.append(
            {"code": warning.code, "message": warning.message, "details": dict(warning.details)}
        )
    if options.price_per_segment is not None:
        preview.cost = estimate_cost(analysis.segments, options.price_per_segment)
    return text


def preview_message(
    channel: str, compiled: Mapping[str, CompiledTemplate], values: Mapping[str, Any], options: PreviewOptions
) -> Preview:
    """Render every part for one recipient; for SMS add encoding, segments, cost and lint warnings."""
    preview = Preview()
    values = dict(values)
    unsubscribe = f"{options.base_url.rstrip('/')}/u/preview"
    if channel == "email":
        values.setdefault(UNSUBSCRIBE_VARIABLE, unsubscribe)
        preview.headers = list_unsubscribe_headers(unsubscribe)
    for name, template in compiled.items():
        text = _render_leniently(template, values, preview, name)
        if text is not None and name in _KIND:
            text = _track(text, _KIND[name], options, preview)
        if text is not None and name == "body":
            text = _analyse(text, options, preview)
        preview.parts[name] = text
    unsubscribe = str(values.get(UNSUBSCRIBE_VARIABLE, unsubscribe))
    if channel == "email" and not any(unsubscribe in (t or "") for t in preview.parts.values()):
        preview.warn(
            "no_unsubscribe_link",
            f"no part links to {{{{ {UNSUBSCRIBE_VARIABLE} }}}}; recipients should see how to unsubscribe",
        )
    return preview
