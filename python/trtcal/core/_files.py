"""Files that must never be half-written, and outputs that land as a set.

Every file trtcal writes goes through :func:`atomic_write` (or :func:`atomic_savez`,
:func:`save_onnx`): the bytes go to a temporary file in the target's own folder, named
``.<name>.trtcal-tmp-<pid>-<random>``, which is flushed, fsynced, renamed over the target and
the folder fsynced. An interruption (an exception, a full disk, a signal, ``kill -9``) leaves the
previous file intact, never a truncated one; a temporary file left by a killed process carries
its pid, and :func:`remove_stale_temps` deletes those whose process is gone.

Inside :func:`output_set` the renames are deferred: every file of the set is written to its
temporary first, and only when all were written are they renamed, one after the other; when
any write fails, every temporary is removed and every previous file is kept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import threading
from typing import IO, Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np

TEMP_TAG = ".trtcal-tmp-"
_TEMP_RE = re.compile(r"\.trtcal-tmp-(\d+)-([0-9a-f]{8})-")


def _host_tag() -> str:
    """8 hex digits of this host's name: on a shared file system, only this host's temporaries
    are judged by their pid."""
    import hashlib
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_tag() -> str:
    """The part of a temporary's name that says who writes it: ``.trtcal-tmp-<pid>-<host>-``."""
    return f"{TEMP_TAG}{os.getpid()}-{_host_tag()}-"


class OutputError(OSError):
    """A file trtcal writes could not be written (read-only folder, full disk, ...); the message
    names the file and says the previous file, if any, was kept."""

    def __str__(self) -> str:
        return str(self.strerror)


def _describe_oserror(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


def output_error(path: str, exc: OSError) -> OutputError:
    """An :class:`OutputError` naming ``path`` for the OSError met while writing it."""
    err = OutputError(
        exc.errno or errno.EIO,
        f"trtcal: cannot write {path}: {_describe_oserror(exc)} "
        f"(any previous {os.path.basename(path)} "
        "is kept unchanged)",
    )
    err.filename = path
    return err


def temp_path(path: str, suffix: str = "") -> Tuple[int, str]:
    """An open fd and the name of a new temporary file beside ``path`` (same folder, so the
    rename is atomic), named with this process's pid."""
    path = os.path.abspath(path)
    d, base = os.path.split(path)
    prefix = f".{base[:80]}{temp_tag()}"
    return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=d)


def fsync_dir(d: str) -> None:
    """fsync a folder (the rename of a file in it is then durable); a no-op where folders
    cannot be opened (Windows)."""
    try:
        fd = os.open(d or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Pending:
    """The temporaries of an :func:`output_set`, renamed together at its end."""

    def __init__(self) -> None:
        self.moves: List[Tuple[str, str]] = []  # (temporary, target)
        self.dirs: List[str] = []  # temporary folders to remove after the renames

    def commit(self) -> None:
        folders = set()
        for tmp, dst in self.moves:
            os.replace(tmp, dst)
            folders.add(os.path.dirname(dst))
        for d in self.dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)
        for d in sorted(folders):
            fsync_dir(d)

    def discard(self) -> None:
        for tmp, _ in self.moves:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for d in self.dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)


_state = threading.local()


def _pending() -> Optional[_Pending]:
    return getattr(_state, "pending", None)


@contextlib.contextmanager
def output_set() -> Iterator[None]:
    """Every :func:`atomic_write` inside the block goes to a temporary file; the temporaries are
    renamed over their targets together when the block ends without an error, and removed (the
    previous files kept) when it raises. Nested blocks join the outermost one."""
    if _pending() is not None:
        yield
        return
    pending = _Pending()
    _state.pending = pending
    try:
        yield
    except BaseException:
        _state.pending = None
        pending.discard()
        raise
    _state.pending = None
    try:
        pending.commit()
    except OSError as exc:
        pending.discard()
        raise output_error(pending.moves[0][1] if pending.moves else ".", exc) from None


def readable_path(path: str) -> str:
    """Where ``path``'s newest content can be read now: its temporary while an
    :func:`output_set` has not landed yet (so that a report can measure a Q/DQ model of the same
    set), else ``path`` itself."""
    pending = _pending()
    if pending is not None:
        target = os.path.abspath(path)
        for tmp, dst in reversed(pending.moves):
            if os.path.abspath(dst) == target:
                return tmp
    return path


def _finish(tmp: str, path: str, immediate: bool = False) -> None:
    """Renames ``tmp`` over ``path`` now, or at the end of the current :func:`output_set`."""
    pending = None if immediate else _pending()
    if pending is not None:
        pending.moves.append((tmp, path))
        return
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


Writer = Union[bytes, str, Callable[[IO[bytes]], None]]


