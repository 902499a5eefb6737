"""微信客服 and the Official Account end to end with the REAL support desk: the desk process,
the action server and Rasa started by tests/harness/stack.py's ``Stack`` (Rasa through
scripts/launch.py as production starts it, DESK_URL / DESK_API_TOKEN in its environment),
the channels pointed at fakes that enforce the platforms' rules (tests/fake_wecom_kf.py,
the Official Account of tests/fake_official_account.py).

Proves, in desk mode: a merchant asks in Chinese and is answered with send_msg, runs the
checks by menu taps and is handed off (the case is in the desk with channel wecom_kf and
the merchant's details); a picture sent during the handoff is fetched with media/get and
on the case; the agent's replies reach the merchant (the desk relays to a sender id with
':') and show ``delivered`` only after the channel's report; a reply past the quota shows
``held`` with the reason, and goes out and shows delivered when the merchant writes again;
resolving sends the closing message and the rating question, and the bot answers again.
In WeCom mode (``handoff: wecom``): the session moves to the WeCom agent and the case shows
it; the agent's words in the WeCom client are in the desk transcript, never in Rasa; the
session's end resolves the case and the bot answers again. On the Official Account: a desk
reply after 48 hours shows held with the reason, and delivered once the merchant writes.
"""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from channels.platform_media import answer_text
from tests.chat_platforms import picture
from tests.fake_wecom_kf import FakeKf
from tests.harness.http import http
from tests.harness.processes import ROOT, wait_until
from tests.harness.stack import RASA_TOKEN, Stack
from tests.harness.wecom_kf import KFID, OA_APPID, SECRET, Kf, finish_checks_to_handoff
from tests.fake_official_account import OfficialAccount
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN, callback, text_message

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)

QUOTA_REASON = "5 messages sent since the merchant last wrote"


@dataclass
class OneRasa:
    """The stack's one Rasa process, as ``Kf`` addresses Rasa processes."""

    process_urls: List[str]
    token: str


class Running:
    """The platforms, the real desk / action server / Rasa, and the desk API."""

    def __init__(self, stack: Stack, platform: FakeKf, account: Optional[OfficialAccount]) -> None:
        self.stack, self.platform, self.account = stack, platform, account
        # The 微信客服 merchant's side (tests/harness/wecom_kf.py), on this stack's one Rasa.
        self.kf = Kf(platform, stack.desk, OneRasa([stack.rasa_url], RASA_TOKEN), account)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """The desk's API with its bearer token."""
        return http(method, f"{self.stack.desk.url}{path}", body, {"Authorization": f"Bearer {self.stack.desk.token}"})

    def cases(self, sender: str) -> List[Dict[str, Any]]:
        """The sender's cases in the desk."""
        return self.api("GET", f"/api/escalations?sender_id={urllib.parse.quote(sender)}")["escalations"]

    def case(self, case_id: int) -> Dict[str, Any]:
        """One case with its transcript."""
        return self.api("GET", f"/api/escalations/{case_id}")

    def message(self, case_id: int, message_id: int) -> Dict[str, Any]:
        """One message of the case's transcript."""
        [found] = [m for m in self.case(case_id)["transcript"] if m["id"] == message_id]
        return found


