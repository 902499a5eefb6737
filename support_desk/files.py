"""Files the desk writes for the rest of the project to read (the reviewed NLU examples,
the knowledge data): replaced whole, one writer at a time."""

from __future__ import annotations

import asyncio
import fcntl
import os
import tempfile
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, AsyncIterator, Iterator


class FileUnwritable(OSError):
    """The file could not be written (a full disk, a read-only folder); nothing was saved."""


def write_atomically(path: Path, content: str) -> None:
    """Replace the file in one step (a temporary file in the same directory, then
    ``os.replace``): a reader sees the old file or the new one, never half of one. The new
    file keeps the old one's permissions (0644 for a new one: mkstemp's 0600 would hide
    training and knowledge data from the other processes' users)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as problem:
        raise FileUnwritable(f"{path.name} cannot be written ({problem.strerror or problem})") from problem
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as problem:
        Path(temporary).unlink(missing_ok=True)
        raise FileUnwritable(f"{path.name} cannot be written ({problem.strerror or problem})") from problem
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<file>.lock`` beside ``path`` (blocking): two desk
    processes on this host write the file one after the other."""
    with _lock_file(path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _lock_file(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path.with_name(f".{path.name}.lock"), "a")
    except OSError as problem:
        raise FileUnwritable(f"{path.name} cannot be written ({problem.strerror or problem})") from problem


@asynccontextmanager
async def locked_async(path: Path) -> AsyncIterator[None]:
    """``locked`` for a coroutine: the wait for the lock does not hold up the event loop."""
    with _lock_file(path) as lock:
        await asyncio.get_running_loop().run_in_executor(None, fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
