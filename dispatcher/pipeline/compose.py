"""Rendering one recipient's message and turning it into what a channel sends.

SMS: the body, tracked links rewritten per recipient, segments counted (the budget reserves by segment).
E-mail: subject, text and HTML rendered, links tracked, an open pixel and an unsubscribe link added, and
the MIME skeleton built once per (campaign, sender) filled per recipient (a stdlib ``EmailMessage`` per
recipient is the costliest step by far). A template that fails for one recipient fails that row once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dispatcher.channels.base import OutboundEmail, OutboundSms
from dispatcher.core.inbound import status_callback_url
from dispatcher.core.links import recipient_token, rewrite_links, tracked_url, unsubscribe_token
from dispatcher.core.mime import MimeSkeleton
from dispatcher.core.opens import open_pixel_url
from dispatcher.core.personalise import recipient_variables
from dispatcher.core.rendering import CompiledTemplate, render
from dispatcher.core.sms import analyse_sms
from dispatcher.pipeline.runtime import CampaignRuntime, Content, ProviderRoute
from dispatcher.storage import ledger
from dispatcher.storage.ledger_rows import Due


@dataclass(frozen=True, slots=True)
class Urls:
    base: str
    secret: str


@dataclass
class Rendered:
    due: Due
    body: str = ""  # SMS text
    subject: str = ""
    text: str = ""
    html: str | None = None
    segments: int = 1
    outbound: OutboundSms | OutboundEmail | None = None  # what the provider is handed (``prepare``)

    @property
    def key(self) -> str:
        return self.due.idempotency_key or ledger.idempotency_key(0, self.due.id)


@dataclass
class Composer:
    runtime: CampaignRuntime
    urls: Urls
    _skeletons: dict[str, MimeSkeleton] = field(default_factory=dict)
    _callbacks: dict[int, str] = field(default_factory=dict)  # status callback URL by provider

    def render(self, due: Due) -> Rendered:
        """Raises TemplateError when the template cannot render for this recipient."""
        content = self.runtime.variants[due.variant]
        variables = recipient_variables({}, due.contact)
        if content.sms is not None:
            body = self._links(render(content.sms, variables), due.id, "text")
            return Rendered(due, body=body, segments=analyse_sms(body).segments)
        return self._email(content, variables, due)

    def _email(self, content: Content, variables: dict[str, Any], due: Due) -> Rendered:
        unsubscribe = self._unsubscribe(due.id)
        variables = {**variables, "unsubscribe_url": unsubscribe}
        subject = _render_part(content.subject, variables) or ""
        text = self._links(_render_part(content.text, variables) or "", due.id, "text")
        html = _render_part(content.html, variables)
        if html is not None:
            html = _with_pixel(self._links(html, due.id, "html"), self._pixel(due.id))
        return Rendered(due, subject=subject, text=text, html=html)

    def _links(self, text: str, message_id: int, kind: Any) -> str:
        links = self.runtime.links
        if not links:
            return text

        def make(url: str) -> str | None:
            code = links.get(url)
            if code is None:
                return None
            return tracked_url(self.urls.base, code, recipient_token(self.urls.secret, code, message_id))

        return rewrite_links(text, make_url=make, kind=kind)

    def _unsubscribe(self, message_id: int) -> str:
        runtime = self.runtime
        token = unsubscribe_token(self.urls.secret, runtime.workspace_id, runtime.channel, message_id)
        return f"{self.urls.base.rstrip('/')}/u/{token}"

    def _pixel(self, message_id: int) -> str:
        return open_pixel_url(self.urls.base, self.urls.secret, self.runtime.workspace_id, message_id)

    def prepare(self, route: ProviderRoute, item: Rendered) -> None:
        """Build what ``route`` is handed for ``item``; raises InputError when a header cannot carry it."""
        item.outbound = self.sms(route, item) if self.runtime.channel == "sms" else self.email(route, item)

    def sms(self, route: ProviderRoute, item: Rendered) -> OutboundSms:
        callback = None
        if route.kind == "twilio_http":
            callback = self._callbacks.get(route.provider_id)
            if callback is None:
                callback = self._callbacks[route.provider_id] = status_callback_url(
                    self.urls.base, route.provider_id
                )
        return OutboundSms(
            message_id=item.due.id,
            to=item.due.address,
            sender=route.sender,
            body=item.body,
            idempotency_key=self._key(item),
            status_callback=callback,
        )

    def email(self, route: ProviderRoute, item: Rendered) -> OutboundEmail:
        skeleton = self._skeleton(route)
        data = skeleton.fill(
            to=item.due.address,
            subject=item.subject,
            text=item.text,
            html=item.html,
            message_key=self._key(item),
            unsubscribe_url=self._unsubscribe(item.due.id),
        )
        mail_from = str(route.config.get("mail_from") or _address_of(route.sender))
        return OutboundEmail(
            message_id=item.due.id,
            to=item.due.address,
            mail_from=mail_from,
            data=data,
            idempotency_key=self._key(item),
        )

    def _key(self, item: Rendered) -> str:
        return item.due.idempotency_key or ledger.idempotency_key(self.runtime.campaign_id, item.due.id)

    def _skeleton(self, route: ProviderRoute) -> MimeSkeleton:
        found = self._skeletons.get(route.sender)
        if found is None:
            domain = _address_of(route.sender).rpartition("@")[2] or "localhost"
            found = MimeSkeleton(
                from_header=route.sender,
                reply_to=route.config.get("reply_to"),
                has_html=any(c.html is not None for c in self.runtime.variants.values()),
                domain=str(route.config.get("message_id_domain") or domain),
                list_unsubscribe=True,
            )
            self._skeletons[route.sender] = found
        return found


def _render_part(compiled: CompiledTemplate | None, variables: dict[str, Any]) -> str | None:
    return None if compiled is None else render(compiled, variables)


def _address_of(sender: str) -> str:
    """``Shop <news@shop.example>`` → ``news@shop.example``."""
    if "<" in sender and sender.endswith(">"):
        return sender.rsplit("<", 1)[1][:-1].strip()
    return sender.strip()


def _with_pixel(html: str, url: str) -> str:
    pixel = f'<img src="{url}" width="1" height="1" alt="" style="display:none">'
    lower = html.lower()
    at = lower.rfind("</body>")
    return html[:at] + pixel + html[at:] if at >= 0 else html + pixel
