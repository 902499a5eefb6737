"""The production description (deploy/) matches what `make bench` runs, and its nginx
configuration is valid for Debian's nginx."""
from __future__ import annotations

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
    for path in DEPLOY.iterdir():
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
