"""A 微信客服 merchant's side: callbacks to the Rasa processes, the fake platform's view of
what reached the merchant, the desk's relay of an agent's reply."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Protocol, Tuple, Union

from tests.fake_official_account import OfficialAccount
from tests.fake_wecom_kf import FakeKf
from tests.harness.desk import DeskProcess
from tests.harness.http import http
from tests.harness.processes import wait_until
from tests.recording_desk import RecordingDesk
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN, callback, kf_signal

KFID = "wkFAKE01"
SECRET = "kf-e2e-secret"
OA_APPID = "wxe2eappid"


class RasaProcesses(Protocol):
    """Where the Rasa processes listen and their API token (``RasaStack`` has both)."""

    process_urls: List[str]
    token: str


class Kf:
    """The running pieces: the platform, the desk (its stand-in, or the real desk), the Rasa processes."""

    def __init__(
        self, platform: FakeKf, desk: Union[RecordingDesk, DeskProcess], stack: RasaProcesses, account: Optional[OfficialAccount]
    ) -> None:
        self.platform, self.desk, self.stack, self.account = platform, desk, stack, account

    def post_callback(self, process: int, query: Dict[str, str], body: bytes, channel: str = "wecom_kf") -> Tuple[int, str]:
        """POST a callback to one Rasa process; (status, body)."""
        url = f"{self.stack.process_urls[process]}/webhooks/{channel}/webhook?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/xml"})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()

    def signal(self, process: int, token: Optional[str] = None) -> Tuple[int, str]:
        """The platform's callback: news for the account (a fresh Token unless given)."""
        plain = kf_signal(KFID, token or self.platform.issue_callback_token())
        return self.post_callback(process, *callback(DOC_TOKEN, DOC_AES_KEY, DOC_CORP_ID, plain, str(int(time.time()))))

    def tracker(self, user: str) -> Dict[str, Any]:
        """The 微信客服 user's Rasa tracker."""
        return http("GET", f"{self.stack.process_urls[0]}/conversations/{sender_path(user)}/tracker?token={self.stack.token}")

    def answered(self, user: str, msgid: str) -> bool:
        """Rasa handled the merchant's message to the end (its answers are sent by then)."""
        events = self.tracker(user).get("events") or []
        mine = [n for n, e in enumerate(events) if e.get("event") == "user" and e.get("message_id") == msgid]
        if not mine:
            return False
        # A paused conversation (with the desk) keeps the message and predicts nothing.
        return self.tracker(user).get("paused") or any(
            e.get("event") == "action" and e.get("name") == "action_listen" for e in events[mine[-1] + 1 :]
        )

    def say(self, process: int, user: str, text: str, menu_id: Optional[str] = None) -> List[str]:
        """The merchant writes; returns what reached the merchant in answer."""
        before = len(self.platform.texts_to(user))
        msgid = self.platform.customer_says(user, text, menu_id=menu_id)
        assert self.signal(process) == (200, "")
        wait_until(lambda: self.answered(user, msgid))
        return self.platform.texts_to(user)[before:]

    def click(self, process: int, user: str, title: str) -> List[str]:
        """The merchant taps ``title`` in the newest menu that has it."""
        for menu in reversed(self.platform.menus_to(user)):
            for item in menu["list"]:
                if item["click"]["content"] == title:
                    return self.say(process, user, title, menu_id=item["click"]["id"])
        raise AssertionError(f"no menu with {title!r}: {self.platform.menus_to(user)}")

    def desk_reply(self, process: int, user: str, text: str, desk_message_id: int, sender: str = "") -> None:
        """What the desk's relay does with an agent's reply (to a 微信客服 user, or ``sender``)."""
        path = sender or sender_path(user)
        url = (
            f"{self.stack.process_urls[process]}/conversations/{path}/tracker/events"
            f"?output_channel=latest&execute_side_effects=true&token={self.stack.token}"
        )
        body = json.dumps({"event": "bot", "text": text, "metadata": {"desk_message_id": desk_message_id}})
        request = urllib.request.Request(url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200


def finish_checks_to_handoff(kf: Kf, user: str, processes: int) -> None:
    """From the terminal model question to the handoff: a tap wherever there is a menu, then
    the handoff form's answers, spread over the Rasa processes."""
    kf.say(1 % processes, user, "A920")
    for number in range(4):
        if not any(item["click"]["content"] == "❌ 还是报1000" for item in kf.platform.menus_to(user)[-1]["list"]):
            break
        kf.click(number % processes, user, "❌ 还是报1000")
        if kf.tracker(user).get("active_loop", {}).get("name") == "handoff_form":
            break
    for number, text in enumerate(["3.2.1", "转人工", "商户号898310048160123", "13812345678", "从早上开始刷卡都报1000"]):
        if kf.tracker(user)["paused"]:
            break
        kf.say(number % processes, user, text)


def sender_path(user: str) -> str:
    """The sender id in a Rasa API path: Rasa (Sanic) does not decode path parameters, so the
    ":" of a 微信客服 sender id must stay as it is ("%3A" would name another conversation)."""
    return urllib.parse.quote(f"{KFID}:{user}", safe=":")
