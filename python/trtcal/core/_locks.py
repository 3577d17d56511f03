"""Exclusive locks on the files a run writes, so two runs never write the same outputs or
checkpoint at once: the second one fails at once, naming the first one's pid.

A lock is ``fcntl.flock`` on a hidden file beside the locked path,
``.<name>.trtcal-lock``, holding the holder's pid. The kernel drops the lock when the holder
exits, however it exits (``kill -9`` included), so a lock is never stale; the lock file is
removed when released.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

try:
    import fcntl
except ImportError:  # Windows: no locking (documented in docs/reliability.md)
    fcntl = None  # type: ignore[assignment]


class LockedError(RuntimeError):
    """Another process holds the lock of a file this run would write."""


def lock_path(path: str) -> str:
    """The lock file of ``path``."""
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{base}.trtcal-lock")


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        return text if text.isdigit() else "unknown"
    except OSError:
        return "unknown"


def _acquire(path: str, what: str) -> Tuple[int, str]:
    lp = lock_path(path)
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _holder(fd)
            os.close(fd)
            raise LockedError(
                f"trtcal: another trtcal run (pid {pid}) is writing {what} {path}; wait for it to "
                "finish, or give this run other output and checkpoint paths"
            ) from None
        try:  # the holder may have removed the file between our open and our lock: lock the new one
            same = os.fstat(fd).st_ino == os.stat(lp).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd, lp
        os.close(fd)


@contextlib.contextmanager
def exclusive(paths: Iterable[Tuple[str, str]]) -> Iterator[List[str]]:
    """Holds an exclusive lock on each ``(path, what)`` for the block (``what`` names the path
    in the error: 'the checkpoint', 'the output', ...). Raises :class:`LockedError` at once when
    another process holds one. Yields the lock files."""
    held = _hold(paths)
    try:
        yield [lp for _, lp in held]
    finally:
        _release(held)


_local = threading.local()


def _scopes() -> List[List[List[Tuple[int, str]]]]:
    if not hasattr(_local, "scopes"):
        _local.scopes = []
    return _local.scopes


def _hold(paths: Iterable[Tuple[str, str]]) -> List[Tuple[int, str]]:
    held: List[Tuple[int, str]] = []
    if fcntl is None:
        return held
    seen = set()
    try:
        for path, what in paths:
            if not path:
                continue
            key = os.path.realpath(path)
            if key in seen:
                continue
            seen.add(key)
            try:
                held.append(_acquire(path, what))
            except OSError:  # a folder we cannot create files in: the preflight check names it
                continue
    except BaseException:
        _release(held)
        raise
    return held


def _release(held: List[Tuple[int, str]]) -> None:
    for fd, lp in reversed(held):
        with contextlib.suppress(OSError):
            os.unlink(lp)
        with contextlib.suppress(OSError):
            os.close(fd)
    held.clear()


def take(paths: Iterable[Tuple[Optional[str], str]]) -> None:
    """Locks each ``(path, what)`` (None paths skipped) until the innermost function decorated
    with :func:`released_on_return` returns or raises (or, outside one, until the process
    exits). Raises :class:`LockedError` at once when another process holds one."""
    held = _hold([(p, w) for p, w in paths if p])
    if _scopes():
        _scopes()[-1].append(held)


def released_on_return(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the locks :func:`take` takes during a call are released when it ends."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _scopes().append([])
        try:
            return fn(*args, **kwargs)
        finally:
            for held in _scopes().pop():
                _release(held)

    return wrapper
