"""The real support desk (the Procfile's ``desk`` line) on a loopback port."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from tests.harness.http import http
from tests.harness.processes import free_port, spawn, stop, wait_until, wait_for

DESK_TOKEN = "desk-test-token"
SECRET_KEY = "desk-test-secret-key-0123456789abcdef"


class DeskProcess:
    """``python -m support_desk`` with its settings in the environment, as ``make run`` gives them.

    The database is a SQLite file in ``directory`` unless ``database_url`` names one; Rasa is
    ``rasa_url`` (else the environment's ``RASA_URL``, else a port nothing listens on, so
    replies wait). The log is kept in ``directory``: the first start prints the first
    agent's password there.
    """

    def __init__(
        self,
        directory: Path,
        database_url: Optional[str] = None,
        port: Optional[int] = None,
        rasa_url: Optional[str] = None,
        rasa_token: Optional[str] = None,
        redis_url: Optional[str] = None,
        token: str = DESK_TOKEN,
    ) -> None:
        self.port = port or free_port()
        self.token = token
        self.log = directory / f"desk-{self.port}.log"
        self.env = {
            **os.environ,
            "DESK_PORT": str(self.port),
            "DESK_API_TOKEN": token,
            "DESK_SECRET_KEY": SECRET_KEY,
            "DESK_DATABASE_URL": database_url or f"sqlite:///{directory / 'desk.db'}",
            # Labels a test makes never reach the repository's data/nlu/reviewed.yml.
            "NLU_REVIEWED_FILE": str(directory / "reviewed.yml"),
            # Nor does a training it starts touch the repository's models/.
            "DESK_MODELS_DIR": str(directory / "models"),
        }
        rasa_url = rasa_url or os.environ.get("RASA_URL") or f"http://127.0.0.1:{free_port()}"
        self.env["RASA_URL"] = self.env["RASA_PUBLIC_URL"] = rasa_url
        if rasa_token is not None:
            self.env["RASA_AUTH_TOKEN"] = rasa_token
        if redis_url:
            self.env["DESK_REDIS_URL"] = redis_url
        self.start()

    def start(self) -> None:
        """Start (or start again on the same port, database and log) and wait for ``/health``."""
        self.process = spawn("desk", self.env, self.log)
        wait_for(f"{self.url}/health", self.process, "support desk")

    @property
    def url(self) -> str:
        """Where the desk listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict:
        """The API's bearer header."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def password(self) -> str:
        """The first agent's password, printed once by the desk that created it."""

        def printed() -> Optional[str]:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
            found = [line for line in lines if "password (shown once):" in line]
            return found[0].rsplit(":", 1)[1].strip() if found else None

        return wait_until(printed, 10, "the first agent's password in the desk's log")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The desk's API with its token; the parsed JSON answer."""
        return http(method, self.url + path, body, self.auth)

    def stop(self) -> None:
        """SIGTERM by PID and wait."""
        stop(self.process, 10)
