"""``make run``'s supervisor: the Procfile's processes under supervisord.

    python scripts/supervise.py run      # start everything; Ctrl-C stops all
    python scripts/supervise.py status   # which process runs, since when, restarts

A process that dies is started again at once; one that dies again within ``startsecs``
backs off (1 s, 2 s, 3 s … up to ``startretries`` tries). Every exit and restart is printed
with the processes' own output. The Procfile stays the one list of processes (each line
runs through ``sh -c 'exec …'`` so its ``$VARIABLES`` expand and the supervised PID is the
program's own); the configuration is written to ``$RUN_DIR/supervisord.conf`` (default
``var/run``) at each start.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT))  # run as a script: scripts.launch is the repository's

from scripts.launch import procfile  # noqa: E402

# Rasa needs ~30 s to load its model; "started" only means it did not die within 5 s.
POLICY = {
    "autorestart": "true",
    "startsecs": "5",
    "startretries": "10",
    "stopasgroup": "true",
    "killasgroup": "true",
    "stopwaitsecs": "20",
    "redirect_stderr": "true",
    "stdout_logfile": "/dev/stdout",
    "stdout_logfile_maxbytes": "0",
}


def config(processes: Dict[str, str], run_dir: Path) -> str:
    """The supervisord configuration for these processes (``%`` escaped for its expansion)."""
    lines: List[str] = [
        # In the foreground supervisord prints its log itself; a log file would print it twice.
        "[supervisord]",
        "nodaemon=true",
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        "loglevel=info",
        f"pidfile={run_dir / 'supervisord.pid'}",
        f"childlogdir={run_dir}",
        f"directory={ROOT}",
        "",
        "[unix_http_server]",
        f"file={run_dir / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run_dir / 'supervisor.sock'}",
        "",
    ]
    for priority, (name, command) in enumerate(processes.items(), start=1):
        shell = "/bin/sh -c " + shlex.quote(f"exec {command}")
        lines += [f"[program:{name}]", f"command={shell.replace('%', '%%')}", f"directory={ROOT}", f"priority={priority * 10}"]
        lines += [f"{key}={value}" for key, value in POLICY.items()] + [""]
    return "\n".join(lines)


def main(argv: List[str]) -> None:
    """Write the configuration and hand over to supervisord (or supervisorctl)."""
    run_dir = Path(os.environ.get("RUN_DIR") or ROOT / "var" / "run").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / "supervisord.conf"
    command = argv[1] if len(argv) > 1 else "run"
    if command == "run":
        conf.write_text(config(procfile(), run_dir), encoding="utf-8")
        os.execv(BIN / "supervisord", ["supervisord", "-c", str(conf)])
    elif command == "status":
        os.execv(BIN / "supervisorctl", ["supervisorctl", "-c", str(conf), "status"])
    else:
        raise SystemExit(f"usage: {argv[0]} run|status")


if __name__ == "__main__":
    main(sys.argv)
