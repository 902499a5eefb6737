"""Desk, action server and Rasa wired together as ``make run`` wires them, on loopback ports.

Each is the Procfile's production command (``python -m rasa_server run`` with the runtime
fixes, ``python -m actions.server``, ``python -m support_desk``); a test moves only ports,
files and tokens. Each process can be killed, stopped and started again (the fault tests).
Also here: a WeCom / Official Account platform double and a merchant's walk to a handoff.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from aiohttp import web

from tests.harness.desk import DeskProcess
from tests.harness.http import raw, request
from tests.harness.processes import MODEL, ROOT, START_SECONDS, free_port, need_model, spawn, stop, wait_for, wait_until
from tests.wecom_protocol import DOC_AES_KEY, DOC_CORP_ID, DOC_TOKEN

RASA_TOKEN = "e2e-rasa-token"
DESK_TOKEN = "e2e-desk-token"


class Stack:
    """The three processes; the desk on SQLite in ``directory`` unless ``database_url`` is given,
    Rasa with ``credentials`` (else the repository's credentials.yml) and the SQL tracker store
    on a file; ``env`` adds settings for the action server and Rasa. Logs are kept in
    ``directory`` (a test checks no card number reaches them)."""

    def __init__(
        self,
        directory: Path,
        credentials: Optional[Path] = None,
        database_url: Optional[str] = None,
        model: Path = MODEL,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.directory = directory
        self.model = need_model(model)
        self.credentials = credentials or ROOT / "credentials.yml"
        self.rasa_port, self.actions_port = free_port(), free_port()
        self.desk = DeskProcess(directory, database_url, rasa_url=self.rasa_url, rasa_token=RASA_TOKEN, token=DESK_TOKEN)
        self.env = {
            **os.environ,
            "DESK_URL": self.desk.url,
            "DESK_API_TOKEN": self.desk.token,
            "INCIDENT_BOARD_URL": f"{self.desk.url}/api/incidents",
            "UPSTREAM_STATUS_URL": "",
            "OUTBOX_FILE": str(directory / "outbox.sqlite"),
            "OUTBOX_RETRY_SECONDS": "1",
            "WIDGET_DELIVERY_FILE": str(directory / "widget_delivery.sqlite"),
            "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{self.actions_port}/webhook",
            "TRACKER_STORE_URL": f"sqlite:///{directory / 'tracker.db'}",
            **(env or {}),  # a test's own settings (an edited knowledge file)
        }
        self.logs = [directory / "actions.log", directory / "rasa.log"]
        # Both load at once; Rasa's model takes the longest.
        self.actions = self._spawn_actions()
        self.rasa = self._spawn_rasa()
        self._wait_actions()
        self._wait_rasa()

    @property
    def rasa_url(self) -> str:
        """Where Rasa listens."""
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def desk_url(self) -> str:
        """Where the desk listens."""
        return self.desk.url

    def _spawn_actions(self) -> subprocess.Popen:
        return spawn("actions", self.env, self.logs[0], port=str(self.actions_port))

    def _wait_actions(self) -> None:
        wait_for(f"http://127.0.0.1:{self.actions_port}/health", self.actions, "action server")

    def _spawn_rasa(self) -> subprocess.Popen:
        return spawn(
            "rasa",
            self.env,
            self.logs[1],
            model=str(self.model),
            credentials=str(self.credentials),
            auth_token=RASA_TOKEN,
            port=str(self.rasa_port),
        )

    def _wait_rasa(self) -> None:
        wait_for(f"{self.rasa_url}/", self.rasa, "Rasa")
        # The model loads after the port opens.
        wait_until(
            lambda: request("GET", f"{self.rasa_url}/status?token={RASA_TOKEN}")[1].get("model_file"), START_SECONDS, "the model to load"
        )

    def start_actions(self) -> None:
        """Start the action server again (same port, outbox and log)."""
        self.actions = self._spawn_actions()
        self._wait_actions()

    def kill_actions(self) -> None:
        """SIGKILL by PID: no goodbye, like a crash or an OOM kill; returns once it is gone."""
        os.kill(self.actions.pid, signal.SIGKILL)
        self.actions.wait(30)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.actions_port}/health", timeout=2).close()
        except OSError:
            return
        raise AssertionError("the killed action server still answers")

    def start_rasa(self) -> None:
        """Start Rasa again (same port, tracker store and log) and wait for its model."""
        self.rasa = self._spawn_rasa()
        self._wait_rasa()

    def stop_rasa(self) -> None:
        """SIGTERM Rasa and wait for it to exit."""
        stop(self.rasa, 60)

    def answers(self, sender: str, text: str) -> List[Dict[str, Any]]:
        """The merchant writes over the REST channel; Rasa's answers (text, buttons)."""
        status, answers = request("POST", f"{self.rasa_url}/webhooks/rest/webhook", {"sender": sender, "message": text})
        assert status == 200, (status, answers)
        return answers or []

    def say(self, sender: str, text: str) -> List[str]:
        """The merchant writes over the REST channel; the texts of the answers."""
        return [answer.get("text", "") for answer in self.answers(sender, text)]

    def tracker(self, sender: str) -> Dict[str, Any]:
        """The conversation's tracker through Rasa's HTTP API."""
        status, tracker = request("GET", f"{self.rasa_url}/conversations/{urllib.parse.quote(sender, safe='')}/tracker?token={RASA_TOKEN}")
        assert status == 200, (status, tracker)
        return tracker

    def desk_api(self, method: str, path: str, body: Any = None) -> Any:
        """(status, JSON) from the desk's API with its token."""
        return request(method, self.desk.url + path, body, self.desk.auth)

    def stop(self) -> None:
        """Stop all three by PID."""
        for process in (self.rasa, self.actions):
            stop(process)
        self.desk.stop()


class PlatformThread:
    """WeCom's and the Official Account's token and send-message APIs on 127.0.0.1, in a
    thread of its own; what was sent is kept per user."""

    def __init__(self) -> None:
        self.sent: List[Dict[str, Any]] = []
        self.port = free_port()
        ready = threading.Event()

        async def token(_: web.Request) -> web.Response:
            return web.json_response({"errcode": 0, "access_token": "tok", "expires_in": 7200})

        async def send(request: web.Request) -> web.Response:
            self.sent.append(await request.json())
            return web.json_response({"errcode": 0, "errmsg": "ok"})

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_get("/cgi-bin/gettoken", token)  # WeCom
            app.router.add_post("/cgi-bin/message/send", send)
            app.router.add_get("/cgi-bin/token", token)  # WeChat Official Account
            app.router.add_post("/cgi-bin/message/custom/send", send)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)

    def texts(self, user: str) -> List[str]:
        """The texts sent to ``user``, in order."""
        return [m["text"]["content"] for m in self.sent if m["touser"] == user]


