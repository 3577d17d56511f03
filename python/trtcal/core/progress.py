"""The one progress bar of trtcal: tqdm on stderr when it is installed and wanted, else nothing.

calibrate counts samples, compare counts evaluation samples, analyze counts configurations and
``trtcal.torch.collect`` counts batches; each makes a :class:`Progress` with its unit.
"""

from __future__ import annotations

import sys
from typing import Any, Optional


class Progress:
    """``Progress(enabled, total, desc, unit)``: a bar, or a no-op when disabled or without tqdm.

    ``start`` is where the bar begins (a resumed run); :meth:`move_to` sets an absolute position,
    :meth:`update` adds to it, :meth:`grow` raises the total, :meth:`note` shows a short status.
    """

    def __init__(
        self, enabled: bool, total: Optional[int], desc: str, unit: str = "sample", start: int = 0
    ) -> None:
        self.bar: Any = None
        self.pos = start
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm  # optional dependency
        except ImportError:
            return
        self.bar = tqdm(
            total=total, initial=start, unit=unit, desc=desc, dynamic_ncols=True, file=sys.stderr
        )

    def update(self, n: int = 1) -> None:
        self.move_to(self.pos + n)

    def move_to(self, pos: int) -> None:
        if self.bar is not None and pos != self.pos:
            self.bar.update(pos - self.pos)
        self.pos = pos

    def grow(self, n: int) -> None:
        if self.bar is not None and n:
            self.bar.total = (self.bar.total or 0) + n
            self.bar.refresh()

    def note(self, text: str = "", **fields: Any) -> None:
        """A short status after the bar (``text``, else ``key=value`` fields); shown at the next
        update."""
        if self.bar is None:
            return
        if text:
            self.bar.set_postfix_str(text[-40:], refresh=False)
        elif fields:
            self.bar.set_postfix(refresh=False, **fields)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
