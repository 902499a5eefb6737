"""Similar answers at the server-status step: one key for what the terminal shows, no
key for filler alone (support_desk/answer_keys.py)."""

from __future__ import annotations

import pytest

from support_desk.answer_keys import MAX_KEY_CHARS, answer_key


@pytest.mark.parametrize(
    "answers, key",
    [
        (
            ["还是不行，屏幕显示连接主机超时 10:05", "显示：连接主机超时", "连接主机超时！！", "我的pos机还是显示 连接主机超时了"],
            "连接主机超时",
        ),
        (["still no - screen says HOST TIMEOUT", "Ｈｏｓｔ　ｔｉｍｅｏｕｔ", "it doesn't work, host timeout at 10:05"], "host timeout"),
        (["卡号 4111 1111 1111 1111 还是 通讯失败", "通讯失败"], None),
    ],
)
def test_answers_that_name_the_same_message_share_one_key(answers, key):
    keys = {answer_key(answer) for answer in answers}
    if key is None:  # the card number's word stays: two keys, and neither holds a digit
        assert len(keys) == 2 and not any(ch.isdigit() for k in keys for ch in k or "")
    else:
        assert keys == {key}


@pytest.mark.parametrize("answer", [None, "", "还是不行", "试了，还是报错1000", "no", "Still not working!", "1000", "？？？", "a"])
def test_filler_alone_has_no_key(answer):
    assert answer_key(answer) is None


def test_different_messages_have_different_keys_and_keys_are_bounded():
    assert answer_key("显示连接主机超时") != answer_key("显示无法拨号")
    assert answer_key("host timeout") != answer_key("dial failed")
    assert len(answer_key("连接失败" * 100) or "") <= MAX_KEY_CHARS
    assert answer_key("<script>alert(1)</script> 连接失败") == "alert 连接失败"
    assert answer_key("<b>连接失败</b>") == answer_key("连接失败") == "连接失败"
