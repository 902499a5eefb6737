"""微信客服 in WeCom mode (``handoff: wecom``), end to end with a real Rasa process and its
real action server, one process without Redis (the channel's state in its SQLite file):
a merchant who came through a contact link carrying the merchant number asks for a
person, is asked only what is missing, gets the ticket through send_msg, and the session
moves to the WeCom 接待人员 (``service_state/trans`` to 3). The agent's messages in the
WeCom client are copied to the desk (``agent_message``), never to Rasa; the session's end
is reported (state 4). The desk's report endpoint is the strict recording stand-in.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from bench.stack import RasaStack
from tests.fake_wecom_kf import FakeKf
from tests.recording_desk import RecordingDesk
from tests.harness.processes import MODEL, ROOT, wait_until
from tests.harness.wecom_kf import KFID, SECRET, Kf
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)


@pytest.fixture(scope="module")
def kf(tmp_path_factory) -> Iterator[Kf]:
    run_dir = tmp_path_factory.mktemp("wecom-kf-agents")
    platform = FakeKf(DOC_CORP_ID, SECRET, KFID).start_in_thread()
    desk = RecordingDesk().start_in_thread()
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
  state_file: {run_dir / "wecom_kf_state.sqlite"}
  handoff: wecom
  servicer_userid: lisi
""",
        encoding="utf-8",
    )
    stack = RasaStack(
        run_dir, MODEL, f"sqlite:///{run_dir / 'tracker.db'}", desk_url=desk.url, desk_token=desk.token, credentials_file=str(credentials)
    )
    try:
        yield Kf(platform, desk, stack.start(), account=None)
    finally:
        stack.stop()


def test_the_session_goes_to_the_wecom_agent_and_the_agents_words_to_the_desk(kf):
    user = "wmSHOP9"
    sender = f"{KFID}:{user}"
    kf.platform.on_duty.add("lisi")
    kf.platform.event(user, "enter_session", scene="sticker", scene_param="898310048160123")
    kf.say(0, user, "转人工")
    for text in ["13812345678", "从早上开始刷卡都报1000"]:
        if kf.tracker(user)["paused"]:
            break
        kf.say(0, user, text)
    tracker = kf.tracker(user)
    assert tracker["paused"] is True
    assert "PX-" in kf.platform.texts_to(user)[-1]  # the ticket went out while the bot had the session
    # The contact link's merchant number spared the question (the form asked two things only).
    assert [e["text"] for e in tracker["events"] if e.get("event") == "user"][1:] == ["13812345678", "从早上开始刷卡都报1000"]
    assert (kf.platform.session(user)["state"], kf.platform.session(user)["servicer"]) == (3, "lisi")
    wait_until(lambda: kf.desk.of("session", sender))
    assert [(r["state"], r["servicer_userid"]) for r in kf.desk.of("session", sender)] == [(3, "lisi")]

    # 李四 answers in the WeCom client: copied to the desk, not to Rasa.
    kf.platform.agent_says(user, "lisi", "您好，我是李四，马上帮您看")
    assert kf.signal(0) == (200, "")
    wait_until(lambda: kf.desk.of("agent_message", sender))
    [copied] = kf.desk.of("agent_message", sender)
    assert (copied["text"], copied["servicer_userid"]) == ("您好，我是李四，马上帮您看", "lisi")
    # The merchant's answer reaches Rasa (paused: kept for the desk), the bot says nothing.
    before = len(kf.platform.texts_to(user))
    kf.say(0, user, "好的谢谢")
    assert len(kf.platform.texts_to(user)) == before
    assert "您好，我是李四，马上帮您看" not in [e.get("text") for e in kf.tracker(user)["events"]]

    # 李四 ends the session: the desk hears state 4 (it resolves the case and resumes the bot).
    kf.platform.event(user, "session_status_change", change_type=3, old_servicer_userid="lisi")
    assert kf.signal(0) == (200, "")
    wait_until(lambda: len(kf.desk.of("session", sender)) == 2)
    assert kf.desk.of("session", sender)[-1]["state"] == 4
    assert not kf.desk.refusals
    time.sleep(0.5)
    assert not [r for r in kf.desk.of("delivery", sender) if r["state"] == "held"]
