"""Create the local ``.env`` with fresh secrets on first run; never overwrite one.

The names are the design's (RASA_AUTH_TOKEN, DESK_API_TOKEN, DESK_SECRET_KEY); values
are random per machine and the file is git-ignored.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

SECRET_NAMES = ("RASA_AUTH_TOKEN", "DESK_API_TOKEN", "DESK_SECRET_KEY")


def ensure_env(path: Path) -> list:
    """Append any missing secret to ``path``; return the names that were added."""
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.split("=", 1)[0].strip() for line in existing.splitlines() if "=" in line}
    missing = [name for name in SECRET_NAMES if name not in present]
    if missing:
        with path.open("a", encoding="utf-8") as handle:
            if existing and not existing.endswith("\n"):
                handle.write("\n")
            for name in missing:
                handle.write(f"{name}={secrets.token_hex(32)}\n")  # hex: never a leading "-" that rasa run would read as an option
        path.chmod(0o600)
    return missing


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    added = ensure_env(target)
    if added:
        print(f"generated {', '.join(added)} in {target}")
