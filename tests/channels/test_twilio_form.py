"""The hand-rolled form encoder of the Twilio-style channel is ``urlencode`` byte for byte."""

from __future__ import annotations

from urllib.parse import quote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.channels.base import OutboundSms
from dispatcher.channels.twilio_http import _form, form_value

texts = st.text(max_size=200)  # surrogates excluded: no str a form carries has one


@given(texts)
def test_form_value_is_quote_plus(text: str) -> None:
    assert form_value(text) == quote_plus(text)


@given(to=texts, sender=texts, body=texts, callback=st.none() | texts)
def test_form_body_is_urlencode_of_the_same_fields(
    to: str, sender: str, body: str, callback: str | None
) -> None:
    fields = {"To": to, "From": sender, "Body": body}
    if callback:
        fields["StatusCallback"] = callback
    message = OutboundSms(1, to, sender, body, "key", callback)
    cache: dict[str, str] = {}
    assert _form(message, cache) == urlencode(fields).encode()
    assert _form(message, cache) == urlencode(fields).encode()  # again, from the batch's cache
