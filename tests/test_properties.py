"""Property-based tests (hypothesis): card masking, the desk's input checks, the channels' parsers.

Examples are derandomized and bounded (tests/conftest.py profile ``repo``), so every run
checks the same inputs; ``HYPOTHESIS_PROFILE=explore`` searches wider.
"""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import datetime
from pathlib import Path
from typing import List

import pytest
from hypothesis import assume, given, settings, strategies as st
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

from channels.masked import (
    EMPTY_ANSWER,
    MAX_MESSAGE_CHARS,
    TOO_LONG_ANSWER,
    clean_text,
    masking,
    rest_body_problem,
)
from channels.platform_state import LocalState
from channels.wecom import CallbackCrypto, CallbackError, WeComInput, parse_callback
from common.privacy import luhn_valid, mask_card_numbers
from support_desk.validation import Invalid, optional_text, parse_time, required_text
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN, callback, encrypt_bytes, sign, text_message
from tests.harness.examples import examples

NOW = 1764036000
SEPARATORS = ["", " ", "-", "\u3000", "\uff0d"]  # none, space, dash, full-width space and dash
DIGIT_RE = re.compile(r"\d")
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


# --- card numbers -----------------------------------------------------------------------


def luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@st.composite
def cards(draw) -> tuple[str, str]:
    """(digits, as written): a Luhn-valid 13-19 digit number, grouped by a separator."""
    length = draw(st.integers(13, 19))
    digits = luhn_complete(draw(st.text("0123456789", min_size=length - 1, max_size=length - 1)))
    separator = draw(st.sampled_from(SEPARATORS))
    sizes: List[int] = []
    while sum(sizes) < length:
        sizes.append(min(draw(st.integers(1, 6)), length - sum(sizes)))
    groups, at = [], 0
    for size in sizes:
        groups.append(digits[at : at + size])
        at += size
    written = separator.join(groups)
    if draw(st.booleans()) and draw(st.booleans()):  # a quarter typed with a full-width IME
        digits, written = digits.translate(FULL_WIDTH), written.translate(FULL_WIDTH)
    return digits, written


def no_separators(text: str) -> str:
    return re.sub("[ \\-\u3000\uff0d]", "", text)


surrounding = st.text(max_size=40)


@given(card=cards(), before=surrounding, after=surrounding)
def test_no_card_number_survives_masking_in_any_text(card, before, after):
    digits, written = card
    # Text touching the number with another digit makes a different number.
    assume(not (before and DIGIT_RE.match(before[-1])) and not (after and DIGIT_RE.match(after[0])))
    masked = mask_card_numbers(before + written + after)
    assert written not in masked
    assert digits not in no_separators(masked)
    assert "******" in masked


@given(card=cards())
def test_a_card_alone_keeps_exactly_first_six_and_last_four(card):
    digits, written = card
    assert mask_card_numbers(written) == f"{digits[:6]}******{digits[-4:]}"


@st.composite
def non_card_numbers(draw) -> str:
    """Digit strings that are no card: too short, too long, or failing the Luhn check."""
    kind = draw(st.sampled_from(["short", "long", "not_luhn"]))
    if kind == "short":
        return draw(st.text("0123456789", min_size=1, max_size=12))
    if kind == "long":
        return draw(st.text("0123456789", min_size=20, max_size=30))
    body = draw(st.text("0123456789", min_size=13, max_size=19))
    assume(not luhn_valid(body))
    return body


words = st.text(st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters=" -\u3000\uff0d"), min_size=1, max_size=10)


@given(parts=st.lists(st.one_of(words, non_card_numbers()), max_size=8))
def test_text_without_card_numbers_is_unchanged(parts):
    # numbers never touch each other: "a" (no digit, no separator) goes between parts
    joined = "a".join(parts)
    assert mask_card_numbers(joined) == joined


@given(text=st.text(max_size=200))
def test_text_without_digits_is_unchanged_and_masking_is_idempotent(text):
    masked = mask_card_numbers(text)
    if not DIGIT_RE.search(text):
        assert masked == text
    assert mask_card_numbers(masked) == masked


