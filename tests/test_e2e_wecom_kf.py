"""微信客服 end to end: two real Rasa processes (each with its real action server) sharing
PostgreSQL and Redis, as deploy/ runs them, with the 微信客服 channel pointed at a fake
platform that enforces the platform's rules (tests/fake_wecom_kf.py). Callbacks are signed
and encrypted by the test from the published algorithm. The desk's report endpoint is a
strict recording stand-in (tests/recording_desk.py) that checks every report against the
contract; escalations wait in the action servers' outbox (the bot says so). The same
journey with the real desk: tests/test_e2e_wecom_kf_desk.py.

Proves: the history the platform keeps is not answered on first start; a merchant asks in
Chinese and is answered with send_msg; the checks run through menu clicks, a menu sent by
one process clicked through the other; a callback retried three times (to both processes)
is answered once; the handoff pauses the bot and a desk reply (appended to Rasa with its
desk_message_id) reaches the merchant and is reported sent; a reply over the quota is held
and sent when the merchant writes; an expired token is fetched again once; bad callbacks
are refused and nothing crashes. The Official Account channel runs in the same processes
against a fake that enforces its 48-hour window: an agent's late reply is held, reported,
and sent when the merchant writes again.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from bench.servers import redis_server
from bench.stack import RasaStack
from tests.fake_wecom_kf import FakeKf
from tests.pg_server import PostgresServer
from tests.recording_desk import RecordingDesk
from tests.harness.processes import MODEL, ROOT, wait_until
from tests.harness.wecom_kf import KFID, OA_APPID, SECRET, Kf, finish_checks_to_handoff
from tests.fake_official_account import OfficialAccount
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN, callback, kf_signal, text_message

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)


@pytest.fixture(scope="module")
def kf(tmp_path_factory) -> Iterator[Kf]:
    run_dir = tmp_path_factory.mktemp("wecom-kf")
    # Slow syncs: two processes syncing at once would overlap at the platform.
    platform = FakeKf(DOC_CORP_ID, SECRET, KFID, page_size=3, sync_delay=0.2).start_in_thread()
    # Three days of history the platform keeps: not to be answered by a new deployment.
    for number in range(4):
        platform.customer_says("wmHISTORY", f"昨天的消息{number}", send_time=time.time() - 30 * 3600)
    account = OfficialAccount()
    desk = RecordingDesk().start_in_thread()
    postgres = PostgresServer().start()
    redis, redis_url = redis_server(run_dir)
    credentials = run_dir / "credentials.yml"
    credentials.write_text(
        (ROOT / "credentials.yml").read_text(encoding="utf-8")
        + f"""
channels.wecom_kf.WeComKfInput:
  corp_id: {DOC_CORP_ID}
  secret: {SECRET}
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  api_base: {platform.url}
  redis_url: {redis_url}/2
channels.wecom.WeChatInput:
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  app_id: {OA_APPID}
  secret: secret
  api_base: {account.url}
  redis_url: {redis_url}/2
