"""Agent accounts: argon2 password hashes, the first account, and a CLI for more.

python -m support_desk.accounts create <username> [--display-name 客服小王] [--operator]
    # prints a generated password; the display name is what merchants see; operators
    # also post, confirm and close incidents
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from support_desk.config import load_settings
from support_desk.db import create_engine, migrate
from support_desk.store import DeskStore

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _HASHER.hash(password)


def verify_password(password_hash: Optional[str], password: str) -> bool:
    """True when the password matches; unknown users cost the same time."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


ROLES = ("agent", "operator")


async def create_agent(store: DeskStore, username: str, display_name: Optional[str] = None, role: str = "agent") -> str:
    """Create an agent (or operator) with a generated password and return the password."""
    password = secrets.token_urlsafe(12)
    await store.add_agent(username, hash_password(password), display_name, role)
    return password


async def ensure_first_agent(store: DeskStore) -> Optional[str]:
    """On the first run create ``admin`` (an operator) and return its password (None afterwards)."""
    if await store.agent_count():
        return None
    return await create_agent(store, "admin", role="operator")


async def _main(username: str, display_name: Optional[str], role: str) -> int:
    settings = load_settings()
    migrate(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        password = await create_agent(DeskStore(engine), username, display_name, role)
    finally:
        await engine.dispose()
    print(f"{role} {username!r} created; password (shown once): {password}")
    return 0


def main() -> int:
    """Command line: ``create <username> [--display-name NAME] [--operator]``."""
    parser = argparse.ArgumentParser(prog="python -m support_desk.accounts")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create an agent account")
    create.add_argument("username")
    create.add_argument("--display-name", help="the name merchants see, e.g. 客服小王 (default: the username)")
    create.add_argument("--operator", action="store_true", help="may also post, confirm and close incidents")
    args = parser.parse_args()
    display_name = (args.display_name or "").strip()[:64] or None
    return asyncio.run(_main(args.username, display_name, "operator" if args.operator else "agent"))


if __name__ == "__main__":
    sys.exit(main())
