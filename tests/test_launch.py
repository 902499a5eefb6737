"""One way to start each process: the Procfile's lines (scripts/launch.py), used by
`make run` and by the real-process tests, which change only ports, files and tokens."""

from __future__ import annotations

import sys

import pytest

from scripts.launch import command, procfile


def test_the_procfile_runs_the_production_runtime():
    processes = procfile()
    assert set(processes) == {"rasa", "actions", "desk"}
    assert command("rasa", auth_token="t", port="5005")[1:4] == ["-m", "rasa_server", "run"]
    assert command("actions", port="5055")[1:3] == ["-m", "actions.server"]
    assert command("desk")[1:] == ["-m", "support_desk"]


def test_a_test_changes_only_the_values_it_names():
    production = command("rasa", auth_token="t", port="5005")
    moved = command("rasa", auth_token="t", port="5123", credentials="/tmp/c.yml")
    assert moved[0] == sys.executable
    assert len(moved) == len(production)
    changed = {production[i - 1]: (a, b) for i, (a, b) in enumerate(zip(production, moved)) if a != b}
    assert changed == {"--port": ("5005", "5123"), "--credentials": ("credentials.yml", "/tmp/c.yml")}


def test_a_flag_production_does_not_use_is_refused():
    with pytest.raises(ValueError, match="--debug"):
        command("rasa", auth_token="t", port="5005", debug="1")


def test_a_value_left_to_the_environment_must_be_given():
    with pytest.raises(ValueError, match="RASA_AUTH_TOKEN"):
        command("rasa", port="5005")
    with pytest.raises(ValueError, match="RASA_PORT"):
        command("rasa", auth_token="t")
    with pytest.raises(KeyError):
        command("bench")


def test_a_token_that_starts_with_a_dash_is_the_tokens_value_not_an_option():
    """``--auth-token=VALUE`` (Procfile, compose, k8s): a token such as ``-wmx…`` reaches
    Rasa's own argument parser as the token, where ``--auth-token -wmx…`` failed."""
    from rasa.__main__ import create_argument_parser

    argv = command("rasa", auth_token="-wmxvBvFMP0rENpHxlgobQ", port="5005")
    assert "--auth-token=-wmxvBvFMP0rENpHxlgobQ" in argv
    parsed = create_argument_parser().parse_args(argv[3:])
    assert parsed.auth_token == "-wmxvBvFMP0rENpHxlgobQ"
    assert parsed.port == 5005
