"""Start the Procfile's processes on loopback ports and wait for them.

Every process a test starts runs the Procfile's production command line
(``scripts.launch.command``): only the values of the flags a test must move (port, model,
credentials, token) differ, the rest of its settings come in through the environment, as
under ``make run``.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from bench.servers import free_port
from scripts.launch import command

ROOT = Path(__file__).resolve().parent.parent.parent
MODEL = ROOT / "models" / "pos1000.tar.gz"
# A loaded 2-core machine (other checks running) loads a model slowly: a bound, not a timing.
START_SECONDS = 600

__all__ = ["MODEL", "ROOT", "free_port", "need_model", "spawn", "stop", "wait_for", "wait_until"]


def need_model(model: Path = MODEL) -> Path:
    """The trained model's path; fails with what to run when it is missing."""
    assert model.exists(), f"no trained model at {model}: run `make train` (make test does it first)"
    return model


def spawn(name: str, env: Dict[str, str], log: Optional[Path] = None, **flags: str) -> subprocess.Popen:
    """Start the Procfile's ``name`` line (flags set as ``scripts.launch.command`` sets them)
    in the repository, its output appended to ``log`` (or dropped)."""
    output: Any = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(command(name, **flags), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    finally:
        if log:
            output.close()  # the child holds its own descriptor


def wait_for(url: str, process: subprocess.Popen, what: str) -> None:
    """Poll a health URL until it answers; fail (and kill the process) if it dies or time runs out."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{what} did not start") from error
            time.sleep(0.2)


def stop(process: subprocess.Popen, seconds: float = 30) -> None:
    """SIGTERM by PID and wait (a process already gone is fine)."""
    if process.poll() is None:
        process.terminate()
        process.wait(seconds)


def wait_until(condition: Callable[[], Any], seconds: float = 90, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy and return it; fail after ``seconds`` (a bound,
    never a timing assertion)."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