def credentials(directory: Path, platform: FakeKf, mode: str, account: Optional[OfficialAccount]) -> Path:
    """The repository's channels, plus 微信客服 (and the Official Account) on the fakes."""
    extra = f"""
channels.wecom_kf.WeComKfInput:
  corp_id: {DOC_CORP_ID}
  secret: {SECRET}
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  api_base: {platform.url}
  state_file: {directory / "wecom_kf_state.sqlite"}
  handoff: {mode}
  servicer_userid: lisi
"""
    if account is not None:
        extra += f"""channels.wecom.WeChatInput:
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  app_id: {OA_APPID}
  secret: secret
  api_base: {account.url}
  state_file: {directory / "wechat_state.sqlite"}
"""
    path = directory / "credentials.yml"
    path.write_text((ROOT / "credentials.yml").read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def running(request, tmp_path_factory) -> Iterator[Running]:
    """One stack per handoff mode (``desk`` or ``wecom``, the test's parameter)."""
    mode = request.param
    directory = tmp_path_factory.mktemp(f"kf-desk-{mode}")
    platform = FakeKf(DOC_CORP_ID, SECRET, KFID).start_in_thread()
    account = OfficialAccount() if mode == "desk" else None
    stack = Stack(directory, credentials(directory, platform, mode, account))
    try:
        yield Running(stack, platform, account)
    finally:
        stack.stop()


desk_mode = pytest.mark.parametrize("running", ["desk"], indirect=True)
wecom_mode = pytest.mark.parametrize("running", ["wecom"], indirect=True)


def picture_sent(run: Running, user: str, data: bytes) -> None:
    """The merchant sends a picture; wait for the channel's answer to it."""
    before = len(run.platform.texts_to(user))
    run.platform.customer_says(user, "", msgtype="image", media=(data, "image/png"))
    assert run.kf.signal(0) == (200, "")
    wait_until(lambda: len(run.platform.texts_to(user)) > before)


@desk_mode
def test_desk_mode_from_the_first_question_to_the_closed_case(running):
    run, user = running, "wmDESK1"
    sender = f"{KFID}:{user}"
    first = run.kf.say(0, user, "pos机报1000咋整")
    assert first[0].startswith("出现1000") and any("好，带我排查" in text for text in first)
    # A picture before any handoff: the desk has no case for it; the merchant is asked for words.
    picture_sent(run, user, picture("PNG"))
    assert run.platform.texts_to(user)[-1] == answer_text("media_answer", "zh")
    assert run.cases(sender) == []
    run.kf.click(0, user, "好，带我排查")
    run.kf.click(0, user, "❌ 还是报1000")
    finish_checks_to_handoff(run.kf, user, processes=1)
    assert run.kf.tracker(user)["paused"] is True
    found = re.search(r"PX-[0-9A-Z]{6}", run.platform.texts_to(user)[-1])  # the ticket, through send_msg
    assert found is not None
    ticket = found.group(0)

    # The case in the real desk: the channel, the merchant's details.
    [case] = run.cases(sender)
    assert (case["ticket"], case["channel"], case["status"]) == (ticket, "wecom_kf", "open")
    assert (case["merchant_id"], case["contact"]) == ("898310048160123", "13812345678")

    # A picture during the handoff: fetched with media/get, on the case; the merchant is told.
    png = picture("PNG", size=16)
    picture_sent(run, user, png)
    assert run.platform.texts_to(user)[-1] == answer_text("image_to_agent", "zh")
    [image] = [m for m in run.case(case["id"])["transcript"] if m["attachment_id"]]
    assert (image["role"], image["kind"], image["text"]) == ("user", "merchant", "[image]")
    with sqlite3.connect(run.stack.directory / "desk.db") as db:  # the bytes the desk stored
        stored = db.execute(
            "SELECT escalation_id, channel, content_type, data FROM attachments WHERE id = ?", (image["attachment_id"],)
        ).fetchone()
    assert stored == (case["id"], "wecom_kf", "image/png", png)

    # The merchant writes while paused: kept for the agent, the bot stays quiet.
    assert run.kf.say(0, user, "还要等多久") == []
    assert "还要等多久" in [m["text"] for m in run.case(case["id"])["transcript"] if m["kind"] == "merchant"]

    # The agent claims and replies: send_msg to the sender "wkFAKE01:wmDESK1" through the relay,
    # shown delivered once the channel reported it (until then at most "sending").
    run.api("POST", f"/api/escalations/{case['id']}/claim", {"agent": "li"})
    wait_until(lambda: run.platform.texts_to(user)[-1] == "人工客服 li 已加入对话。")
    reply = run.api("POST", f"/api/escalations/{case['id']}/reply", {"text": "您好，我是客服小李，请重启一下终端", "agent": "li"})
    assert reply["delivery"] in ("sending", "delivered")
    wait_until(lambda: run.message(case["id"], reply["id"])["delivery"] == "delivered")
    assert run.platform.texts_to(user)[-1] == "您好，我是客服小李，请重启一下终端"

    # Six replies after the merchant's message: the sixth is past the platform's quota.
    run.kf.say(0, user, "好的我试试")
    replies = [run.api("POST", f"/api/escalations/{case['id']}/reply", {"text": f"第{n}条", "agent": "li"}) for n in range(1, 7)]
    wait_until(lambda: run.message(case["id"], replies[-1]["id"])["delivery"] == "held")
    held = run.message(case["id"], replies[-1]["id"])
    assert held["delivery_reason"] == QUOTA_REASON
    wait_until(lambda: all(run.message(case["id"], r["id"])["delivery"] == "delivered" for r in replies[:5]))
    assert run.platform.texts_to(user)[-5:] == [f"第{n}条" for n in range(1, 6)]
    # The merchant writes again: the held reply goes out and shows delivered.
    run.kf.say(0, user, "还在吗")
    assert run.platform.texts_to(user)[-1] == "第6条"
    wait_until(lambda: run.message(case["id"], replies[-1]["id"])["delivery"] == "delivered")

    # Resolved: the closing message and the rating question reach the merchant.
    before = len(run.platform.texts_to(user))
    resolved = run.api("POST", f"/api/escalations/{case['id']}/resolve", {"note": "重启后恢复", "category": "terminal"})
    assert resolved["status"] == "resolved"
    wait_until(lambda: len(run.platform.texts_to(user)) >= before + 2)
    closing, question = run.platform.texts_to(user)[before : before + 2]
    assert closing.startswith(f"客服已处理完您的问题（工单 {ticket}）")
    assert question.startswith("这次人工客服的帮助您满意吗")
    assert run.cases(sender)[0]["status"] == "resolved"
    assert run.kf.tracker(user)["paused"] is False
    # The rating question is a menu: the merchant's tap is the case's satisfaction.
    assert [item["click"]["content"] for item in run.platform.menus_to(user)[-1]["list"]] == [f"{n} ⭐" for n in (5, 4, 3, 2, 1)]
    run.kf.click(0, user, "5 ⭐")
    wait_until(lambda: run.cases(sender)[0]["satisfaction"] == 5)
    # The bot answers the merchant's next message again.
    answers = run.kf.say(0, user, "1000是什么意思")
    assert answers and answers[0].startswith("错误码1000一般表示")


@desk_mode
def test_an_official_account_reply_after_48_hours_is_held_then_delivered(running):
    run, openid = running, "oKFDESK_MERCHANT_1"

    def writes(text: str, msg_id: str) -> None:
        run.account.follower_writes(openid)
        plain = text_message(openid, text, msg_id, to="gh_official")
        query, body = callback(DOC_TOKEN, DOC_AES_KEY, OA_APPID, plain, str(int(time.time())))
        assert run.kf.post_callback(0, query, body, channel="wechat") == (200, "")

    writes("pos机报1000咋整", "8101")
    wait_until(lambda: run.account.texts_to(openid))
    case = run.api(
        "POST", "/api/escalations", {"sender_id": openid, "channel": "wechat", "language": "zh", "summary": "公众号：刷卡报1000"}
    )
    run.account.offset += 49 * 3600  # two days later the agent answers
    reply = run.api("POST", f"/api/escalations/{case['id']}/reply", {"text": "您好，工程师已经处理好了", "agent": "li"})
    wait_until(lambda: run.message(case["id"], reply["id"])["delivery"] == "held")
    assert run.message(case["id"], reply["id"])["delivery_reason"] == "errcode 45015: 48-hour window closed"
    assert "您好，工程师已经处理好了" not in run.account.texts_to(openid)
    writes("还在吗", "8102")
    wait_until(lambda: "您好，工程师已经处理好了" in run.account.texts_to(openid))
    wait_until(lambda: run.message(case["id"], reply["id"])["delivery"] == "delivered")


@wecom_mode
def test_wecom_mode_the_wecom_agent_answers_and_the_sessions_end_closes_the_case(running):
    run, user = running, "wmWECOM1"
    sender = f"{KFID}:{user}"
    run.platform.on_duty.add("lisi")
    run.platform.event(user, "enter_session", scene="sticker", scene_param="898310048160123")
    run.kf.say(0, user, "转人工")
    for text in ["13812345678", "从早上开始刷卡都报1000"]:
        if run.kf.tracker(user)["paused"]:
            break
        run.kf.say(0, user, text)
    assert run.kf.tracker(user)["paused"] is True
    assert "PX-" in run.platform.texts_to(user)[-1]
    assert (run.platform.session(user)["state"], run.platform.session(user)["servicer"]) == (3, "lisi")

    # The desk's case shows the session with the WeCom agent (the channel's session report).
    wait_until(lambda: run.cases(sender) and run.cases(sender)[0]["claimed_by"] == "wecom:lisi")
    [case] = run.cases(sender)
    assert (case["channel"], case["status"], case["platform_session"]) == ("wecom_kf", "claimed", "agent")
    assert case["merchant_id"] == "898310048160123"

    # 李四 answers in the WeCom client: an agent message in the desk transcript, not in Rasa.
    run.platform.agent_says(user, "lisi", "您好，我是李四，马上帮您看")
    assert run.kf.signal(0) == (200, "")
    wait_until(lambda: any(m["text"] == "您好，我是李四，马上帮您看" for m in run.case(case["id"])["transcript"]))
    [copied] = [m for m in run.case(case["id"])["transcript"] if m["text"] == "您好，我是李四，马上帮您看"]
    assert (copied["role"], copied["author"]) == ("agent", "WeCom lisi")
    assert run.kf.say(0, user, "好的谢谢") == []  # the bot is quiet while the agent has it
    assert "您好，我是李四，马上帮您看" not in [e.get("text") for e in run.kf.tracker(user)["events"]]

    # 李四 ends the session (state 4): the case is resolved and the bot resumed.
    run.platform.event(user, "session_status_change", change_type=3, old_servicer_userid="lisi")
    assert run.kf.signal(0) == (200, "")
    wait_until(lambda: run.cases(sender)[0]["status"] == "resolved")
    assert run.cases(sender)[0]["resolved_by"] == "wecom:lisi"
    wait_until(lambda: run.kf.tracker(user)["paused"] is False)
    answers = run.kf.say(0, user, "1000是什么意思")
    assert answers and answers[0].startswith("错误码1000一般表示")


@wecom_mode
def test_wecom_mode_without_the_agent_on_duty_the_case_waits_in_the_pool_until_someone_takes_it(running):
    run, user = running, "wmWECOM2"
    sender = f"{KFID}:{user}"
    run.platform.on_duty.discard("lisi")  # lisi is off duty: trans to 3 is refused (95014)
    run.platform.event(user, "enter_session", scene="sticker", scene_param="898310048160123")
    for text in ["转人工", "13812345678", "从早上开始刷卡都报1000"]:
        if run.kf.tracker(user)["paused"]:
            break
        run.kf.say(0, user, text)
    assert run.platform.session(user)["state"] == 2
    wait_until(lambda: run.cases(sender) and run.cases(sender)[0]["platform_session"] == "pool")
    [case] = run.cases(sender)
    assert (case["status"], case["claimed_by"]) == ("open", None)
    # 王五 takes the session from the pool in the WeCom client (change_type 1).
    run.platform.event(user, "session_status_change", change_type=1, new_servicer_userid="wangwu")
    assert run.kf.signal(0) == (200, "")
    wait_until(lambda: run.cases(sender)[0]["claimed_by"] == "wecom:wangwu")
    assert (run.cases(sender)[0]["status"], run.cases(sender)[0]["platform_session"]) == ("claimed", "agent")
