"""The bot side (actions, channels, the Rasa runtime) and the support desk share only the
``common`` package; the bot side reaches the desk through its HTTP API. A module of the bot
side that imports ``support_desk`` fails here, so a change to the desk's store cannot
break the bot."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOT_SIDE = ("actions", "channels", "rasa_server", "nlu_components", "policies")


def imported_modules(path: Path) -> Iterator[Tuple[int, str]]:
    """Every module a Python file imports (absolute names), with its line."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def bot_side_files() -> Iterator[Path]:
    for package in BOT_SIDE:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_the_scan_sees_the_bot_side():
    files = list(bot_side_files())
    assert len(files) > 30
    assert any(name == "common.tickets" for f in files for _, name in imported_modules(f))


@pytest.mark.parametrize("package", BOT_SIDE + ("common",))
def test_the_bot_side_and_common_never_import_the_desk(package):
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in imported_modules(path)
        if name == "support_desk" or name.startswith("support_desk.")
    ]
    assert not offenders, offenders


def test_common_imports_neither_side():
    for path in sorted((ROOT / "common").rglob("*.py")):
        for line, name in imported_modules(path):
            assert name.split(".")[0] not in ("support_desk", *BOT_SIDE), f"{path.name}:{line} {name}"


def test_a_desk_import_would_be_found(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom support_desk.store import DeskStore\n", encoding="utf-8")
    assert (2, "support_desk.store") in list(imported_modules(sample))