def _open_temp(fd: int) -> IO[bytes]:
    """The file object a temporary is written through (the fault-injection tests replace it)."""
    return os.fdopen(fd, "wb")


def atomic_write(
    path: Union[str, "os.PathLike[str]"],
    content: Writer,
    *,
    encoding: str = "utf-8",
    opener: Optional[Callable[[int], IO[bytes]]] = None,
    immediate: bool = False,
) -> str:
    """Writes ``content`` (bytes, text, or a function that writes to a binary file object) to
    ``path`` atomically (see the module docstring). Returns ``path``.

    Raises
    ------
    OutputError
        When the file cannot be written (full disk, read-only folder, ...): the temporary is
        removed and the previous file kept. Other exceptions of ``content`` pass through, after
        the same clean-up.

    ``opener`` turns the temporary's fd into the file object (tests inject failing writers);
    ``immediate`` renames at once even inside an :func:`output_set` (checkpoints).
    """
    path = os.path.abspath(os.fspath(path))
    try:
        fd, tmp = temp_path(path)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        with (opener or _open_temp)(fd) as f:
            if isinstance(content, str):
                f.write(content.encode(encoding))
            elif isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        _finish(tmp, path, immediate)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OutputError):
            raise
        raise output_error(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_savez(path: str, prefix: str = "", immediate: bool = False, **arrays: np.ndarray) -> str:
    """``numpy.savez`` to ``path`` through :func:`atomic_write` (``prefix`` is kept for callers;
    temporaries are named by :func:`temp_path`). Inside an :func:`output_set` it lands with the
    set, unless ``immediate`` (checkpoints)."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(d, exist_ok=True)

    def write(f: IO[bytes]) -> None:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle

    return atomic_write(path, write, immediate=immediate)


def atomic_savefig(fig: Any, path: str, **kw: Any) -> str:
    """``fig.savefig`` to ``path`` atomically (the format from the extension, PNG by default)."""
    fmt = kw.pop("format", None) or (os.path.splitext(path)[1][1:].lower() or "png")
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **kw))


_ONNX_INLINE_LIMIT = 2_000_000_000  # protobuf's 2 GiB limit, with a margin


def save_onnx(
    model: Any, path: Union[str, "os.PathLike[str]"], external_data: Optional[bool] = None
) -> str:
    """``onnx.save`` atomically. A model of 2 GB or more (or ``external_data=True``) is written
    with its tensors in ``<name>.data`` beside it: both files are written in a temporary folder
    beside the target and renamed out of it (with the rest of an :func:`output_set`)."""
    import onnx

    path = os.path.abspath(os.fspath(path))
    if external_data is None:
        external_data = model.ByteSize() >= _ONNX_INLINE_LIMIT
    if not external_data:
        return atomic_write(path, model.SerializeToString())
    d, base = os.path.split(path)
    location = base + ".data"
    try:
        tmpdir = tempfile.mkdtemp(prefix=f".{base[:80]}{temp_tag()}", dir=d)
    except OSError as exc:
        raise output_error(path, exc) from None
    pending = _Pending()
    try:
        tmp_model = os.path.join(tmpdir, base)
        onnx.save(
            model,
            tmp_model,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=location,
        )
        for name in (base, location):
            p = os.path.join(tmpdir, name)
            if os.path.exists(p):
                with open(p, "rb+") as f:
                    os.fsync(f.fileno())
                pending.moves.append((p, os.path.join(d, name)))
        pending.dirs.append(tmpdir)
        outer = _pending()
        if outer is not None:
            outer.moves.extend(pending.moves)
            outer.dirs.extend(pending.dirs)
        else:
            pending.commit()
    except OSError as exc:
        pending.discard()
        _rmtree(tmpdir)
        raise output_error(path, exc) from None
    except BaseException:
        pending.discard()
        _rmtree(tmpdir)
        raise
    return path


def _rmtree(d: str) -> None:
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: alive
    return True


def remove_stale_temps(folder: str, log: Optional[Callable[[str], None]] = None) -> List[str]:
    """Deletes the temporary files (and folders) of :func:`atomic_write` in ``folder`` whose
    writing process is gone (``kill -9``, power loss). Returns what was removed."""
    removed: List[str] = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    for name in names:
        m = _TEMP_RE.search(name)
        if (
            not name.startswith(".")
            or m is None
            or m.group(2) != _host_tag()
            or _pid_alive(int(m.group(1)))
        ):
            continue
        p = os.path.join(folder, name)
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                _rmtree(p)
            else:
                os.unlink(p)
            removed.append(p)
        except OSError:
            continue
    if removed and log is not None:
        log(f"trtcal: removed {len(removed)} temporary file(s) left by a killed run in {folder}")
    return removed


def json_default(o):
    """``json.dumps(default=...)`` for NumPy scalars and arrays in trtcal's files."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"trtcal: cannot store {type(o).__name__} in a file")
