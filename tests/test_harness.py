"""The harness starts what production runs, and the ``process`` marker keeps the unit run
free of servers (tests/harness/)."""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path
from typing import List

import pytest

import support_desk.accounts
import support_desk.app
from scripts.launch import command, procfile
from support_desk.db import migrate
from tests.harness.fixtures import pytest_collection_modifyitems, starts_a_server
from tests.harness.processes import ROOT
from tests.harness.stack import RASA_TOKEN


def cmdline(pid: int) -> List[str]:
    """The argument list a running process was started with."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def test_the_stack_runs_the_procfiles_production_commands(stack):
    rasa, actions, desk = cmdline(stack.rasa.pid), cmdline(stack.actions.pid), cmdline(stack.desk.process.pid)
    assert rasa == command(
        "rasa", model=str(stack.model), credentials=str(stack.credentials), auth_token=RASA_TOKEN, port=str(stack.rasa_port)
    )
    assert rasa[:4] == [sys.executable, "-m", "rasa_server", "run"]  # the runtime fixes, not stock rasa
    assert actions == command("actions", port=str(stack.actions_port))
    assert desk == command("desk")
    # Against production's own line: only the values a test must move differ.
    production = command("rasa", auth_token="production-token", port="5005")
    moved = {
        theirs.split("=", 1)[0] if theirs.startswith("--") else production[i - 1]
        for i, (ours, theirs) in enumerate(zip(rasa, production))
        if ours != theirs
    }
    assert len(rasa) == len(production) and moved == {"--model", "--credentials", "--auth-token", "--port"}
    assert stack.model == ROOT / "models" / "pos1000.tar.gz"
    assert set(procfile()) == {"rasa", "actions", "desk"}
    # The endpoints (tracker store, event broker to the desk, action server) are production's file.
    assert rasa[rasa.index("--endpoints") + 1] == "endpoints.yml"


@pytest.mark.parametrize(
    "args, server",
    [
        ([sys.executable, "-m", "rasa_server", "run", "--model", "m.tar.gz"], True),
        ([sys.executable, "-m", "actions.server", "--port", "5055"], True),
        ([sys.executable, "-m", "support_desk"], True),
        (["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/postgres", "-D", "data"], True),
        (["/usr/bin/redis-server", "--port", "0"], True),
        (["/usr/sbin/nginx", "-c", "nginx.conf"], True),
        ([sys.executable, "-m", "rasa_server", "--version"], False),
        (["/usr/sbin/nginx", "-t", "-c", "nginx.conf"], False),
        (["git", "rev-parse", "HEAD"], False),
        ([sys.executable, "-c", "print(1)"], False),
    ],
)
def test_a_server_start_is_told_apart_from_a_command_line_run(args, server):
    assert starts_a_server(args) is server


class Item:
    """What the marking hook reads and writes of a collected test."""

    def __init__(self, *fixtures: str, **params: str) -> None:
        self.fixturenames, self.markers = list(fixtures), []
        if params:
            self.callspec = type("CallSpec", (), {"params": params})()

    def add_marker(self, marker) -> None:
        self.markers.append(marker.name)


def test_tests_on_a_process_fixture_are_marked_and_the_others_are_not():
    on_stack, on_model, unit = Item("stack", "tmp_path"), Item("trained_agent"), Item("dispatcher", "domain")
    on_postgres, on_sqlite = Item("database_url", database_url="postgresql"), Item("database_url", database_url="sqlite")
    pytest_collection_modifyitems([on_stack, on_model, unit, on_postgres, on_sqlite])
    assert [item.markers for item in (on_stack, on_model, unit, on_postgres, on_sqlite)] == [["process"], ["process"], [], ["process"], []]


def test_no_test_module_imports_another_test_module():
    """Shared helpers live in tests/harness/ (or next to the tests as platform fakes)."""
    borrowed = re.compile(r"^\s*(from|import)\s+tests\.(test_\w+|slow\.test_\w+|conftest)\b", re.MULTILINE)
    found = {
        str(path.relative_to(ROOT)): [m.group(0).strip() for m in borrowed.finditer(path.read_text(encoding="utf-8"))]
        for path in (ROOT / "tests").rglob("*.py")
    }
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_a_desk_database_copied_from_the_template_is_what_migrate_writes(tmp_path, desk_migrations):
    def dump(path: Path) -> List[str]:
        with sqlite3.connect(path) as connection:
            return list(connection.iterdump())

    copied, migrated, existing = tmp_path / "copied.db", tmp_path / "migrated.db", tmp_path / "existing.db"
    desk_migrations.migrate(f"sqlite:///{copied}")
    migrate(f"sqlite:///{migrated}")
    assert dump(copied) == dump(migrated)
    assert any("alembic_version" in line for line in dump(copied))
    # A file that is there already gets the real migrations (its data kept), not a copy.
    with sqlite3.connect(existing) as connection:
        connection.execute("CREATE TABLE kept (x)")
    desk_migrations.migrate(f"sqlite:///{existing}")
    assert set(dump(existing)) == set(dump(migrated)) | {"CREATE TABLE kept (x);"}
    # The desk app and its create-agent command migrate through the template in-process.
    assert support_desk.app.migrate == support_desk.accounts.migrate == desk_migrations.migrate
