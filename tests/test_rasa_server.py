"""The Rasa runtime fixes keep Rasa's behaviour exactly (rasa_server/)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction

from rasa_server import action_validation

VALID = [
    {"events": [], "responses": []},
    {"events": [{"event": "slot", "name": "network_ok", "value": False}],
     "responses": [{"response": "utter_ask_terminal_model"}]},
    {"events": [{"event": "active_loop", "name": None},
                {"event": "pause"}, {"event": "bot", "text": "工单 PX-ABC234"}]},
    {},
]
INVALID = [
    {"events": [{"event": "slot"}]},             # a slot event without a name
    {"events": "not a list"},
    {"events": [{"event": "no_such_event"}]},
    {"responses": ["a string, not an object"]},
    [],
]


@pytest.mark.parametrize("result", VALID)
def test_valid_answers_pass_like_upstream(result):
    action = RemoteAction("action_x", None)
    assert action_validation.upstream()(action, result) is True
    assert action_validation.validate_action_result(action, result) is True


@pytest.mark.parametrize("result", INVALID)
def test_invalid_answers_fail_with_upstreams_error(result):
    action = RemoteAction("action_x", None)
    with pytest.raises(ValidationError) as upstream_error:
        action_validation.upstream()(action, result)
    with pytest.raises(ValidationError) as our_error:
        action_validation.validate_action_result(action, result)
    assert our_error.value.message == upstream_error.value.message
    assert "Failed to validate Action server response" in our_error.value.message


def test_install_replaces_the_method_in_this_process():
    original = RemoteAction._validate_action_result
    try:
        action_validation.install()
        assert RemoteAction._validate_action_result is action_validation.validate_action_result
    finally:
        RemoteAction._validate_action_result = original


def test_the_launcher_is_rasas_cli():
    done = subprocess.run([sys.executable, "-m", "rasa_server", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Rasa Version      :         3.6.21" in done.stdout
