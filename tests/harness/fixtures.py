"""The shared fixtures (a pytest plugin, registered by ``tests/conftest.py``) and the
``process`` marker.

``process`` is set on every test that starts a server process or needs the trained model:
here, from the fixtures it uses (:data:`PROCESS_FIXTURES`); a module whose own fixtures
start processes sets ``pytestmark = pytest.mark.process``; a test that starts a fresh
interpreter (``python -m rasa_server``, ``python -c``) or trains a model carries
``@pytest.mark.process`` itself (seconds each, not a unit's cost). ``make test-fast`` runs the rest
(``-m "not slow and not process"``); there, a test that starts one of the stack's servers
anyway fails and says to mark it (:func:`refuse_servers`).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, List, Sequence

import pytest
from aiohttp.test_utils import TestServer

from tests.harness.desk_app import MigrationTemplate, RasaDouble, desk_settings
from tests.harness.processes import MODEL
from tests.harness.stack import PlatformThread, Stack, wecom_credentials
from tests.pg_server import PostgresServer

# Fixtures that start a process or load the trained model (``redis_url`` and ``redis_port``:
# the Redis servers of test modules).
PROCESS_FIXTURES = {"stack", "trained_agent", "postgres", "redis_url", "redis_port"}
# What a unit test must not start: the stack's servers and the outside servers the checks
# use (a command-line run such as ``rasa_server --version`` or ``nginx -t`` is no server).
SERVER_BINARIES = {"postgres", "redis-server", "chromium", "supervisord"}
SERVER_MODULES = {"actions.server", "support_desk", "supervisor.supervisord"}
RASA_SERVER_COMMANDS = {"run", "shell", "interactive"}
# Parameter values that stand for a server the test then starts.
SERVER_PARAMS = {"postgresql", "redis"}


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Mark the tests that use a process fixture, or a fixture parametrized on "postgresql" or
    "redis" (which starts or asks for its server out of pytest's sight)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and bool(SERVER_PARAMS & {str(v) for v in callspec.params.values()})
        if on_postgres or PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)


def starts_a_server(args: Sequence[str]) -> bool:
    """Is this argument list one of the servers a unit test must not start?"""
    words = [str(word) for word in args]
    if not words:
        return False
    if "runuser" in os.path.basename(words[0]) and "--" in words:
        words = words[words.index("--") + 1 :]
    program = os.path.basename(words[0])
    if program in SERVER_BINARIES or (program == "nginx" and "-t" not in words):
        return True
    if words[0] != sys.executable or len(words) < 3 or words[1] != "-m":
        return False
    return words[2] in SERVER_MODULES or (words[2] in {"rasa", "rasa_server"} and bool(RASA_SERVER_COMMANDS & set(words[3:4])))


def refuse_servers(config: pytest.Config) -> None:
    """When the process tests are deselected, starting a server is an error that names the fix."""
    if "not process" not in (config.getoption("markexpr") or ""):
        return
    popen_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: Any, *rest: Any, **options: Any) -> None:
        if starts_a_server([args] if isinstance(args, (str, Path)) else list(args)):
            raise AssertionError(
                f"a unit test started {args!r}: mark its module with pytestmark = pytest.mark.process (tests/harness/fixtures.py)"
            )
        popen_init(self, args, *rest, **options)

    subprocess.Popen.__init__ = guarded  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; guard the unit run."""
    config.addinivalue_line(
        "markers",
        "process: starts a server or a fresh interpreter, trains a model or needs the trained one (make test-fast leaves these out)",
    )
    refuse_servers(config)


@pytest.fixture(autouse=True, scope="session")
def desk_migrations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigrationTemplate]:
    """A new SQLite desk database is a copy of one migrated once (:class:`MigrationTemplate`),
    in-process: where the desk app migrates on start-up and its ``create-agent`` command.
    Hundreds of unit tests start a desk app on a fresh file; the migrations themselves are
    tested on the real ``support_desk.db.migrate`` (test_desk_store, test_channel_store,
    test_desk_pagination), and the desk processes the process tests start run them too."""
    import support_desk.accounts
    import support_desk.app

    template = MigrationTemplate(tmp_path_factory.mktemp("desk-migrations"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(support_desk.app, "migrate", template.migrate)
        patch.setattr(support_desk.accounts, "migrate", template.migrate)
        yield template


@pytest.fixture(scope="session")
def trained_agent() -> Any:
    """Rasa's agent on the trained model (``make train``), loaded once (~1 GB)."""
    from rasa.core.agent import Agent

    return Agent.load(str(MODEL))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on 127.0.0.1 (tests/pg_server.py); a database per user."""
    server = PostgresServer().start()
    yield server
    server.stop()


_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh desk database: a SQLite file, then a database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'desk.db'}"
    return request.getfixturevalue("postgres").create_database(f"desk_{next(_databases)}")


@pytest.fixture
async def store(database_url: str, desk_migrations: MigrationTemplate) -> AsyncIterator[Any]:
    """The desk store on the migrated database."""
    from support_desk.db import create_engine
    from support_desk.store import DeskStore

    desk_migrations.migrate(database_url)
    engine = create_engine(database_url)
    yield DeskStore(engine)
    await engine.dispose()


@pytest.fixture
async def rasa() -> AsyncIterator[RasaDouble]:
    """Rasa's HTTP API double on 127.0.0.1 (tests/harness/desk_app.py); ``rasa.url``."""
    double = RasaDouble()
    double.url = await double.start()
    yield double
    await double.server.close()


@pytest.fixture
async def console_desk(tmp_path: Path) -> AsyncIterator[TestServer]:
    """The desk app on a test server with operator ``li`` (``.password``) and a Rasa double (``.rasa``)."""
    from support_desk.accounts import create_agent
    from support_desk.api import STORE
    from support_desk.app import create_app

    rasa = RasaDouble()
    rasa_url = await rasa.start()
    app = create_app(desk_settings(f"sqlite:///{tmp_path / 'desk.db'}", rasa_url))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.password = await create_agent(app[STORE], "li", role="operator")  # type: ignore[attr-defined]  # posts incidents too
    server.rasa = rasa  # type: ignore[attr-defined]
    yield server
    await server.close()
    await rasa.server.close()


@pytest.fixture(scope="session")
def platform() -> PlatformThread:
    """The WeCom / Official Account API double the shared stack's channels talk to."""
    return PlatformThread()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, platform: PlatformThread) -> Iterator[Stack]:
    """One desk + action server + Rasa for every module that needs this shape (the
    repository's channels plus WeCom and the Official Account on ``platform``); each test
    uses senders of its own."""
    directory = tmp_path_factory.mktemp("stack")
    running = Stack(directory, wecom_credentials(directory, platform))
    yield running
    running.stop()