# --- the desk's input checks -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def clean(text: str) -> bool:
    return not any((ord(c) < 32 and c not in "\n\t") or 0xD800 <= ord(c) <= 0xDFFF for c in text)


@given(value=st.one_of(json_values, st.text(max_size=80)), max_length=st.integers(1, 40), blank=st.booleans())
def test_required_text_gives_clean_bounded_text_or_a_clear_invalid(value, max_length, blank):
    try:
        text = required_text({"field": value}, "field", max_length, allow_blank=blank)
    except Invalid as problem:
        assert str(problem).startswith("field ")
        return
    assert isinstance(value, str)
    assert len(text) <= max_length and clean(text) and text == text.strip()
    assert text or blank


@given(value=json_values)
def test_optional_text_is_none_or_clean_text(value):
    try:
        text = optional_text({"field": value}, "field", 20)
    except Invalid:
        assert value is not None
        return
    assert text is None or (isinstance(text, str) and text and clean(text))


@given(value=st.one_of(json_values, st.text(max_size=40), st.datetimes().map(lambda d: d.isoformat())))
def test_parse_time_gives_an_aware_time_none_or_invalid(value):
    try:
        parsed = parse_time({"at": value}, "at")
    except Invalid as problem:
        assert str(problem).startswith("at ")
        return
    assert parsed is None or (isinstance(parsed, datetime) and parsed.tzinfo is not None)


# --- WeCom / WeChat callbacks ------------------------------------------------------------

CRYPTO = CallbackCrypto(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID)
REJECTIONS = {400, 403, 413}


def signed(encrypted: str, timestamp: str = str(NOW), nonce: str = "7788"):
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    query = {"msg_signature": sign(DOC_TOKEN, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    return query, body


queries = st.dictionaries(
    st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]),
    st.text(max_size=20) | st.sampled_from([str(NOW), "²", "9" * 5000]),
    max_size=4,
)


@given(query=queries, body=st.binary(max_size=300))
def test_arbitrary_callbacks_are_refused_with_a_4xx_only(query, body):
    try:
        parse_callback(CRYPTO, query, body, NOW)
    except CallbackError as refused:
        assert refused.status in REJECTIONS
    else:  # pragma: no cover - an unsigned random body cannot pass the signature
        pytest.fail("an unsigned callback was accepted")


@given(encrypted=st.text(max_size=200) | st.binary(max_size=150).map(lambda b: base64.b64encode(b).decode()))
def test_signed_garbage_ciphertext_is_a_clear_400(encrypted):
    assume("]]>" not in encrypted and all(c >= " " and not 0xD800 <= ord(c) <= 0xDFFF and c not in "\ufffe\uffff" for c in encrypted))
    query, body = signed(encrypted)
    try:
        parse_callback(CRYPTO, query, body, NOW)
    except CallbackError as refused:
        assert refused.status in REJECTIONS
    else:
        pytest.fail("garbage ciphertext was accepted")


@given(message=st.binary(max_size=200))
def test_any_decrypted_bytes_give_a_message_none_or_a_400(message):
    query, body = signed(encrypt_bytes(message))
    try:
        result = parse_callback(CRYPTO, query, body, NOW)
    except CallbackError as refused:
        assert refused.status == 400
    else:
        assert result is None or isinstance(result.text, str)


@given(message=st.binary(max_size=100), receiver=st.binary(min_size=1, max_size=30))
def test_a_message_for_another_receiver_is_refused(message, receiver):
    assume(receiver != DOC_CORP_ID.encode())
    with pytest.raises(CallbackError) as refused:
        CRYPTO.decrypt(encrypt_bytes(message, receiver))
    assert refused.value.status in (400, 403)


xml_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"), min_size=1, max_size=200).filter(
    lambda t: "]]>" not in t
)


@given(user=xml_text, content=xml_text, msg_id=st.integers(0, 2**63).map(str))
def test_encrypt_then_parse_gives_the_message_back(user, content, msg_id):
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message(user, content, msg_id), str(NOW))
    incoming = parse_callback(CRYPTO, query, body, NOW)
    assert (incoming.user, incoming.text, incoming.msg_id) == (user, content, msg_id)


