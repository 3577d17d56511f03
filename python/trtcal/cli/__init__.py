"""The ``trtcal`` command line. Each subcommand lives in its own module of this package
and exposes ``register(subparsers)``, which adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# Subcommand modules, in help order. A module that fails to import (an optional
# dependency is missing) is reported when its command is used, not at start-up.
SUBCOMMANDS = ["demo", "calibrate", "compare", "analyze", "cache", "fuse_silu", "merge", "migrate"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="trtcal", description="Fast, exact INT8 calibration for TensorRT.")
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
    from ..tensorrt._runtime import TensorRTUnavailableError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("trtcal: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, TensorRTUnavailableError) as exc:
        msg = str(exc)
        print(f"trtcal: error: {msg[len('trtcal: '):] if msg.startswith('trtcal: ') else msg}", file=sys.stderr)
        return 1
