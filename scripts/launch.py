"""How each process of the stack starts: the Procfile, and only the Procfile.

``make run`` runs its lines under supervisord (``scripts/supervise.py``). The real-process
tests start the same lines through :func:`command`, which changes only the values of the
flags a test must move (its port, its model or credentials file, its token), so a test's
Rasa is production's Rasa (``python -m rasa_server run`` with the runtime fixes), started
with production's flags.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
VENV_PYTHON = ".venv/bin/python"
_UNEXPANDED = re.compile(r"\$\{?\w")


def procfile(path: Path = PROCFILE) -> Dict[str, str]:
    """``name: command`` lines of a Procfile, in order."""
    processes: Dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, command_line = line.partition(":")
        if sep and name.strip() and not line.lstrip().startswith("#"):
            processes[name.strip()] = command_line.strip()
    return processes


def command(name: str, **flags: str) -> List[str]:
    """The Procfile's ``name`` line as an argument list, with the given flags' values set.

    ``command("rasa", port="5123", credentials="/tmp/c.yml")`` sets ``--port`` and
    ``--credentials`` (underscores become dashes), in either form the line writes
    (``--port VALUE`` or ``--auth-token=VALUE``); a flag the line lacks is an error, so a
    test cannot start something production does not. The venv's python is this
    interpreter. A ``$VARIABLE`` left in the result (a value the caller must give) is an error.
    """
    line = procfile().get(name)
    if line is None:
        raise KeyError(f"no process {name!r} in the Procfile")
    argv = shlex.split(line)
    argv = [sys.executable if word == VENV_PYTHON else word for word in argv]
    for flag, value in flags.items():
        option = "--" + flag.replace("_", "-")
        joined = [i for i, word in enumerate(argv) if word.startswith(option + "=")]
        if joined:
            # --auth-token=VALUE: a value that starts with "-" is not read as another option
            argv[joined[0]] = f"{option}={value}"
        elif option in argv:
            argv[argv.index(option) + 1] = str(value)
        else:
            raise ValueError(f"the Procfile's {name} line has no {option}")
    unexpanded = [word for word in argv if _UNEXPANDED.search(word)]
    if unexpanded:
        raise ValueError(f"give a value for {unexpanded} of the Procfile's {name} line")
    return argv
