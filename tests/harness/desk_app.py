"""The desk app in-process for its tests: settings on a temporary database, aiohttp's test
client with an agent account, the console's login and CSRF, a case to work on, a Rasa HTTP
API double, and a new escalation for the store."""

from __future__ import annotations

import copy
import tempfile
import functools
import re
import shutil
import threading
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url

from support_desk import db

from support_desk.accounts import create_agent
from support_desk.api import STORE
from support_desk.app import create_app
from support_desk.config import DeskSettings, load_settings
from support_desk.store import NewEscalation

TOKEN = "test-desk-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCRIPT = '<script>alert("x")</script>'


class MigrationTemplate:
    """The desk's migrations run once per session, into ``directory/migrated.db``; a new
    SQLite database file is a byte copy of it (the same schema, ``alembic_version`` and
    rows as :func:`support_desk.db.migrate` writes, ~0.15 s less a database).

    :meth:`migrate` stands in for ``support_desk.db.migrate`` (tests/harness/fixtures.py puts
    it where the desk app and its command line call it): any other database (PostgreSQL,
    in memory, a file that exists already) still gets the real migrations."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "migrated.db"
        self._lock = threading.Lock()  # the app migrates on an executor thread
        self._made = False

    def migrate(self, url: str) -> None:
        target = _new_sqlite_file(url)
        if target is None:
            db.migrate(url)
            return
        with self._lock:
            if not self._made:
                db.migrate(f"sqlite:///{self.path}")
                self._made = True
        shutil.copyfile(self.path, target)


def _new_sqlite_file(url: str) -> Optional[Path]:
    """The file of a SQLite URL that names a file not there yet (else None)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.query or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    if path.exists() or not path.parent.is_dir() or parsed.database.startswith("file:"):
        return None
    return path


@functools.lru_cache(maxsize=None)
def _shipped_settings() -> DeskSettings:
    """support_desk/settings.yml read once (~15 ms of YAML a desk app); each test gets a deep copy."""
    return load_settings(environ={})


def desk_settings(database_url: str, rasa_url: str = "http://127.0.0.1:9") -> DeskSettings:
    """The shipped settings, pointed at a test database and Rasa. What the desk writes for
    the rest of the project (the reviewed NLU examples, a retrained model) goes to a
    temporary folder, never into the repository's data/ or models/."""
    scratch = Path(tempfile.mkdtemp(prefix="desk-files-"))
    shipped = copy.deepcopy(_shipped_settings())
    return replace(
        shipped,
        nlu_reviewed_file=scratch / "reviewed.yml",
        training=replace(shipped.training, candidates=str(scratch / "candidates"), served_model=str(scratch / "pos1000.tar.gz")),
        database_url=database_url,
        rasa_url=rasa_url,
        rasa_token="rasa-token",
        api_token=TOKEN,
        secret_key="test-secret-key-of-enough-length-0123456789",
        delivery_retry_seconds=3600,
    )


@asynccontextmanager
async def console_client(database: Path, rasa_url: str, agent: str = "li", role: str = "operator") -> AsyncIterator[TestClient]:
    """The desk app (SQLite file ``database``) under aiohttp's test client, with an agent
    account (an operator unless ``role`` says otherwise) whose password is ``client.password``."""
    app = create_app(desk_settings(f"sqlite:///{database}", rasa_url))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        client.password = await create_agent(app[STORE], agent, role=role)
        yield client


class RasaDouble:
    """Rasa's HTTP API as the desk uses it, on 127.0.0.1 (the real Rasa is in e2e tests).

    Records appended events per conversation and serves trackers; ``down`` makes it
    answer 503 like a Rasa that is restarting.

    ``PUT /model`` as Rasa 3.6 answers it (``rasa/server.py`` ``load_model``): the token
    (``?token=``) or 401; a body without ``model_file``, or a file that is not there (or
    that ``refuse_models`` names) 400; else 204 and ``GET /status`` names the new model.
    ``loaded`` lists every model file put, in order.
    """

    def __init__(self) -> None:
        self.events: Dict[str, List[Dict[str, Any]]] = {}
        self.requests: List[web.Request] = []
        self.down = False
        self.model_file: Optional[str] = None
        self.loaded: List[str] = []
        self.refuse_models = False
        app = web.Application()
        app.router.add_post("/conversations/{id}/tracker/events", self._append)
        app.router.add_get("/conversations/{id}/tracker", self._tracker)
        app.router.add_put("/model", self._load_model)
        app.router.add_get("/status", self._status)
        self.server = TestServer(app, host="127.0.0.1")

    async def _load_model(self, request: web.Request) -> web.Response:
        if request.query.get("token") != "rasa-token":
            return web.json_response({"message": "unauthorized"}, status=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        path = body.get("model_file") if isinstance(body, dict) else None
        if not path:
            return web.json_response({"status": "failure", "message": "No path to model file defined in request_body."}, status=400)
        if self.refuse_models or not Path(path).is_file():
            return web.json_response({"status": "failure", "message": f"Agent with name '{path}' could not be loaded."}, status=400)
        self.model_file = path
        self.loaded.append(path)
        return web.Response(status=204)

    async def _status(self, request: web.Request) -> web.Response:
        if request.query.get("token") != "rasa-token":
            return web.json_response({"message": "unauthorized"}, status=401)
        return web.json_response({"model_file": Path(self.model_file or "pos1000.tar.gz").name})

    async def start(self) -> str:
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def _append(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"message": "restarting"}, status=503)
        if request.query.get("token") != "rasa-token":
            return web.json_response({"message": "unauthorized"}, status=401)
        self.requests.append(request)
        body = await request.json()
        events = body if isinstance(body, list) else [body]
        self.events.setdefault(request.match_info["id"], []).extend(events)
        return web.json_response({"sender_id": request.match_info["id"]})

    async def _tracker(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"message": "restarting"}, status=503)
        return web.json_response({"events": self.events.get(request.match_info["id"], [])})


def csrf_of(html: str) -> str:
    """The CSRF token of the console page's form."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def login(client: TestClient, password: str = "") -> Any:
    """Log agent ``li`` in through the console's form (the client's own password unless given)."""
    form = await (await client.get("/console/login")).text()
    return await client.post(
        "/console/login",
        data={"csrf": csrf_of(form), "username": "li", "password": password or client.password},
        allow_redirects=False,
    )


async def case(client: TestClient, **changes: Any) -> Dict[str, Any]:
    """A new escalation through the API, with a card number and a script in its texts."""
    body = {
        "sender_id": "shop-17",
        "ticket": "PX-ABC234",
        "language": "zh",
        "summary": SCRIPT,
        "contact": "13812345678",
        "diagnostics": [{"step": "network", "outcome": "not_fixed"}],
        "transcript": [{"role": "user", "text": f"卡号4111111111111111 {SCRIPT}"}],
        **changes,
    }
    response = await client.post("/api/escalations", json=body, headers=AUTH)
    return await response.json()


def new_case(**changes: Any) -> NewEscalation:
    """An escalation for the store, with a card number in its summary."""
    base: Dict[str, Any] = dict(
        sender_id="shop-17",
        channel="rest",
        language="zh",
        ticket="PX-ABC234",
        summary="卡号 4111111111111111",
        diagnostics=[{"step": "network", "outcome": "not_fixed"}],
        transcript=[{"role": "user", "text": "报1000", "source_ts": 1.0}],
    )
    return NewEscalation(**{**base, **changes})
