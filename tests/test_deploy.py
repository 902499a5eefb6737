"""The production description (deploy/) matches what `make bench` runs, its nginx
configuration is valid for Debian's nginx, and the WeChat channels' state is in a Redis
that keeps it across a restart (tried on a real redis-server with the deployed command)."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import redis.exceptions
import yaml

from bench.servers import Service, free_port
from channels.platform_state import RedisState

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_has_the_benchmarked_topology():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "channel-state", "nginx", "desk", "rasa1", "rasa2", "actions1", "actions2"}
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


def test_train_switches_every_rasa_on_one_shared_models_folder():
    """The desk's Train sends PUT /model to each Rasa process by its own address (nginx would
    reach one of them), naming a file every Rasa sees at the same path; the knowledge operators
    edit is one copy for the desk, the action servers and the NLU's rules; the inbox's labels
    outlive an image update."""
    services = compose()["services"]
    desk = services["desk"]
    rasas = sorted(name for name in services if name.startswith("rasa"))
    assert desk["environment"]["RASA_MODEL_URLS"].split(",") == [f"http://{name}:5005" for name in rasas]
    for name in rasas:
        assert "--model models/pos1000.tar.gz" in services[name]["command"]  # /app/models, the volume
        assert "models:/app/models" in services[name]["volumes"] and "knowledge:/app/data/knowledge" in services[name]["volumes"]
    assert "models:/app/models" in desk["volumes"]
    for name in ("desk", "actions1", "actions2"):
        assert "knowledge:/app/data/knowledge" in services[name]["volumes"], name
    reviewed = Path(desk["environment"]["NLU_REVIEWED_FILE"])
    assert any(volume.split(":")[1] == str(reviewed.parent) for volume in desk["volumes"])
    assert {"models", "knowledge", "reviewed"} <= set(compose()["volumes"])


def test_deploy_endpoints_share_state_between_processes():
    endpoints = yaml.safe_load((DEPLOY / "endpoints.yml").read_text(encoding="utf-8"))
    assert endpoints["tracker_store"]["type"] == "rasa_server.tracker_store.TunedSQLTrackerStore"
    assert endpoints["lock_store"]["type"] == "rasa_server.lock_store.AtomicRedisLockStore"
    assert endpoints["action_endpoint"]["enable_selective_domain"] is True
    credentials = yaml.safe_load((DEPLOY / "credentials.yml").read_text(encoding="utf-8"))
    assert credentials["channels.masked.MaskedSocketIOInput"]["redis_url"] == "${SOCKETIO_REDIS_URL}"


def commented_block(text: str, header: str) -> dict:
    """A commented-out credentials block (``# header:`` and its ``#   `` lines), parsed."""
    lines = text.splitlines()
    start = lines.index(f"# {header}:")
    block = [lines[start][2:]]
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))[header]


def redis_flags(command: str) -> dict:
    """``redis-server --a b --c d`` as ``{"a": "b", "c": "d"}``."""
    words = shlex.split(command)
    assert words[0] == "redis-server"
    return {words[i][2:]: words[i + 1] for i in range(1, len(words), 2)}


def test_the_channels_durable_state_is_in_a_redis_that_persists_it():
    services = compose()
    state = services["services"]["channel-state"]
    flags = redis_flags(state["command"])
    assert (flags["appendonly"], flags["appendfsync"], flags["maxmemory-policy"]) == ("yes", "everysec", "noeviction")
    [volume] = state["volumes"]
    name, path = volume.split(":")
    assert path == "/data" and name in services["volumes"], "the redis image writes into /data"
    # The volatile Redis stays for locks and fan-out; nothing else uses the durable one.
    assert redis_flags(services["services"]["redis"]["command"])["appendonly"] == "no"
    users = [n for n, s in services["services"].items() if "channel-state" in str(s.get("environment", {}))]
    assert users == ["rasa1", "rasa2"]
    url = services["services"]["rasa1"]["environment"]["CHANNEL_STATE_REDIS_URL"]
    assert re.fullmatch(r"redis://channel-state:6379/\d+", url)
    credentials = (DEPLOY / "credentials.yml").read_text(encoding="utf-8")
    for channel in ("channels.wecom_kf.WeComKfInput", "channels.wecom.WeChatInput"):
        assert commented_block(credentials, channel)["redis_url"] == "${CHANNEL_STATE_REDIS_URL}"


