"""Processes the benchmark starts on 127.0.0.1 and stops by PID: Rasa, the action server,
the support desk, Redis, nginx (PostgreSQL comes from tests/pg_server.py).

Each ``Service`` keeps its log in the run's folder and reports the resident memory of its
process tree, so the benchmark can sample peak RSS per process while the load runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RASA = str(VENV_BIN / "rasa")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    """Resident memory of one process in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds(stat: str = "/proc/stat") -> float:
    """CPU seconds every core of the machine has spent busy since boot: the first line of
    ``/proc/stat`` minus its idle and I/O-wait columns (guest time is already in user)."""
    with open(stat, encoding="ascii") as handle:
        fields = [int(value) for value in handle.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> List[int]:
    """Direct children of a process (Sanic workers are children of `rasa run`)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return [int(part) for part in handle.read().split()]
    except FileNotFoundError:
        return []


def descendants(pid: int) -> List[int]:
    """A process and all its descendants (PostgreSQL's backends, Sanic's workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children(current))
    return found


class Service:
    """One long-running process with its log file; started, awaited, measured, stopped."""

    def __init__(self, name: str, args: List[str], log_dir: Path, env: Optional[Dict[str, str]] = None, cwd: Path = ROOT) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: Optional[subprocess.Popen] = None
        self.started_at = 0.0

    def start(self) -> "Service":
        self.started_at = time.perf_counter()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_http(self, url: str, seconds: float = 180, expect=lambda status: status < 500) -> None:
        """Poll ``url`` until it answers; fail with the log's tail if the process dies."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if expect(response.status):
                        return
            except urllib.error.HTTPError as error:
                if expect(error.code):
                    return
            except OSError:
                pass
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")
            time.sleep(0.2)

    def rss(self) -> Dict[str, int]:
        """RSS in KiB of this process and of each child worker, keyed by a readable name."""
        if not self.alive():
            return {}
        found = {self.name: rss_kib(self.pid)}
        for number, child in enumerate(children(self.pid), start=1):
            found[f"{self.name}/worker{number}"] = rss_kib(child)
        return found

    def cpu(self) -> float:
        """CPU seconds used by this process and every process under it."""
        if not self.alive():
            return 0.0
        return sum(cpu_seconds(pid) for pid in descendants(self.pid))

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the process group this service started (its workers too), by PID."""
        if not self.alive():
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(10)
        except ProcessLookupError:
            pass


def redis_server(log_dir: Path) -> "tuple[Service, str]":
    """Debian's redis-server on a free loopback port, no persistence; returns its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    service = Service(
        "redis",
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        log_dir,
    ).start()
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return service, f"redis://127.0.0.1:{port}"
        except OSError as error:
            if not service.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"redis did not start:\n{service.tail()}") from error
            time.sleep(0.1)


NGINX_CONF = """\
# Written by bench/servers.py: nginx in front of {count} Rasa processes.
worker_processes 1;
pid {pid};
error_log {log_dir}/nginx-error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {log_dir}/nginx-body;
    proxy_temp_path {log_dir}/nginx-proxy;
    fastcgi_temp_path {log_dir}/nginx-fastcgi;
    uwsgi_temp_path {log_dir}/nginx-uwsgi;
    scgi_temp_path {log_dir}/nginx-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream rasa {{
        {balance}
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 1m;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_read_timeout 60s;
        location /socket.io/ {{
            proxy_pass http://rasa;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
        # Everything else reuses kept-alive connections to Rasa (deploy/nginx.conf does the same).
        location / {{ proxy_pass http://rasa; proxy_set_header Connection ""; }}
    }}
}}
"""


def nginx(upstream_ports: List[int], log_dir: Path, balance: str = "least_conn;") -> "tuple[Service, str]":
    """Debian's nginx on a free loopback port balancing over the given Rasa ports."""
    port = free_port()
    conf = log_dir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            count=len(upstream_ports),
            pid=log_dir / "nginx.pid",
            log_dir=log_dir,
            port=port,
            balance=balance,
            servers="\n".join(f"        server 127.0.0.1:{p};" for p in upstream_ports),
        )
    )
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    service = Service("nginx", [binary, "-c", str(conf), "-p", str(log_dir)], log_dir).start()
    return service, f"http://127.0.0.1:{port}"
