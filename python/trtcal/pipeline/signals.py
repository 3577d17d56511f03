"""Stopping a calibration pass cleanly: SIGINT (Ctrl-C), SIGTERM (``docker stop``, a batch
scheduler) and SIGHUP (a closed terminal) are noted and acted on between batches, so the
checkpoint saved on the way out is consistent; a second signal stops at once."""

from __future__ import annotations

import signal
import threading
from typing import Any, Dict

HANDLED = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None
)


class Stopped(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``); the CLI exits with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class DeferredSignals:
    """Within the block, the first SIGINT/SIGTERM/SIGHUP sets ``hit`` (the caller raises
    :meth:`stop` after the current batch); a second one raises :class:`Stopped` at once.
    Handlers are installed only in the main thread, and restored on exit."""

    def __init__(self) -> None:
        self.hit = False
        self.signum = 0
        self._old: Dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise Stopped(signum)
        self.hit = True
        self.signum = signum

    def stop(self) -> "Stopped":
        """The exception to raise for the signal noted."""
        return Stopped(self.signum or signal.SIGINT)

    def __enter__(self) -> "DeferredSignals":
        if threading.current_thread() is threading.main_thread():
            for s in HANDLED:
                try:
                    self._old[s] = signal.signal(s, self._handler)
                except (OSError, ValueError):
                    continue
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}
