"""Knowledge edited in the console: the files stay the source of truth, edits are checked,
audited, written whole or not at all, and read again by the bot and the desk without a
restart. The bot's next answer after an edit, through the trained model and a real action
server, is in tests/test_conversations.py."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from actions.knowledge import load_knowledge
from actions.regions import load_regions
from common.reloading import reread_when_changed
from support_desk import incident_input
from support_desk.knowledge_edit import KnowledgeFiles, file_version, terminal_from_form
from support_desk.store import Conflict
from support_desk.validation import Invalid
from support_desk.api import STORE
from support_desk.audit import audit_trail
from tests.harness.desk_app import console_client, csrf_of, login
from tests.harness.processes import ROOT

KNOWLEDGE = ROOT / "data" / "knowledge"


@pytest.fixture
def files(tmp_path, monkeypatch) -> KnowledgeFiles:
    """Copies of the shipped knowledge files, which the desk's own readers read too."""
    terminals, regions = tmp_path / "terminals.yml", tmp_path / "regions.yml"
    shutil.copy(KNOWLEDGE / "terminals.yml", terminals)
    shutil.copy(KNOWLEDGE / "regions.yml", regions)
    monkeypatch.setattr(incident_input, "TERMINALS_FILE", terminals)
    monkeypatch.setattr(incident_input, "REGIONS_FILE", regions)
    return KnowledgeFiles(terminals, regions)


def form_of(files: KnowledgeFiles, model: str, **changes: str) -> dict:
    """The edit form of a model as the console fills it, with ``changes``."""
    [entry] = [m for m in files.terminals()[0] if m.key == model]
    form = {"key": model, "name": entry.name, "aliases": ", ".join(entry.aliases), "latest_version": entry.latest_version}
    form.update({f"{step}_{lang}": text for step, texts in entry.steps.items() for lang, text in texts.items()})
    return {**form, **changes}


def test_a_loader_reads_its_file_again_only_when_it_changed(tmp_path):
    path, calls = tmp_path / "data.yml", []

    @reread_when_changed()
    def load(p: Path) -> dict:
        calls.append(p)
        return yaml.safe_load(p.read_text())

    path.write_text("a: 1\n")
    assert load(path) == {"a": 1} and load(path) == {"a": 1} and len(calls) == 1
    replacement = tmp_path / "new.yml"
    replacement.write_text("a: 2\n")
    os.replace(replacement, path)  # the way the console writes
    assert load(path) == {"a": 2} and len(calls) == 2
    path.unlink()
    with pytest.raises(FileNotFoundError):
        load(path)
    # A loader called without its file argument watches the argument's default.
    assert load_regions() is load_regions(KNOWLEDGE / "regions.yml")


def test_an_edit_changes_only_its_lines_and_the_bot_reads_it_without_a_restart(files):
    before_text = files.terminals_path.read_text(encoding="utf-8")
    assert load_knowledge(files.terminals_path).model("pax_a920").latest_version == "3.2.1"
    _, version = files.terminals()
    previous = files.save_terminal(terminal_from_form(form_of(files, "pax_a920", latest_version="3.10")), version)
    assert previous["latest_version"] == "3.2.1"
    after_text = files.terminals_path.read_text(encoding="utf-8")
    changed = [(a, b) for a, b in zip(before_text.splitlines(), after_text.splitlines()) if a != b]
    assert changed == [('    latest_version: "3.2.1"', '    latest_version: "3.10"')]
    # The action server's loader, in this process, sees it at once: 3.10, not the number 3.1.
    assert load_knowledge(files.terminals_path).model("pax_a920").latest_version == "3.10"
    assert "# SAMPLE DATA" in after_text


def test_a_new_model_is_known_to_the_bot_and_to_the_incident_form(files):
    form = form_of(files, "pax_a920", key="pax_a77", name="PAX A77", aliases="A77, 百富A77", latest_version="V1.4.0")
    files.save_terminal(terminal_from_form(form), files.terminals()[1])
    knowledge = load_knowledge(files.terminals_path)
    assert knowledge.match_model("百富A77") == "pax_a77" and knowledge.model("pax_a77").latest_version == "1.4.0"
    assert "pax_a77" in incident_input.terminal_models()
    data = yaml.safe_load(files.terminals_path.read_text(encoding="utf-8"))
    assert data["models"]["pax_a77"]["restart"]["en"] == data["models"]["pax_a920"]["restart"]["en"]


def test_a_stale_page_is_refused_and_nothing_is_written(files):
    _, opened = files.terminals()
    files.save_terminal(terminal_from_form(form_of(files, "sunmi_p2", latest_version="5.0.0")), opened)
    written = files.terminals_path.read_bytes()
    with pytest.raises(Conflict):
        files.save_terminal(terminal_from_form(form_of(files, "sunmi_p2", latest_version="6.0.0")), opened)
    assert files.terminals_path.read_bytes() == written


