"""The ``trtcal`` command line. Each subcommand lives in its own module of this package
and exposes ``register(subparsers)``, which adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

from ..core.version import __version__
from ..formats.tensorrt._runtime import TensorRTUnavailableError

# Subcommand modules, in help order. A module that fails to import (an optional
# dependency is missing) is reported when its command is used, not at start-up.
SUBCOMMANDS = ["demo", "calibrate", "compare", "analyze", "cache", "fuse_silu", "merge", "migrate"]


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="trtcal", description="Fast, exact INT8 calibration for TensorRT."
    )
    parser.add_argument("--version", action="version", version=f"trtcal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"{__name__}.{name}"):
                continue  # not written yet
            raise
        module.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP during a pass (signals.Stopped)
        signum = getattr(exc, "signum", 2)
        print(f"trtcal: interrupted ({signal_name(signum)})", file=sys.stderr)
        return 128 + signum
    except (
        ValueError,
        TypeError,
        OSError,
        RuntimeError,
        TensorRTUnavailableError,
        MemoryError,
    ) as exc:
        print(f"trtcal: error: {error_text(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a library's own exception type (protobuf, zipfile, PIL, ...)
        if os.environ.get("TRTCAL_TRACEBACK"):
            raise
        print(
            f"trtcal: error: {error_text(exc)} (set TRTCAL_TRACEBACK=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


_plain_showwarning = __import__("warnings").showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
    """trtcal's own warnings as one line 'trtcal: warning: ...'; others as Python prints them."""
    text = str(message)
    if text.startswith("trtcal: "):
        print(f"trtcal: warning: {text[len('trtcal: ') :]}", file=file or sys.stderr)
    else:
        _plain_showwarning(message, category, filename, lineno, file, line)


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def error_text(exc: BaseException) -> str:
    """One line for an error: trtcal's own message, or for an OSError its file and reason, or
    else the exception's type and first line."""
    msg = str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory" + (f": {msg}" if msg else "")
    if isinstance(exc, OSError) and not msg.startswith("trtcal: ") and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if msg.startswith("trtcal: "):
        return msg[len("trtcal: ") :]
    if not isinstance(exc, (ValueError, TypeError, RuntimeError, OSError)) or not msg:
        msg = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
