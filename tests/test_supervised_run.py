"""`make run` keeps the stack up: a killed process comes back, nothing written is lost,
and one Ctrl-C (SIGINT to the process group) stops everything.

The stack is `make run` itself (scripts/supervise.py, supervisord, the Procfile) on free
ports with its databases in a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from bench.servers import free_port
from tests.harness.processes import ROOT

pytestmark = pytest.mark.process  # starts processes (tests/harness/fixtures.py)

NAMES = ("desk", "actions", "rasa")


class SupervisedRun:
    """`make run` started in its own process group, as a terminal would start it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = {name: free_port() for name in NAMES}
        subprocess.run(["make", "-s", ".env"], cwd=ROOT, check=True)
        self.secrets = dict(line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines() if "=" in line)
        self.env = {
            **os.environ,
            "RUN_DIR": str(folder / "run"),
            "RASA_PORT": str(self.ports["rasa"]),
            "ACTIONS_PORT": str(self.ports["actions"]),
            "DESK_PORT": str(self.ports["desk"]),
            "RASA_URL": self.rasa,
            "DESK_URL": self.desk,
            "INCIDENT_BOARD_URL": f"{self.desk}/api/incidents",
            "DESK_DATABASE_URL": f"sqlite:///{folder / 'desk.db'}",
            "TRACKER_STORE_URL": f"sqlite:///{folder / 'tracker.db'}",
            "OUTBOX_FILE": str(folder / "outbox.sqlite"),
        }
        self.env.pop("ACTION_ENDPOINT_URL", None)  # the Makefile derives it from ACTIONS_PORT
        self.log = (folder / "run.log").open("wb")
        self.make = subprocess.Popen(
            ["make", "-s", "run"], cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.wait_up()

    @property
    def rasa(self) -> str:
        return f"http://127.0.0.1:{self.ports['rasa']}"

    @property
    def desk(self) -> str:
        return f"http://127.0.0.1:{self.ports['desk']}"

    def wait_up(self) -> None:
        """Until all three answer (a loaded 2-core machine loads the model slowly)."""
        for url in (f"{self.desk}/health", f"http://127.0.0.1:{self.ports['actions']}/health", f"{self.rasa}/"):
            deadline = time.monotonic() + 240
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    assert self.make.poll() is None, self.output()[-4000:]
                    assert time.monotonic() < deadline, f"{url} did not come up\n{self.output()[-4000:]}"
                    time.sleep(0.5)

    def status(self) -> Dict[str, str]:
        """``name -> "RUNNING pid 123"`` from supervisorctl."""
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "scripts/supervise.py", "status"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        return {line.split()[0]: " ".join(line.split()[1:4]).rstrip(",") for line in done.stdout.splitlines() if line.strip()}

    def pid(self, name: str) -> int:
        match = re.search(r"RUNNING pid (\d+)", self.status().get(name, ""))
        assert match, self.status()
        return int(match.group(1))

    def say(self, sender: str, text: str) -> List[Dict]:
        body = json.dumps({"sender": sender, "message": text}).encode()
        with urllib.request.urlopen(f"{self.rasa}/webhooks/rest/webhook", body, timeout=60) as response:
            return json.loads(response.read())

    def desk_api(self, path: str, body: Dict = None) -> Dict:
        request = urllib.request.Request(
            f"{self.desk}{path}",
            json.dumps(body).encode() if body is not None else None,
            {"Authorization": f"Bearer {self.secrets['DESK_API_TOKEN']}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def tracker_texts(self, sender: str) -> List[str]:
        url = f"{self.rasa}/conversations/{sender}/tracker?token={self.secrets['RASA_AUTH_TOKEN']}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return [e.get("text") for e in json.loads(response.read())["events"] if e.get("event") == "user"]

    def restarted(self, name: str, old_pid: int) -> int:
        """The new pid once supervisord has the program running again."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"RUNNING pid (\d+)", self.status().get(name, ""))
            if match and int(match.group(1)) != old_pid:
                return int(match.group(1))
            time.sleep(0.5)
        raise AssertionError(f"{name} was not restarted: {self.status()}\n{self.output()[-4000:]}")

    def output(self) -> str:
        self.log.flush()
        return (self.folder / "run.log").read_text(errors="replace")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole process group; make's exit status."""
        os.killpg(self.make.pid, signal.SIGINT)
        return self.make.wait(timeout=60)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[SupervisedRun]:
    started = SupervisedRun(tmp_path_factory.mktemp("make-run"))
    yield started
    if started.make.poll() is None:
        # The programs run in process groups of their own (supervisord's stopasgroup):
        # stop them through supervisord, as Ctrl-C does, not by killing make's group.
        pids = [started.pid(name) for name in NAMES if "RUNNING" in started.status().get(name, "")]
        try:
            started.interrupt()
        finally:
            for pid in pids:
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
    started.log.close()


def test_a_killed_action_server_comes_back_and_the_merchant_always_gets_an_answer(run):
    first = run.say("sup-1", "帮我排查一下")
    assert first and "检查网络" in first[0]["text"]
    old = run.pid("actions")
    os.kill(old, signal.SIGKILL)
    # While it restarts: the polite "cannot check now", or the next step if it is back already.
    assert run.say("sup-1", "❌ 还是报1000")
    new = run.restarted("actions", old)
    assert new != old
    assert "exited: actions (terminated by SIGKILL; not expected)" in run.output()
    assert run.say("sup-1", "帮我排查一下")


def test_a_killed_desk_comes_back_with_its_cases(run):
    case = run.desk_api("/api/escalations", {"sender_id": "sup-2", "channel": "rest", "language": "zh", "summary": "刷卡报1000"})
    old = run.pid("desk")
    os.kill(old, signal.SIGKILL)
    run.restarted("desk", old)
    run.wait_up()
    assert run.desk_api(f"/api/escalations/{case['id']}")["summary"] == "刷卡报1000"


def test_a_killed_rasa_comes_back_with_the_conversations(run):
    run.say("sup-3", "POS机报1000是什么意思")
    old = run.pid("rasa")
    os.kill(old, signal.SIGKILL)
    run.restarted("rasa", old)
    run.wait_up()
    assert "POS机报1000是什么意思" in run.tracker_texts("sup-3")
    assert run.say("sup-3", "谢谢")


def test_one_ctrl_c_stops_everything(run):
    pids = [run.pid(name) for name in NAMES]
    run.interrupt()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