def test_two_operators_saving_at_once_one_wins_the_other_is_told(files):
    _, version = files.terminals()
    outcomes: list = []

    def save(number: str) -> None:
        try:
            files.save_terminal(terminal_from_form(form_of(files, "newland_n910", latest_version=number)), version)
            outcomes.append(number)
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=save, args=(v,)) for v in ("3.0.0", "4.0.0")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=str)[-1] == "conflict" and outcomes.count("conflict") == 1
    [won] = [o for o in outcomes if o != "conflict"]
    assert load_knowledge(files.terminals_path).model("newland_n910").latest_version == won


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"latest_version": "latest"}, "version"),
        ({"latest_version": "3..1"}, "version"),
        ({"name": ""}, "required"),
        ({"restart_en": ""}, "required"),
        ({"update_zh": "<script>alert(1)</script>"}, "plain_text"),
        ({"restart_zh": "x" * 1001}, "too_long"),
        ({"aliases": " , "}, "aliases"),
        ({"key": "PAX A920!"}, "model_key"),
    ],
)
def test_a_bad_field_is_refused_with_its_reason(files, changes, key):
    with pytest.raises(Invalid) as refused:
        terminal_from_form(form_of(files, "pax_a920", **changes))
    assert refused.value.key == key


def test_an_alias_of_another_model_is_refused(files):
    entry = terminal_from_form(form_of(files, "landi_a8", aliases="A8, A920"))
    written = files.terminals_path.read_bytes()
    with pytest.raises(Invalid) as refused:
        files.save_terminal(entry, file_version(files.terminals_path))
    assert refused.value.key == "alias_taken" and files.terminals_path.read_bytes() == written


def test_merchant_number_prefixes_are_added_changed_and_removed(files):
    assert load_regions(files.regions_path).of_merchant_number("898440512345678") == "44"
    files.save_prefix("8984405", "4403", files.prefixes()[2])
    assert load_regions(files.regions_path).of_merchant_number("898440512345678") == "4403"
    assert files.save_prefix("8984405", None, files.prefixes()[2]) == "4403"
    assert load_regions(files.regions_path).of_merchant_number("898440512345678") == "44"
    for prefix, region, key in (("12", "44", "prefix"), ("8984405", "9999", "unknown_region"), ("8984405", None, "prefix_unknown")):
        with pytest.raises(Invalid) as refused:
            files.save_prefix(prefix, region, files.prefixes()[2])
        assert refused.value.key == key
    assert yaml.safe_load(files.regions_path.read_text(encoding="utf-8"))["merchant_number_prefixes"]["8984403"] == "4403"


# --- the console page -------------------------------------------------------------------


async def test_an_operator_edits_from_the_console_and_the_edit_is_audited(files, tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url) as client:
        await login(client)
        page = await (await client.get("/console/knowledge")).text()
        assert 'id="model-pax_a920"' in page and 'id="nav-knowledge"' in page
        form = {**form_of(files, "pax_a920", latest_version="3.3.0"), "csrf": csrf_of(page), "version": files.terminals()[1]}
        saved = await client.post("/console/knowledge/terminals", data=form, allow_redirects=False)
        assert saved.status == 302
        assert load_knowledge(files.terminals_path).model("pax_a920").latest_version == "3.3.0"
        page = await (await client.get("/console/knowledge")).text()
        assert "已保存：PAX A920" in page and "knowledge.terminal · knowledge:terminal:pax_a920" in page
        [row] = [r for r in await audit_trail(client.app[STORE]) if r["action"] == "knowledge.terminal"]
        assert (row["actor"], row["detail"]["before"]["latest_version"], row["detail"]["after"]["latest_version"]) == (
            "li",
            "3.2.1",
            "3.3.0",
        )
        # The same page submitted again is stale: refused, shown as text, nothing written.
        written = files.terminals_path.read_bytes()
        back = {"Referer": "/console/knowledge"}
        stale = await client.post("/console/knowledge/terminals", data={**form, "latest_version": "9.9.9"}, headers=back)
        assert "changed by someone else" in await stale.text()
        assert files.terminals_path.read_bytes() == written
        # Markup is refused in the agent's language and the page shows it as text.
        fresh = {**form, "version": files.terminals()[1], "update_en": "<b>bold</b>"}
        refused = await (await client.post("/console/knowledge/terminals", data=fresh, headers=back)).text()
        assert "只能是纯文字" in refused and "<b>bold</b>" not in refused
        assert files.terminals_path.read_bytes() == written


async def test_only_operators_see_and_edit_knowledge(files, tmp_path, rasa):
    async with console_client(tmp_path / "desk.db", rasa.url, role="agent") as client:
        anonymous = await client.get("/console/knowledge", allow_redirects=False)
        assert anonymous.status == 302 and anonymous.headers["Location"] == "/console/login"
        await login(client)
        refused = await client.get("/console/knowledge")
        assert refused.status == 403 and "只有运维人员可以查看和修改知识库" in await refused.text()
        queue = await (await client.get("/console")).text()
        assert 'id="nav-knowledge"' not in queue
        form = {**form_of(files, "pax_a920", latest_version="3.3.0"), "csrf": csrf_of(queue), "version": files.terminals()[1]}
        assert (await client.post("/console/knowledge/terminals", data=form)).status == 403
        assert (await client.post("/console/knowledge/prefixes", data={"csrf": csrf_of(queue), "prefix": "8984405"})).status == 403
        assert load_knowledge(files.terminals_path).model("pax_a920").latest_version == "3.2.1"