WECHAT_APP_ID = "wxtestappid"


def credentials_with(directory: Path, channels: str) -> Path:
    """A credentials file in ``directory``: the repository's channels plus ``channels`` (YAML)."""
    credentials = directory / "credentials.yml"
    credentials.write_text((ROOT / "credentials.yml").read_text(encoding="utf-8") + channels, encoding="utf-8")
    return credentials


def wecom_credentials(directory: Path, platform: PlatformThread) -> Path:
    """The repository's channels plus WeCom and the Official Account, their APIs on ``platform``."""
    return credentials_with(
        directory,
        f"""
channels.wecom.WeComInput:
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  corp_id: {DOC_CORP_ID}
  agent_id: "1000002"
  secret: test-secret
  api_base: http://127.0.0.1:{platform.port}
channels.wecom.WeChatInput:
  token: {DOC_TOKEN}
  encoding_aes_key: {DOC_AES_KEY}
  app_id: {WECHAT_APP_ID}
  secret: test-secret
  api_base: http://127.0.0.1:{platform.port}
  state_file: {directory / "wechat_state.sqlite"}
""",
    )


def post_callback(stack: Stack, query: Dict[str, str], body: bytes, channel: str = "wecom") -> int:
    """POST a signed platform callback to Rasa's ``channel`` webhook; its status. A 200 must have
    an empty body: the channel answers at once and replies through the platform's API."""
    url = f"{stack.rasa_url}/webhooks/{channel}/webhook?" + "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in query.items())
    status, answer = raw("POST", url, body, {"Content-Type": "text/xml"}, timeout=10)
    if status == 200:
        assert answer == b""
    return status


def walk_to_handoff(say: Callable[[str, str], List[str]], sender: str) -> List[str]:
    """Ask about error 1000, run the diagnostics to the end without a fix, give the handoff
    details; the texts of the answer to the last message (the ticket)."""
    say(sender, "pos机报1000咋整")
    for answer in (
        "/start_diagnostics",
        "/inform_not_fixed",
        '/inform{"terminal_model": "pax_a920"}',
        "/inform_not_fixed",
        "/inform_not_fixed",
        "3.2.1",
        "商户号898310048160123",
        "13812345678",
    ):
        say(sender, answer)
    return say(sender, "从早上开始刷卡都报1000")
