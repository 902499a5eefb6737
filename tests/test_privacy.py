"""Card and phone masking, and the channel layer that applies it to every message."""

from __future__ import annotations

import pytest
from rasa.core.channels.channel import UserMessage

from channels.masked import MaskedRestInput, MaskedSocketIOInput, masking
from common.privacy import luhn_valid, mask_card_numbers, mask_phone


@pytest.mark.parametrize(
    "text, masked",
    [
        ("4111111111111111", "411111******1111"),
        ("卡号4111 1111 1111 1111刷不了", "卡号411111******1111刷不了"),
        ("card 4111-1111-1111-1111.", "card 411111******1111."),
        ("6222021234567890128", "622202******0128"),  # 19 digits
        ("4111111111111112", "4111111111111112"),  # fails Luhn: not a card
        ("商户号898310048160123", "商户号898310048160123"),  # 15 digits, not Luhn-valid
        ("411111111111", "411111111111"),  # 12 digits: too short
        ("41111111111111111111", "41111111111111111111"),  # 20 digits: too long
        ("两张卡 4111111111111111 和 5555555555554444", "两张卡 411111******1111 和 555555******4444"),
        ("", ""),
    ],
)
def test_mask_card_numbers(text, masked):
    assert mask_card_numbers(text) == masked


def test_luhn():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_mask_phone_in_lists():
    assert mask_phone("电话13812345678") == "电话138****5678"
    assert mask_phone("898310048160123") == "898310048160123"
    assert mask_phone("+86 13912345678") == "+86 139****5678"


async def test_every_message_is_masked_before_rasa_gets_it():
    received = []

    async def on_new_message(message: UserMessage) -> None:
        received.append(message.text)

    await masking(on_new_message)(UserMessage("卡号 4111111111111111 报1000"))
    await masking(on_new_message)(UserMessage(None))
    assert received == ["卡号 411111******1111 报1000", None]


def test_channels_keep_rasas_names():
    assert MaskedRestInput.name() == "rest" and MaskedSocketIOInput.name() == "socketio"
