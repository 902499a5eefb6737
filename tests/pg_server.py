"""A throwaway PostgreSQL server on 127.0.0.1 for the store tests.

Debian's postgresql package provides the binaries (``.ci/run`` installs it); the server
runs as the ``postgres`` system user in a temporary directory and is stopped by PID.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from bench.servers import free_port


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if not found or not found[-1]:
        raise RuntimeError(f"PostgreSQL's {name} not found: apt-get install postgresql")
    return found[-1]


def _as_postgres(args: list) -> list:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PostgresServer:
    """initdb + postgres on a free loopback port; ``url`` is a SQLAlchemy URL."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="desk-pg-"))
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "PostgresServer":
        data = self.directory / "data"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        subprocess.run(
            _as_postgres([_binary("initdb"), "-D", str(data), "-U", "desk", "--auth=trust", "-E", "UTF8", "--locale=C"]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._serve()
        return self

    def _serve(self) -> None:
        """Start postgres on the data directory and port; return once it takes logins."""
        log = (self.directory / "server.log").open("ab")
        self.process = subprocess.Popen(
            _as_postgres(
                [
                    _binary("postgres"),
                    "-D",
                    str(self.directory / "data"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.directory),
                    "-F",
                ]
            ),
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 60
        # pg_isready says yes once logins are taken (a bare accept() comes a moment sooner).
        while (
            subprocess.run([_binary("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL).returncode
            != 0
        ):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start")
            time.sleep(0.2)

    def halt(self) -> None:
        """Stop the server, keeping its data and port (``resume`` starts it again)."""
        # pg_ctl's fast shutdown ends the desk's open sessions and returns once the server is
        # gone. A SIGTERM to runuser (smart shutdown, waiting for the desk's pooled
        # connections) could leave the old server holding the data directory while the
        # restart began: seen once in CI as "timed out waiting for PostgreSQL".
        subprocess.run(
            _as_postgres([_binary("pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "-t", "60", "stop"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        assert self.process is not None
        self.process.wait(30)

    def resume(self) -> None:
        """Start the halted server again on the same data and port."""
        self._serve()

    def create_database(self, name: str) -> str:
        """Create a database and return its SQLAlchemy URL."""
        subprocess.run(
            [_binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "desk", name],
            check=True,
        )
        return f"postgresql://desk@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        shutil.rmtree(self.directory, ignore_errors=True)
