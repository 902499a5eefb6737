"""Knowledge files read again when they change, so an operator's edit in the console is in
the next answer without restarting the action server or the desk.

``@reread_when_changed()`` caches what a loader returned for its arguments and calls it
again once the file (the first argument, or the ``files`` given) has another modification
time, size or inode; ``os.replace`` of an edited file always gives a new inode. One
``os.stat`` per call: microseconds, against the YAML parse it saves.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

T = TypeVar("T")
Stamp = Optional[Tuple[int, int, int]]


def file_stamp(path: Path) -> Stamp:
    """What changes when the file is written: modification time, size, inode (None if missing)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)


def reread_when_changed(*files: Path) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Cache a loader's result per arguments until its file changes. Without ``files`` the
    loader's first argument is the file. The wrapped loader keeps ``cache_clear()``."""

    def wrap(load: Callable[..., T]) -> Callable[..., T]:
        cache: Dict[Tuple[Any, ...], Tuple[Tuple[Stamp, ...], T]] = {}
        lock = threading.Lock()
        signature = inspect.signature(load)

        @functools.wraps(load)
        def loader(*args: Any) -> T:
            # Defaults filled in: ``load_regions()`` is ``load_regions(REGIONS_FILE)``.
            args = _with_defaults(signature, args)
            watched = files or (Path(args[0]),)
            stamps = tuple(file_stamp(path) for path in watched)
            with lock:
                hit = cache.get(args)
            if hit is not None and hit[0] == stamps:
                return hit[1]
            value = load(*args)
            with lock:
                cache[args] = (stamps, value)
            return value

        loader.cache_clear = cache.clear  # type: ignore[attr-defined]
        return loader

    return wrap


def _with_defaults(signature: inspect.Signature, args: Tuple[Any, ...]) -> Tuple[Any, ...]:
    bound = signature.bind(*args)
    bound.apply_defaults()
    return tuple(bound.arguments.values())