@given(skew=st.integers(-(10**6), 10**6))
def test_old_or_future_timestamps_are_replays(skew):
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, text_message("u", "hi", "1"), str(NOW + skew))
    if abs(skew) <= 300:
        assert parse_callback(CRYPTO, query, body, NOW).text == "hi"
    else:
        with pytest.raises(CallbackError) as refused:
            parse_callback(CRYPTO, query, body, NOW)
        assert refused.value.status == 403


@given(query=queries)
def test_url_verification_never_crashes(query):
    channel = WeComInput(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, "secret", "1", "http://127.0.0.1:9")
    try:
        assert isinstance(channel.verify_url(query), str)
    except CallbackError as refused:
        assert refused.status in REJECTIONS


@given(text=st.text(max_size=30) | st.sampled_from(["²", "٣", "9" * 5000, " 2 ", "0", "3"]))
def test_numbered_choice_never_crashes(text):
    channel = WeComInput(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, "secret", "1", "http://127.0.0.1:9")

    async def choose() -> str:
        await channel.state.put("choices:u", ["/affirm", "/deny"], 60)
        return await channel.as_text("u", text)

    answer = asyncio.run(choose())
    assert answer in ("/affirm", "/deny") if text.strip() in ("1", "2") else answer == text


@given(ids=st.lists(st.text(max_size=3), max_size=60))
def test_seen_messages_stay_bounded_and_first_time_is_once(ids):
    state = LocalState(Path("/nonexistent"), "wecom")  # the in-process memory only
    state.memory._capacity = 10

    async def seen_all():
        return [await state.first_time(f"msg:{i}", 3600) for i in ids]

    firsts = asyncio.run(seen_all())
    assert len(state.memory) <= 10
    for index, msg_id in enumerate(ids):  # a repeat within the last 10 distinct ids is never new
        if msg_id in ids[max(0, index - 9) : index] and len(set(ids[:index])) <= 10:
            assert firsts[index] is False


# --- the channels' door (channels/masked.py) ------------------------------------------------


@given(text=st.text(max_size=300))
def test_clean_text_drops_controls_and_surrogates(text):
    cleaned = clean_text(text)
    assert clean(cleaned) and "\x7f" not in cleaned and cleaned == cleaned.strip()
    assert clean_text(cleaned) == cleaned


def deliver(text: str):
    received: List[str] = []
    collector = CollectingOutputChannel()

    async def on_new_message(message: UserMessage) -> None:
        received.append(message.text)

    asyncio.run(masking(on_new_message)(UserMessage(text, collector, "merchant")))
    return received, [m["text"] for m in collector.messages]


texts = st.one_of(
    st.text(max_size=200),
    st.builds(lambda c, t: t + c[1] + t, cards(), st.text("卡号 ", max_size=5)),
    st.integers(MAX_MESSAGE_CHARS - 2, MAX_MESSAGE_CHARS + 2).map(lambda n: "报" * n),
    st.sampled_from(["", "   ", "\x00\x1b\x07", "\ud800", "😀" * 3, "a\u200bb"]),
)


@settings(max_examples=examples(60))
@given(text=texts)
def test_every_message_reaches_rasa_clean_masked_and_bounded_or_gets_one_polite_answer(text):
    received, answers = deliver(text)
    if received:
        [passed] = received
        assert not answers
        assert passed and len(passed) <= MAX_MESSAGE_CHARS and clean(passed)
        assert passed == mask_card_numbers(passed)
    else:
        assert answers in ([EMPTY_ANSWER], [TOO_LONG_ANSWER["zh"]], [TOO_LONG_ANSWER["en"]])
        assert (answers == [EMPTY_ANSWER]) == (clean_text(text) == "")


@given(body=json_values)
def test_rest_body_check_accepts_only_an_object_with_sender_and_message(body):
    problem = rest_body_problem(body)
    if problem is None:
        assert isinstance(body, dict) and isinstance(body["message"], str) and clean_text(str(body["sender"]))
    else:
        assert isinstance(problem, str) and problem
