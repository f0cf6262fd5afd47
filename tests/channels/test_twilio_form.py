"""The hand-rolled form encoder of the Twilio-style channel is ``urlencode`` byte for byte."""

from __future__ import annotations

import json
from urllib.parse import quote_plus, unquote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.channels.base import OutboundSms
from dispatcher.channels.fake_sms_store import FakeSmsConfig, SmsRecord
from dispatcher.channels.fake_sms_wire import _unquote, message_body, message_json, parse_form
from dispatcher.channels.twilio_http import _form, _json_object, form_value

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


# What the stand-in reads back: encoded bodies, and raw text no encoder made (stray %, backslashes, é).
raw_forms = st.text(alphabet=st.sampled_from("%+\\aZ09-_.~ é€\x00"), max_size=60) | st.text(max_size=60)


@given(st.one_of(texts.map(quote_plus), raw_forms, texts.map(lambda t: quote_plus(t).replace("%", "%%"))))
def test_stand_in_decodes_a_form_value_as_unquote_plus_does(text: str) -> None:
    assert _unquote(text) == unquote_plus(text)


@given(to=texts, sender=texts, body=texts)
def test_stand_in_reads_back_what_the_channel_encoded(to: str, sender: str, body: str) -> None:
    form = parse_form(_form(OutboundSms(1, to, sender, body, "key", None), {}).decode())
    assert form == {"To": to, "From": sender, "Body": body}


@given(
    to=texts, sender=texts, body=texts, sid=texts, account=texts, segments=st.integers(1, 10),
    status=st.sampled_from(["queued", "delivered"]), at=st.floats(0, 4e9),
)  # fmt: skip
def test_stand_in_answer_is_the_message_json(
    to: str, sender: str, body: str, sid: str, account: str, segments: int, status: str, at: float
) -> None:
    config = FakeSmsConfig(account_sid=account)
    record = SmsRecord(1, sid, to, sender, body, segments, None, None, received_at=at, status=status)
    assert json.loads(message_body(config, record)) == message_json(config, record)


# Integers within 64 bits: orjson reads larger ones as floats (a provider's answer carries none we use).
answers = st.dictionaries(
    st.text(max_size=10),
    st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.floats(), texts),
    max_size=5,
)


@given(answers)
def test_provider_answers_read_as_the_standard_library_reads_them(data: dict[str, object]) -> None:
    raw = json.dumps(data)  # NaN and Infinity included: json writes them, orjson refuses them
    assert repr(_json_object(raw.encode())) == repr(json.loads(raw))
