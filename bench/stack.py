"""The stacks under test: ours (Rasa + action server + desk, production settings) and the
stock Rasa starter bot, each started on loopback ports in the run's folder.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import urllib.request
from urllib.parse import quote
import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import yaml

from bench.servers import ROOT, Service, free_port, nginx
from scripts.launch import command

# TensorFlow sizes its thread pools to the machine; on two cores with a server process per
# core, one thread each avoids oversubscription.
TF_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_INTER_OP_PARALLELISM_THREADS": "1",
    "TF_INTRA_OP_PARALLELISM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "RASA_TELEMETRY_ENABLED": "false",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
}

# The Redis lock store of deploy/endpoints.yml: Rasa's ticket lock in two atomic round trips.
LOCK_STORE = "rasa_server.lock_store.AtomicRedisLockStore"


def first_answer(url: str, token: str, sender: str, message: str, seconds: float = 240) -> float:
    """Wait until Rasa reports a loaded model, then until it has handled one message
    (200 with a JSON list: the stock starter bot may choose to say nothing). Returns the
    moment it did (perf_counter)."""
    deadline = time.monotonic() + seconds
    body = json.dumps({"sender": sender, "message": message}).encode()
    loaded = False
    while True:
        try:
            if not loaded:
                with urllib.request.urlopen(f"{url}/status?token={token}", timeout=10) as response:
                    loaded = bool(json.loads(response.read()).get("model_id"))
            if loaded:
                request = urllib.request.Request(
                    url.rstrip("/") + "/webhooks/rest/webhook", data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    if isinstance(json.loads(response.read()), list):
                        return time.perf_counter()
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer from {url} within {seconds} s")
        time.sleep(0.1)


class RasaStack:
    """Rasa processes (each with its own action server) plus whatever they need.

    ``rasa_processes`` > 1 puts nginx in front and needs a shared tracker store and a
    Redis lock store, as a deployment on several hosts would.
    """

    def __init__(
        self,
        run_dir: Path,
        model: Path,
        tracker_url: Optional[str],
        lock_store_url: Optional[str] = None,
        rasa_processes: int = 1,
        with_actions: bool = True,
        behind_nginx: bool = False,
        desk_url: Optional[str] = None,
        desk_token: str = "",
        project: Path = ROOT,
        name: str = "rasa",
        launcher: Optional[List[str]] = None,
        endpoints_file: str = "endpoints.yml",
        credentials_file: str = "credentials.yml",
        extra_env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.run_dir = run_dir
        self.model = model
        self.tracker_url = tracker_url
        self.lock_store_url = lock_store_url
        self.rasa_processes = rasa_processes
        self.with_actions = with_actions
        self.behind_nginx = behind_nginx or rasa_processes > 1
        self.desk_url = desk_url
        self.desk_token = desk_token
        self.project = project
        self.name = name
        # Ours runs the Procfile's lines (scripts/launch.py: Rasa's CLI with the runtime
        # fixes, production's flags); the baseline runs stock `rasa` with the same flags.
        self.launcher = launcher
        self.endpoints_file = endpoints_file
        self.credentials_file = credentials_file
        self.extra_env = extra_env or {}
        self.process_urls: List[str] = []
        self.token = secrets.token_hex(16)  # a leading "-" would read as an option of rasa run
        self.services: List[Service] = []
        self.url = ""
        self.cold_start_s = 0.0

    def _endpoints(self, action_port: Optional[int]) -> Path:
        """The project's own endpoints.yml with this run's addresses filled in."""
        source = self.project / self.endpoints_file
        endpoints = yaml.safe_load(source.read_text(encoding="utf-8")) if source.exists() else None
        endpoints = endpoints or {}
        if action_port:
            endpoints.setdefault("action_endpoint", {})["url"] = f"http://127.0.0.1:{action_port}/webhook"
        if self.tracker_url:
            store = endpoints.get("tracker_store") or {"type": "SQL"}
            endpoints["tracker_store"] = {**store, "url": self.tracker_url}
        if self.lock_store_url:
            host, port = self.lock_store_url.split("//", 1)[1].split(":")
            endpoints["lock_store"] = {**(endpoints.get("lock_store") or {}), "type": LOCK_STORE, "url": host, "port": int(port)}
        path = self.run_dir / f"{self.name}-endpoints-{action_port or 0}.yml"
        path.write_text(yaml.safe_dump(endpoints), encoding="utf-8")
        return path

    def _rasa_args(self, endpoints: Path, port: int) -> List[str]:
        """Ours: the Procfile's ``rasa`` line with this run's model, files, token and port."""
        values = {"model": str(self.model), "endpoints": str(endpoints), "auth_token": self.token, "port": str(port)}
        if self.launcher is None:
            return command("rasa", credentials=str(self.project / self.credentials_file), **values)
        args = [
            *self.launcher,
            "run",
            "--model",
            values["model"],
            "--endpoints",
            values["endpoints"],
            "--enable-api",
            f"--auth-token={self.token}",
            "--interface",
            "127.0.0.1",
            "--port",
            values["port"],
        ]
        if (self.project / self.credentials_file).exists():
            args += ["--credentials", str(self.project / self.credentials_file)]
        return args

    def start(self) -> "RasaStack":
        """Start everything, then wait for the first answer (that time is the cold start)."""
        started = time.perf_counter()
        rasa_ports = []
        for number in range(1, self.rasa_processes + 1):
            action_port = free_port() if self.with_actions else None
            if action_port:
                env = {
                    **TF_ENV,
                    "DESK_URL": self.desk_url or "",
                    "DESK_API_TOKEN": self.desk_token,
                    "OUTBOX_FILE": str(self.run_dir / f"outbox-{number}.sqlite"),
                }
                actions = Service(
                    f"actions{number}", command("actions", port=str(action_port)), self.run_dir, env=env, cwd=self.project
                ).start()
                self.services.append(actions)
            port = free_port()
            rasa_ports.append(port)
            args = self._rasa_args(self._endpoints(action_port), port)
            # endpoints.yml's event broker: the desk's address, or nothing pushed.
            env = {**TF_ENV, "DESK_URL": self.desk_url or "", "DESK_API_TOKEN": self.desk_token, **self.extra_env}
            self.services.append(Service(f"{self.name}{number}", args, self.run_dir, env=env, cwd=self.project).start())
        for service in self.services:
            if service.name.startswith("actions"):
                service.wait_http(service_url(service) + "/health")
        self.process_urls = [f"http://127.0.0.1:{port}" for port in rasa_ports]
        if self.behind_nginx:
            balancer, self.url = nginx(rasa_ports, self.run_dir)
            self.services.append(balancer)
        else:
            self.url = f"http://127.0.0.1:{rasa_ports[0]}"
        for port in rasa_ports:
            answered = first_answer(f"http://127.0.0.1:{port}", self.token, f"{self.name}-warmup-{port}", "你好")
        self.cold_start_s = answered - started
        return self

    def tracker(self, sender: str) -> dict:
        """The conversation's tracker through Rasa's HTTP API (token required)."""
        url = f"{self.url}/conversations/{quote(sender, safe='')}/tracker?token={self.token}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def service_url(service: Service) -> str:
    port = service.args[service.args.index("--port") + 1]
    return f"http://127.0.0.1:{port}"


def desk_service(
    run_dir: Path,
    database_url: str,
    token: str,
    port: Optional[int] = None,
    rasa_url: str = "http://127.0.0.1:9",
    rasa_token: str = "",
    extra_env: Optional[Dict[str, str]] = None,
) -> "tuple[Service, str]":
    """The support desk on a free port with its own database (Rasa unreachable unless given);
    ``extra_env`` adds settings (the retraining part's models folder and reviewed file)."""
    port = port or free_port()
    env = {
        "DESK_PORT": str(port),
        "DESK_API_TOKEN": token,
        "DESK_DATABASE_URL": database_url,
        "DESK_SECRET_KEY": secrets.token_urlsafe(32),
        "RASA_URL": rasa_url,
        "RASA_AUTH_TOKEN": rasa_token,
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
        **(extra_env or {}),
    }
    service = Service("desk", command("desk"), run_dir, env=env).start()
    url = f"http://127.0.0.1:{port}"
    service.wait_http(url + "/health")
    return service, url


@contextlib.contextmanager
def one_host(folder: Path, model: Path, database_url: str, token: str, name: str) -> Iterator[Tuple[RasaStack, Service, str]]:
    """Rasa with its action server and the desk on one host, each told the other's address
    (the handoff and surge parts); ``(stack, desk, desk_url)``, everything stopped on exit."""
    desk_port = free_port()
    with contextlib.ExitStack() as running:
        stack = RasaStack(
            folder, model, f"sqlite:///{folder / 'tracker.db'}", desk_url=f"http://127.0.0.1:{desk_port}", desk_token=token, name=name
        )
        running.callback(stack.stop)
        stack.start()
        desk, desk_url = desk_service(folder, database_url, token, port=desk_port, rasa_url=stack.url, rasa_token=stack.token)
        running.callback(desk.stop)
        yield stack, desk, desk_url
