"""One rank's share of a calibration data source (``trtcal calibrate --distributed`` / ``--shard``).

Sources of known length are split into contiguous shards of whole batches
(:func:`trtcal.distributed.shard_range` with ``align = batch size``), so every rank forms
exactly the batches that one process would: the activations, and so the merged statistics,
are identical even for inference kernels that depend on the batch. Iterables of unknown length
are split by item (each item is a batch): item ``i`` goes to rank ``i % world_size``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple

from .data import Source
from .distributed import shard_range


class ShardedSource(Source):
    """The positions of a bound ``source`` that ``rank`` of ``world_size`` reads.

    Parameters
    ----------
    source : a Source, already bound to the model's inputs
    rank, world_size : this process's place
    align : batch size (positions per batch); 1 for sources whose items are whole batches
    limit : use only the first ``limit`` positions of the whole source (``max_samples``)
    """

    def __init__(
        self,
        source: Source,
        rank: int,
        world_size: int,
        align: int = 1,
        limit: Optional[int] = None,
    ) -> None:
        self.inner = source
        self.rank, self.world_size = int(rank), int(world_size)
        self.kind = source.kind
        self.batched = source.batched
        self.specs = getattr(source, "specs", [])
        try:
            total = len(source)
        except TypeError:
            total = None
        if total is None:
            if limit is not None:
                raise ValueError(
                    "trtcal: max_samples cannot be used with a distributed run over an iterable of "
                    "unknown length; give a sized iterable (a list) or no max_samples"
                )
            self.span: Optional[Tuple[int, int]] = None
            self.align = 1
        else:
            if limit is not None:
                total = min(total, int(limit))
            self.align = 1 if source.batched else int(align)
            self.span = shard_range(total, self.rank, self.world_size, self.align)
        self.total = total

    def __getattr__(self, name: str) -> Any:  # preprocess, input_name, ... of the source
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def bind(self, specs) -> None:  # the source is bound already
        self.specs = list(specs)

    def __len__(self) -> int:
        if self.span is None:
            raise TypeError("length unknown")
        return self.span[1] - self.span[0]

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        if self.span is not None:
            lo, hi = self.span
            if lo + start >= hi:
                return
            for k, item in enumerate(self.inner.items(lo + start)):
                if lo + start + k >= hi:
                    return
                yield item
            return
        local = 0
        for i, item in enumerate(self.inner.items(0)):
            if i % self.world_size != self.rank:
                continue
            if local >= start:
                yield item
            local += 1

    def describe(self) -> Dict[str, Any]:
        return self.inner.describe()  # the whole data set: what the merged table was made from

    def fingerprint(self) -> Dict[str, Any]:
        shard = {
            "rank": self.rank,
            "world_size": self.world_size,
            "align": self.align,
            "limit": self.total,
        }
        return dict(self.inner.fingerprint(), shard=shard)