""",
        encoding="utf-8",
    )
    stack = RasaStack(
        run_dir,
        MODEL,
        postgres.create_database("tracker"),
        lock_store_url=redis_url,
        rasa_processes=2,
        desk_url=desk.url,
        desk_token=desk.token,
        credentials_file=str(credentials),
    )
    try:
        yield Kf(platform, desk, stack.start(), account)
    finally:
        stack.stop()
        redis.stop()
        postgres.stop()


def test_a_merchant_runs_the_checks_by_menu_across_processes_and_gets_the_desks_answer(kf):
    user = "wmSHOP1"
    # The first callback of the deployment: the history is read past, the new message answered.
    first = kf.say(0, user, "pos机报1000咋整")
    assert first and not kf.platform.texts_to("wmHISTORY")
    assert kf.platform.session(user)["state"] == 1
    # A menu sent by process 0, clicked through process 1.
    assert any("好，带我排查" in text for text in first)
    network = kf.click(1, user, "好，带我排查")
    assert any("❌ 还是报1000" in text for text in network)
    # The same callback three times, to both processes: answered once.
    msgid = kf.platform.customer_says(user, "❌ 还是报1000", menu_id=kf.platform.menus_to(user)[-1]["list"][1]["click"]["id"])
    token = kf.platform.issue_callback_token()
    before = len(kf.platform.texts_to(user))
    assert [kf.signal(n, token) for n in (0, 1, 0)] == [(200, "")] * 3
    wait_until(lambda: kf.answered(user, msgid))
    time.sleep(1)  # a second answer would have been sent by now
    model_question = kf.platform.texts_to(user)[before:]
    assert len(model_question) == 1 and "型号" in model_question[0]
    assert kf.platform.most_syncs_at_once == 1  # one sync at a time across the processes
    users = [e for e in kf.tracker(user)["events"] if e.get("event") == "user"]
    assert [e["text"] for e in users] == ["pos机报1000咋整", "/start_diagnostics", "/inform_not_fixed"]
    assert all(e["input_channel"] == "wecom_kf" for e in users)

    finish_checks_to_handoff(kf, user, processes=2)
    assert kf.tracker(user)["paused"] is True
    ticket_text = kf.platform.texts_to(user)[-1]
    assert "PX-" in ticket_text  # the ticket number reached the merchant through send_msg

    # Desk mode: an agent's reply, relayed into Rasa, goes out with send_msg and is reported sent.
    kf.desk_reply(0, user, "您好，我是客服小李，请重启一下终端", desk_message_id=501)
    assert kf.platform.texts_to(user)[-1] == "您好，我是客服小李，请重启一下终端"
    wait_until(lambda: any(r.get("desk_message_id") == 501 for r in kf.desk.of("delivery")))
    [report] = [r for r in kf.desk.of("delivery") if r.get("desk_message_id") == 501]
    assert (report["state"], report["sender_id"], report["channel"]) == ("sent", f"{KFID}:{user}", "wecom_kf")
    assert kf.platform.session(user)["state"] == 1

    # The merchant writes; the agent sends six replies: the sixth is held, with the reason.
    kf.say(1, user, "好的我试试")  # paused: Rasa keeps it for the desk and answers nothing
    for number in range(6):
        kf.desk_reply(number % 2, user, f"第{number + 1}条", desk_message_id=600 + number)
    wait_until(lambda: any(r.get("desk_message_id") == 605 for r in kf.desk.of("delivery")))
    [held] = [r for r in kf.desk.of("delivery") if r.get("desk_message_id") == 605]
    assert (held["state"], held["reason"]) == ("held", "5 messages sent since the merchant last wrote")
    assert kf.platform.texts_to(user)[-5:] == [f"第{n}条" for n in range(1, 6)]
    # The merchant writes again: the held reply goes out, and the desk hears it was sent.
    kf.say(0, user, "还在吗")
    assert kf.platform.texts_to(user)[-1] == "第6条"
    wait_until(lambda: [r["state"] for r in kf.desk.of("delivery") if r.get("desk_message_id") == 605] == ["held", "sent"])
    assert not kf.desk.refusals


def test_an_expired_token_is_fetched_again_once_for_both_processes(kf):
    user = "wmSHOP2"
    # Came through a contact link carrying the merchant number: it is in the message's metadata.
    kf.platform.event(user, "enter_session", scene="sticker", scene_param="898310048160123")
    kf.say(0, user, "你好")
    [first] = [e for e in kf.tracker(user)["events"] if e.get("event") == "user"]
    assert first["metadata"]["scene_param"] == "898310048160123"
    requests = kf.platform.token_requests
    kf.platform.expire_tokens()
    assert kf.say(1, user, "pos机显示1000")
    assert kf.say(0, user, "谢谢")
    assert kf.platform.token_requests == requests + 1


@pytest.mark.parametrize(
    "tamper, status",
    [
        (lambda q, b: ({**q, "msg_signature": "0" * 40}, b), 403),
        (lambda q, b: ({**q, "timestamp": str(int(q["timestamp"]) - 3600)}, b), 403),
        (lambda q, b: (q, b"<xml><Encrypt><![CDATA[oops"), 400),
        (lambda q, b: (q, b'{"Encrypt": "not xml"}'), 400),
        (lambda q, b: (q, b"<xml>" + b"x" * 1024 * 1024 + b"</xml>"), 413),
    ],
)
def test_bad_callbacks_are_refused_and_nothing_crashes(kf, tamper, status):
    plain = kf_signal(KFID, kf.platform.issue_callback_token())
    query, body = tamper(*callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, plain, str(int(time.time()))))
    assert kf.post_callback(0, query, body)[0] == status


def test_wrong_corp_and_unknown_kinds_are_refused_or_answered_politely(kf):
    plain = kf_signal(KFID, kf.platform.issue_callback_token())
    query, body = callback(DOC_TOKEN, DOC_AES_KEY, "wwANOTHERCORP", plain, str(int(time.time())))
    assert kf.post_callback(1, query, body)[0] == 403
    user = "wmSHOP3"
    before = len(kf.platform.texts_to(user))
    kf.platform.customer_says(user, "", msgtype="sticker_v9")
    assert kf.signal(1) == (200, "")
    wait_until(lambda: len(kf.platform.texts_to(user)) > before)
    assert "请用文字描述" in kf.platform.texts_to(user)[-1]
    # Both processes still answer.
    assert kf.say(0, user, "pos机报1000") and kf.say(1, user, "谢谢")


def test_an_official_account_reply_after_48_hours_waits_for_the_merchant(kf):
    openid = "oE2E_MERCHANT_1"

    def writes(process: int, text: str, msg_id: str) -> None:
        kf.account.follower_writes(openid)
        plain = text_message(openid, text, msg_id, to="gh_official")
        query, body = callback(DOC_TOKEN, DOC_AES_KEY, OA_APPID, plain, str(int(time.time())))
        assert kf.post_callback(process, query, body, channel="wechat") == (200, "")

    writes(0, "pos机报1000咋整", "8001")
    wait_until(lambda: kf.account.texts_to(openid))
    kf.account.offset += 49 * 3600  # two days later the agent answers
    kf.desk_reply(1, "", "您好，工程师已经处理好了", desk_message_id=901, sender=openid)
    wait_until(lambda: any(r.get("desk_message_id") == 901 for r in kf.desk.of("delivery", openid)))
    [held] = kf.desk.of("delivery", openid)[-1:]
    assert (held["state"], held["reason"], held["channel"]) == ("held", "errcode 45015: 48-hour window closed", "wechat")
    assert "您好，工程师已经处理好了" not in kf.account.texts_to(openid)
    writes(1, "还在吗", "8002")
    wait_until(lambda: "您好，工程师已经处理好了" in kf.account.texts_to(openid))
    wait_until(lambda: [r["state"] for r in kf.desk.of("delivery", openid) if r.get("desk_message_id") == 901] == ["held", "sent"])
