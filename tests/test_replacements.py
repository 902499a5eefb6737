"""The runtime replaces exactly the Rasa internals its table lists, and refuses to start on
a Rasa whose version or replaced source differs from what was checked
(rasa_server/replacements.py); what the registered components and policies re-implement is
checked against the installed Rasa too, and is no row of the table."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import rasa
import tomli

import rasa_server
from rasa_server import replacements
from rasa_server.replacements import REPLACEMENTS, ReplacementCheckError, Upstream, install_all

ROOT = Path(__file__).resolve().parent.parent
CHECKED: List[Tuple[replacements.Replacement, Upstream]] = [
    (row, upstream) for row in REPLACEMENTS for upstream, _ in replacements.checked(row)
]
# The modules of the registered components and policies that re-implement upstream methods.
COMPONENTS = ("nlu_components.count_vectors", "nlu_components.model_inference", "policies.rule_policy")
COMPONENT_CHECKED: List[Tuple[str, Upstream]] = [
    (name, upstream) for name in COMPONENTS for upstream in importlib.import_module(name).UPSTREAM
]


def _package_modules() -> Dict[str, Any]:
    """Every module of rasa_server but the launcher (which runs Rasa's CLI when executed)."""
    return {
        info.name: importlib.import_module(f"rasa_server.{info.name}")
        for info in pkgutil.iter_modules(rasa_server.__path__)
        if info.name != "__main__"
    }


def _objects_at_replaced_paths() -> Dict[str, Any]:
    return {row.replaces.path: replacements.resolve(row.replaces.path) for row in REPLACEMENTS}


def _python(code: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter from the repository root (nothing installed yet)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


# --- the table lists every replacement ----------------------------------------------------


def test_every_upstream_name_of_the_package_is_a_row_of_the_table():
    kept = {
        (name, attribute) for name, module in _package_modules().items() for attribute in vars(module) if attribute.startswith("_UPSTREAM")
    }
    listed = {(row.module, upstream.kept_as) for row, upstream in CHECKED if upstream.kept_as}
    assert kept == listed


def test_every_module_with_an_install_is_in_the_table_and_nothing_else():
    installing = {name for name, module in _package_modules().items() if callable(getattr(module, "install", None))}
    assert installing == {row.module for row in REPLACEMENTS}


@pytest.mark.process  # a fresh interpreter (tests/harness/fixtures.py)
def test_install_all_replaces_exactly_the_tables_rasa_attributes_in_a_fresh_process():
    """Every attribute of a Rasa module or class that ``install_all`` changes is a row's
    ``replaces``, every row's is changed, and each module kept upstream's own object."""
    done = _python("""
import importlib, json, sys
from rasa_server import replacements
for row in replacements.REPLACEMENTS:  # imported only: nothing is installed by an import
    importlib.import_module("rasa_server." + row.module)

def attributes():
    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "rasa" or name.startswith("rasa.")):
            continue
        for attribute, value in list(vars(module).items()):
            if attribute.startswith("__"):
                continue
            found[name + "." + attribute] = value
            if isinstance(value, type) and value.__module__ == name:
                for member, inner in list(vars(value).items()):
                    if not member.startswith("__"):
                        found[name + "." + attribute + "." + member] = inner
    return found

kept_is_upstream = {
    upstream.path: replacements.upstream_object(row, upstream) is replacements.resolve(upstream.path)
    for row in replacements.REPLACEMENTS for upstream, _ in replacements.checked(row)}
before = attributes()
replacements.install_all()
after = attributes()
changed = sorted(path for path, value in after.items()
                 if path not in before or before[path] is not value)
print(json.dumps({"changed": changed, "kept_is_upstream": kept_is_upstream}))
""")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["changed"] == sorted(row.replaces.path for row in REPLACEMENTS)
    assert report["kept_is_upstream"] == {upstream.path: True for _, upstream in CHECKED}


# --- the check --------------------------------------------------------------------------


@pytest.mark.parametrize("row, upstream", CHECKED, ids=[upstream.path for _, upstream in CHECKED])
def test_the_checked_hash_is_the_installed_rasas_source(row, upstream):
    found = replacements.source_sha256(replacements.upstream_object(row, upstream))
    assert found == upstream.sha256, f"{upstream.path}: re-check {row.file}"


@pytest.mark.parametrize("module, upstream", COMPONENT_CHECKED, ids=[upstream.path for _, upstream in COMPONENT_CHECKED])
def test_a_components_checked_hash_is_the_installed_rasas_source(module, upstream):
    found = replacements.source_sha256(replacements.resolve(upstream.path))
    assert found == upstream.sha256, f"{upstream.path}: re-check {module}"


def test_what_a_registered_component_does_is_no_row_of_the_table():
    rows = {upstream.path for _, upstream in CHECKED}
    assert not rows & {upstream.path for _, upstream in COMPONENT_CHECKED}


def test_the_pin_is_pyprojects_and_installed():
    dependencies = tomli.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [line.split("==")[1] for line in dependencies if line.startswith("rasa==")]
    assert pins == [replacements.pinned_rasa_version()] == [rasa.__version__]


def test_install_all_passes_on_the_installed_rasa():
    replacements.check_all()  # raises on any mismatch


def test_a_wrong_hash_in_the_table_refuses_and_installs_nothing(monkeypatch):
    row = next(row for row in REPLACEMENTS if row.module == "tracker_copy")
    wrong = dataclasses.replace(row, replaces=dataclasses.replace(row.replaces, sha256="0" * 64))
    monkeypatch.setattr(replacements, "REPLACEMENTS", tuple(wrong if r is row else r for r in REPLACEMENTS))
    before = _objects_at_replaced_paths()
    with pytest.raises(ReplacementCheckError) as error:
        install_all()
    message = str(error.value)
    assert "rasa.shared.core.trackers.DialogueStateTracker.copy (replaced by rasa_server/tracker_copy.py)" in message
    assert f"its source's SHA-256 is {row.replaces.sha256}, expected {'0' * 64}" in message
    assert (
        "Re-check rasa_server/tracker_copy.py against the new upstream source, then update the hash in rasa_server/replacements.py"
    ) in message
    assert message.count("\n- ") == 1  # only the changed one is named
    after = _objects_at_replaced_paths()
    assert all(after[path] is before[path] for path in before)


def _changed_source(*args: Any, **kwargs: Any) -> Any:
    """Stands in for an upstream function whose source changed."""
    raise AssertionError("a check reads sources, it calls nothing")


@pytest.mark.parametrize("row, upstream", CHECKED, ids=[upstream.path for _, upstream in CHECKED])
def test_a_changed_upstream_source_refuses_naming_it(monkeypatch, row, upstream):
    if upstream.kept_as:
        monkeypatch.setattr(importlib.import_module(f"rasa_server.{row.module}"), upstream.kept_as, _changed_source)
    else:
        owner, name = upstream.path.rsplit(".", 1)
        monkeypatch.setattr(replacements.resolve(owner), name, _changed_source)
    before = _objects_at_replaced_paths()
    with pytest.raises(ReplacementCheckError) as error:
        install_all()
    role = "replaced by" if upstream is row.replaces else "relied on by"
    assert f"{upstream.path} ({role} {row.file})" in str(error.value)
    assert f"expected {upstream.sha256}" in str(error.value)
    assert replacements.source_sha256(_changed_source) in str(error.value)
    after = _objects_at_replaced_paths()
    assert all(after[path] is before[path] for path in before)


def test_another_rasa_version_refuses_before_any_hash(monkeypatch):
    monkeypatch.setattr(rasa, "__version__", "3.6.22")
    monkeypatch.setattr(replacements, "source_sha256", _changed_source)  # never reached
    before = _objects_at_replaced_paths()
    with pytest.raises(ReplacementCheckError) as error:
        install_all()
    message = str(error.value)
    assert "Rasa 3.6.22 is installed" in message
    assert "checked against Rasa 3.6.21 (the pin in pyproject.toml)" in message
    assert "Install rasa==3.6.21" in message
    after = _objects_at_replaced_paths()
    assert all(after[path] is before[path] for path in before)


@pytest.mark.parametrize("requirements", [["rasa>=3.6"], ["rasa==3.6.21,!=3.6.20"], ["rasa-sdk==3.6.2"]])
def test_a_rasa_dependency_without_one_exact_pin_is_an_error(monkeypatch, requirements):
    monkeypatch.setattr(replacements.importlib.metadata, "requires", lambda _: requirements)
    with pytest.raises(ReplacementCheckError, match="rasa"):
        replacements.pinned_rasa_version()


# --- the launcher ---------------------------------------------------------------------------


@pytest.mark.process  # a fresh interpreter of the launcher (tests/harness/fixtures.py)
def test_the_launcher_starts_rasas_cli():
    done = subprocess.run([sys.executable, "-m", "rasa_server", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: rasa")


@pytest.mark.process  # a fresh interpreter of the launcher (tests/harness/fixtures.py)
def test_the_launcher_refuses_to_start_on_a_changed_upstream_source():
    done = _python("""
import dataclasses, runpy, sys
from rasa_server import replacements
first, *rest = replacements.REPLACEMENTS
replacements.REPLACEMENTS = (
    dataclasses.replace(first, replaces=dataclasses.replace(first.replaces, sha256="0" * 64)),
    *rest)
sys.argv = ["rasa", "--version"]
runpy.run_module("rasa_server", run_name="__main__", alter_sys=True)
""")
    first = REPLACEMENTS[0]
    assert done.returncode == 1, done.stderr
    assert "Rasa Version" not in done.stdout  # Rasa's CLI never ran
    assert "rasa_server: upstream code the runtime replaces has changed in Rasa 3.6.21" in done.stderr
    assert f"{first.replaces.path} (replaced by {first.file})" in done.stderr
    assert f"expected {'0' * 64}" in done.stderr
    assert f"Re-check {first.file} against the new upstream source" in done.stderr
