"""Database URLs, engines and migrations for the desk.

Operators give one URL (``DESK_DATABASE_URL``): ``sqlite:///desk.db`` on one machine,
``postgresql://user:pw@host/db`` at scale. The service runs on the asyncio drivers
(aiosqlite, asyncpg); alembic migrates with the synchronous ones.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg2"}


def _backend(url: str) -> str:
    backend = make_url(url.replace("postgres://", "postgresql://", 1)).get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return backend


def async_url(url: str) -> str:
    """The URL with the asyncio driver the service uses."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return str(parsed.set(drivername=_ASYNC_DRIVERS[_backend(url)]))


def sync_url(url: str) -> str:
    """The URL with the synchronous driver alembic uses."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return str(parsed.set(drivername=_SYNC_DRIVERS[_backend(url)]))


def create_engine(url: str) -> AsyncEngine:
    """An asyncio engine; SQLite gets foreign keys on and a busy timeout."""
    if _backend(url) == "sqlite":
        engine = create_async_engine(async_url(url), connect_args={"timeout": 15})

        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # noqa: ANN001
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_async_engine(async_url(url), pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    """Alembic configuration for this database (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the database to the newest schema; existing data is kept."""
    command.upgrade(alembic_config(url), "head")
