"""Knowledge data, entity patterns and settings: the YAML the operators edit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from actions.knowledge import KnowledgeBase, load_knowledge, parse_version
from actions.settings import load_settings
from scripts.ensure_env import SECRET_NAMES, ensure_env
from scripts.validate_data import RESPONSE_IN_CODE, responses_named_in_code

ROOT = Path(__file__).resolve().parent.parent
NLU_PATTERNS = yaml.safe_load((ROOT / "data/nlu/entities.yml").read_text("utf-8"))["nlu"]


def pattern(name: str) -> re.Pattern:
    [entry] = [item for item in NLU_PATTERNS if item.get("regex") == name]
    return re.compile(entry["examples"].strip()[2:], re.IGNORECASE)


@pytest.fixture(scope="module")
def knowledge() -> KnowledgeBase:
    return load_knowledge(load_settings(environ={}).knowledge_file)


@pytest.mark.parametrize(
    "text, version",
    [
        ("V2.3.1", (2, 3, 1)),
        ("版本是2.10吧", (2, 10)),
        ("软件版本v3.0.2.1", (3, 0, 2, 1)),
        ("1000", None),
        ("", None),
        ("IP 192.168.1.10.5", None),
    ],
)
def test_parse_version(text, version):
    assert parse_version(text) == version


def test_sample_data_is_marked_as_such():
    raw = yaml.safe_load((ROOT / "data/knowledge/terminals.yml").read_text("utf-8"))
    assert raw["sample_data"] is True


def test_every_model_has_both_languages(knowledge):
    for key in knowledge.model_keys:
        model = knowledge.model(key)
        for texts in (model.restart, model.version_location, model.update):
            assert set(texts) == {"zh", "en"} and all(texts.values())
        assert parse_version(model.latest_version)


@pytest.mark.parametrize(
    "key, version, status",
    [
        ("pax_a920", "3.2.1", "latest"),
        ("pax_a920", "3.3", "latest"),
        ("pax_a920", "3.2.0", "outdated"),
        ("pax_a920", "3.10", "latest"),
        ("unknown", "1.0", "unknown"),
        ("pax_a920", "unknown", "unknown"),
    ],
)
def test_version_status(knowledge, key, version, status):
    assert knowledge.version_status(key, version) == status


def test_nlu_lookup_table_covers_every_model_alias(knowledge):
    """A model an operator adds must also be recognisable in messages."""
    [lookup] = [item for item in NLU_PATTERNS if item.get("lookup") == "terminal_model"]
    # The lookup matches case-insensitively (config.yml), so compare lower-cased.
    listed = {line[2:].strip().lower() for line in lookup["examples"].strip().splitlines()}
    raw = yaml.safe_load((ROOT / "data/knowledge/terminals.yml").read_text("utf-8"))
    aliases = {alias.lower() for entry in raw["models"].values() for alias in entry["aliases"]}
    assert aliases <= listed
    assert all(knowledge.match_model(alias) for alias in listed)


@pytest.mark.parametrize(
    "name, text, found",
    [
        ("merchant_id", "商户号898310048160123终端号20481234", ["898310048160123"]),
        ("merchant_id", "卡号6222021234567890123", []),
        ("terminal_id", "商户号898310048160123终端号20481234", ["20481234"]),
        ("terminal_id", "报错1000了", []),
        ("sw_version", "版本V2.3.1吧", ["V2.3.1"]),
        ("sw_version", "报1000", []),
        ("serial_number", "SN:0820ABC12345", ["0820ABC12345"]),
        ("serial_number", "terminal shows", []),
        ("rating", "给5分", ["5"]),
        ("rating", "1000", []),
    ],
)
def test_entity_patterns_work_on_unsegmented_chinese(name, text, found):
    assert [m.group(0) for m in pattern(name).finditer(text)] == found


def test_settings_come_from_yaml_and_environment(tmp_path):
    settings_file = tmp_path / "settings.yml"
    settings_file.write_text(
        "desk_url: http://127.0.0.1:8080/\nincident_board_url: http://127.0.0.1:8080/api/incidents\n"
        "outbox_file: var/outbox.sqlite\noutbox_retry_seconds: 10\ndesk_timeout_seconds: 5\n"
        "upstream_status_url: null\nstatus_timeout_seconds: 2\n"
        "knowledge_file: data/knowledge/terminals.yml\nlabels_file: /etc/labels.yml\n"
    )
    settings = load_settings(
        settings_file,
        environ={"UPSTREAM_STATUS_URL": "http://127.0.0.1:9/s.json", "INCIDENT_BOARD_URL": "", "DESK_API_TOKEN": "t"},
    )
    assert settings.incident_board_url is None
    assert settings.desk_url == "http://127.0.0.1:8080"
    assert settings.outbox_file == ROOT / "var/outbox.sqlite"
    assert settings.upstream_status_url == "http://127.0.0.1:9/s.json"
    assert settings.status_timeout_seconds == 2.0
    assert settings.knowledge_file == ROOT / "data/knowledge/terminals.yml"
    assert settings.labels_file == Path("/etc/labels.yml")
    assert settings.desk_api_token == "t"
    # Not in this file: the project's domain folder.
    assert settings.domain_dir == ROOT / "domain"


def test_first_run_generates_secrets_and_never_overwrites(tmp_path):
    env = tmp_path / ".env"
    env.write_text("RASA_AUTH_TOKEN=kept")
    assert ensure_env(env) == ["DESK_API_TOKEN", "DESK_SECRET_KEY"]
    values = dict(line.split("=", 1) for line in env.read_text().splitlines())
    assert values["RASA_AUTH_TOKEN"] == "kept"
    assert set(values) == set(SECRET_NAMES) and all(len(values[n]) >= 32 for n in SECRET_NAMES[1:])
    assert ensure_env(env) == []
    assert oct(env.stat().st_mode & 0o777) == "0o600"


def test_validation_sees_the_responses_actions_send(tmp_path):
    code = tmp_path / "a.py"
    code.write_text(
        "d.utter_message(response=\"utter_a\")\nd.utter_message(response = 'utter_faq/b')\n"
        'TABLE = {"open": "utter_c"}\n# utter_not_quoted\n'
    )
    assert responses_named_in_code([code]) == {"utter_a", "utter_faq/b", "utter_c"}
    assert RESPONSE_IN_CODE.search("utterance utter_x") is None


def test_the_incident_board_is_the_desks_unless_given(tmp_path):
    # A deployment sets DESK_URL only (deploy/docker-compose.yml): the server-status step
    # must ask that desk's board, not 127.0.0.1 inside the action server's container.
    settings_file = tmp_path / "settings.yml"
    settings_file.write_text(
        "desk_url: http://127.0.0.1:8080\nincident_board_url: null\noutbox_file: var/outbox.sqlite\n"
        "knowledge_file: data/knowledge/terminals.yml\nlabels_file: data/knowledge/labels.yml\n"
    )
    assert load_settings(settings_file, environ={"DESK_URL": "http://desk:8080/"}).incident_board_url == "http://desk:8080/api/incidents"
    assert load_settings(settings_file, environ={"INCIDENT_BOARD_URL": "http://board/x"}).incident_board_url == "http://board/x"
    assert load_settings(settings_file, environ={"INCIDENT_BOARD_URL": ""}).incident_board_url is None