def start_redis(command: str, directory: Path, port: int) -> Service:
    """Debian's redis-server with a deployed command's flags, on loopback, its files in
    ``directory`` (the volume)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [
        binary,
        *shlex.split(command)[1:],
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--protected-mode",
        "yes",
    ]
    return Service(f"redis-{port}", args, directory).start()


async def wait_for_redis(state: RedisState, service: Service) -> None:
    for _ in range(200):
        try:
            await state.redis.ping()
            return
        except redis.exceptions.ConnectionError:
            assert service.alive(), service.tail()
            await asyncio.sleep(0.1)
    raise AssertionError(f"redis did not start:\n{service.tail()}")


@pytest.mark.process  # starts redis-server (tests/harness/fixtures.py)
@pytest.mark.skipif(not shutil.which("redis-server"), reason="scripts/system_packages.sh installs redis-server")
@pytest.mark.parametrize("service_name, survives", [("channel-state", True), ("redis", False)])
async def test_a_held_message_and_the_cursor_survive_a_restart_of_the_channel_state_redis(tmp_path, service_name, survives):
    """The deployed command, restarted as compose and Kubernetes restart it (SIGTERM); the
    volatile Redis loses both, which is why the channels do not use it."""
    command = compose()["services"][service_name]["command"]
    port = free_port()
    held = {
        "user": "wkKF01:wmMERCHANT",
        "msgid": "desk-42-0",
        "text": "请重启终端",
        "desk_message_id": 42,
        "body": {"msgtype": "text"},
        "held": 1,
    }
    service = start_redis(command, tmp_path, port)
    state = RedisState(f"redis://127.0.0.1:{port}/0", "wecom_kf")
    try:
        await wait_for_redis(state, service)
        await state.hold(held["user"], held)
        await state.durable_put("cursor:wkKF01", "4gw7MepFLfgF2VC5npN")
        await state.close()
        service.stop()
        service = start_redis(command, tmp_path, port)
        state = RedisState(f"redis://127.0.0.1:{port}/0", "wecom_kf")
        await wait_for_redis(state, service)
        if survives:
            assert await state.durable_get("cursor:wkKF01") == "4gw7MepFLfgF2VC5npN"
            assert await state.take_held(held["user"]) == [held]
        else:
            assert await state.durable_get("cursor:wkKF01") is None
            assert await state.take_held(held["user"]) == []
    finally:
        await state.close()
        service.stop()


def test_no_secret_is_written_into_the_deployment_files():
    for path in (p for p in DEPLOY.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            match = re.search(r"(TOKEN|PASSWORD|SECRET_KEY)\w*:\s*(\S+)", line)
            if match:
                assert match.group(2).startswith("${"), f"{path.name}: {line.strip()}"


@pytest.mark.skipif(not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()), reason="scripts/system_packages.sh installs nginx")
def test_nginx_configuration_is_valid(tmp_path):
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    # Outside compose the service names do not resolve and port 80 may be taken.
    for host in ("rasa1", "rasa2", "desk"):
        conf = conf.replace(f"server {host}:", "server 127.0.0.1:")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    conf = conf.replace("listen 8081;", f"listen 127.0.0.1:{free_port()};")
    conf = conf.replace("events {", f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{", 1)
    (tmp_path / "nginx.conf").write_text(conf, encoding="utf-8")
    done = subprocess.run(
        [shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
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


LEAKS = [
    ".env",
    "desk.db",
    "rasa_tracker.db",
    "rasa_tracker.db-wal",
    "var/outbox.sqlite",
    "var/widget_presence.sqlite",
    ".venv/bin/python",
    "web/node_modules/rasa-webchat/lib/index.js",
    "actions/__pycache__/handoff.cpython-310.pyc",
    ".git/config",
    "results/bench/bench.json",
]
NEEDED = [
    "actions/handoff.py",
    "support_desk/templates/case.html",
    "models/pos1000.tar.gz",
    "domain/core.yml",
    "web/package-lock.json",
    "pyproject.toml",
    "deploy/endpoints.yml",
]


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
