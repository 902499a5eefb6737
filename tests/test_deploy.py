"""The production description (deploy/) matches what `make bench` runs, and its nginx
configuration is valid for Debian's nginx."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bench.servers import free_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_has_the_benchmarked_topology():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "nginx", "desk",
                             "rasa1", "rasa2", "actions1", "actions2"}
    for number in (1, 2):
        rasa = services[f"rasa{number}"]
        assert "python -m rasa_server run" in rasa["command"]
        assert "--endpoints deploy/endpoints.yml" in rasa["command"]
        assert "--credentials deploy/credentials.yml" in rasa["command"]
        assert rasa["environment"]["ACTION_ENDPOINT_URL"] == f"http://actions{number}:5055/webhook"
        assert rasa["environment"]["TRACKER_STORE_URL"].startswith("postgresql://")
        assert "ports" not in rasa, "Rasa is reached through nginx only"
    assert services["desk"]["environment"]["DESK_DATABASE_URL"].startswith("postgresql://")
    assert list(services["nginx"]["ports"]) == ["80:80"]


def test_deploy_endpoints_share_state_between_processes():
    endpoints = yaml.safe_load((DEPLOY / "endpoints.yml").read_text(encoding="utf-8"))
    assert endpoints["tracker_store"]["type"] == "rasa_server.tracker_store.TunedSQLTrackerStore"
    assert endpoints["lock_store"]["type"] == "rasa_server.lock_store.AtomicRedisLockStore"
    assert endpoints["action_endpoint"]["enable_selective_domain"] is True
    credentials = yaml.safe_load((DEPLOY / "credentials.yml").read_text(encoding="utf-8"))
    assert credentials["channels.masked.MaskedSocketIOInput"]["redis_url"] == "${SOCKETIO_REDIS_URL}"


def test_no_secret_is_written_into_the_deployment_files():
    for path in (p for p in DEPLOY.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            match = re.search(r"(TOKEN|PASSWORD|SECRET_KEY)\w*:\s*(\S+)", line)
            if match:
                assert match.group(2).startswith("${"), f"{path.name}: {line.strip()}"


@pytest.mark.skipif(not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()),
                    reason="scripts/system_packages.sh installs nginx")
def test_nginx_configuration_is_valid(tmp_path):
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    # Outside compose the service names do not resolve and port 80 may be taken.
    for host in ("rasa1", "rasa2", "desk"):
        conf = conf.replace(f"server {host}:", "server 127.0.0.1:")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    conf = conf.replace("listen 8081;", f"listen 127.0.0.1:{free_port()};")
    conf = conf.replace("events {", f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{", 1)
    (tmp_path / "nginx.conf").write_text(conf, encoding="utf-8")
    done = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-c",
                           str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def dockerignore_patterns(text: str) -> list:
    """The patterns of a .dockerignore (comments and blank lines dropped; ``!`` kept)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _pattern_regex(pattern: str) -> "re.Pattern[str]":
    """Docker's matching: ``*`` within one path segment, ``**`` across segments."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def copied(paths: list, patterns: list) -> list:
    """The paths ``COPY . /app`` takes: a pattern excludes a path or any folder above it,
    the last matching pattern wins and ``!pattern`` takes a path back."""
    rules = [(p.startswith("!"), _pattern_regex(p.lstrip("!").strip("/"))) for p in patterns]
    kept = []
    for path in paths:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negated, regex in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                excluded = not negated
        if not excluded:
            kept.append(path)
    return kept


LEAKS = [".env", "desk.db", "rasa_tracker.db", "rasa_tracker.db-wal", "var/outbox.sqlite",
         "var/widget_presence.sqlite", ".venv/bin/python", "web/node_modules/rasa-webchat/lib/index.js",
         "actions/__pycache__/handoff.cpython-310.pyc", ".git/config", "results/bench/bench.json"]
NEEDED = ["actions/handoff.py", "support_desk/templates/case.html", "models/pos1000.tar.gz",
          "domain/core.yml", "web/package-lock.json", "pyproject.toml", "deploy/endpoints.yml"]


def test_the_image_takes_no_secret_database_or_local_state():
    patterns = dockerignore_patterns((DEPLOY.parent / ".dockerignore").read_text(encoding="utf-8"))
    assert copied(LEAKS + NEEDED, patterns) == NEEDED


def test_the_image_file_list_of_this_checkout_has_no_leak():
    root = DEPLOY.parent
    patterns = dockerignore_patterns((root / ".dockerignore").read_text(encoding="utf-8"))
    taken = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder).relative_to(root)
        # A folder the ignore file excludes is not entered (as Docker does; .venv is 2.7 GB).
        dirs[:] = [d for d in dirs if copied([str(here / d)], patterns)]
        taken += copied([str(here / n) for n in names], patterns)
    leaked = [f for f in taken if f == ".env" or f.endswith((".db", ".sqlite", ".pyc")) or f.startswith((".venv/", "var/"))]
    assert leaked == []
    assert "actions/handoff.py" in taken
