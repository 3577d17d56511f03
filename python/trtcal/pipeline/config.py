"""The settings :func:`trtcal.calibrate`, :func:`trtcal.compare`, :func:`trtcal.analyze` and the
CLI share, as one typed object.

A :class:`CalibrationConfig` says which data, how it is preprocessed and batched, which
activations are collected, how the model runs, which range methods (and flavors) are searched,
which precisions the Q/DQ model uses, what the model's outputs hold, and how the run is
checkpointed and reported. Every entry point takes one (``config=``) and/or the same fields as
keyword arguments, which override it::

    cfg = trtcal.CalibrationConfig(data="images/", preprocess=pre, max_samples=512)
    trtcal.calibrate("model.onnx", config=cfg, out_qdq="model.qdq.onnx")
    trtcal.compare("model.onnx", config=cfg, eval_data="val/")   # the same data and settings

The CLI builds one from its shared flags (``trtcal.cli._common``), so a flag means the same in
every command.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

from .data import Preprocess
from .runners import DEFAULT_MAX_MEMORY, Runner, TensorSelection

QUANT_DTYPES = ("int8", "fp8")
HIGH_PRECISIONS = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class CalibrationConfig:
    """Settings shared by calibrate, compare, analyze and the CLI (all optional).

    Data
        ``data``: calibration samples: an image folder (with ``preprocess``), a .npy/.npz file or
        folder of them, an array or {input: array} (samples on axis 0), or an iterable of
        {input: batch} dicts. ``eval_data``: held-out samples in any of those forms (method
        'auto', compare, analyze, the report's accuracy). ``max_samples`` / ``eval_samples``: how
        many of each. ``batch_size``: samples per inference (default: the model's fixed batch,
        else 16). ``preprocess``: a :class:`~trtcal.pipeline.data.Preprocess` for images.
        ``input_name``: the model input that single arrays feed. ``skip_bad``: skip (and report)
        unreadable samples and samples with NaN/Inf activations instead of stopping.
    Activations
        ``tensors``: glob or ``re:`` name patterns (or a TensorSelection); ``op_types``: the op
        types whose outputs are collected (default all float tensors). ``bins``: histogram bins
        per tensor (2048, as TensorRT's).
    How the model runs
        ``runner``: 'auto', 'onnxruntime', 'tensorrt' or a Runner (the statistics pass);
        ``evaluate``: 'auto', 'onnxruntime' or 'tensorrt' (running Q/DQ models);
        ``max_memory``: bytes of activations one ONNX Runtime run may return (default 1.5e9;
        0: no limit); the table does not depend on it.
    Ranges
        ``method``: 'auto', 'entropy', 'percentile', 'minmax', 'mse', 'all', 'fp8-mse',
        'fp8-kl' or a list; ``flavor``: a flavor name or {method: flavor}; ``params``: per
        method, e.g. ``{"percentile": {"percentile": 99.99}}``.
    Precision
        ``quant_dtype``: 'int8' or 'fp8' (E4M3) Q/DQ; ``high_precision``: the type of what stays
        unquantized ('fp16', 'bf16', 'fp32'); ``tensorrt_version``: 'X.Y' of the target.
    What the outputs hold
        ``task``: 'auto' (detected), a task name or a TaskSpec; ``output_slices``: the heads of
        the outputs; ``score_threshold``: the detection score a kept detection needs.
    Run control
        ``checkpoint`` (path), ``checkpoint_every`` (batches), ``checkpoint_seconds``, ``resume``;
        ``progress`` (a bar on stderr); ``log`` (where messages go; default stderr);
        ``distributed`` / ``group`` (a torch.distributed process group) or ``shard`` =
        (rank, count) for separate machines.
    """

    data: Any = None
    eval_data: Any = None
    max_samples: Optional[int] = None
    eval_samples: Optional[int] = None
    batch_size: Optional[int] = None
    preprocess: Optional[Preprocess] = None
    input_name: Optional[str] = None
    skip_bad: bool = False
    tensors: Union[None, str, Sequence[str], TensorSelection] = None
    op_types: Optional[Sequence[str]] = None
    bins: int = 2048
    runner: Union[str, Runner] = "auto"
    evaluate: str = "auto"
    max_memory: Optional[float] = None
    method: Union[str, Sequence[str]] = "auto"
    flavor: Union[None, str, Mapping[str, str]] = None
    params: Optional[Mapping[str, Any]] = None
    quant_dtype: str = "int8"
    high_precision: str = "fp16"
    tensorrt_version: Optional[str] = None
    task: Any = "auto"
    output_slices: Any = None
    score_threshold: Optional[float] = None
    checkpoint: Optional[str] = None
    checkpoint_every: int = 50
    checkpoint_seconds: Optional[float] = 300.0
    resume: bool = False
    progress: bool = True
    log: Optional[Callable[[str], None]] = None
    distributed: bool = False
    group: Any = None
    shard: Optional[Tuple[int, int]] = None

    def __post_init__(self) -> None:
        if self.quant_dtype not in QUANT_DTYPES:
            raise ValueError(
                f"trtcal: quant_dtype must be one of {', '.join(QUANT_DTYPES)}, got "
                f"{self.quant_dtype!r}"
            )
        if self.high_precision not in HIGH_PRECISIONS:
            raise ValueError(
                f"trtcal: high_precision must be one of {', '.join(HIGH_PRECISIONS)}, "
                f"got {self.high_precision!r}"
            )
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"trtcal: batch_size must be >= 1, got {self.batch_size}")
        for name in ("max_samples", "eval_samples"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"trtcal: {name} must be >= 1, got {v}")
        if int(self.checkpoint_every) < 1:
            raise ValueError(
                f"trtcal: checkpoint_every must be >= 1 batch, got {self.checkpoint_every}"
            )
        if self.distributed and self.shard is not None:
            raise ValueError(
                "trtcal: give either distributed=True (a process group) or shard=(rank, count), "
                "not both"
            )

    @classmethod
    def of(
        cls, config: Optional["CalibrationConfig"] = None, **options: Any
    ) -> "CalibrationConfig":
        """``config`` (default: every default) with ``options`` (field names) replaced; a name
        that is no field is a TypeError naming it, as for any keyword argument."""
        base = cls() if config is None else config
        if not isinstance(base, cls):
            raise TypeError(
                f"trtcal: config must be a CalibrationConfig, got {type(base).__name__}"
            )
        unknown = sorted(set(options) - set(cls.fields()))
        if unknown:
            raise TypeError(
                f"trtcal: unexpected keyword argument(s) {', '.join(map(repr, unknown))} "
                f"(CalibrationConfig fields: {', '.join(cls.fields())})"
            )
        return dataclasses.replace(base, **options) if options else base

    @classmethod
    def fields(cls) -> List[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> "CalibrationConfig":
        return type(self).of(self, **changes)

    def say(self) -> Callable[[str], None]:
        """Where messages go: ``log``, else stderr."""
        return self.log or (lambda s: print(s, file=sys.stderr))

    def selection(self) -> TensorSelection:
        """Which activations are collected, from ``tensors`` and ``op_types``."""
        if isinstance(self.tensors, TensorSelection):
            return self.tensors
        names = None
        if self.tensors is not None and self.tensors != "all":
            names = (self.tensors,) if isinstance(self.tensors, str) else tuple(self.tensors)
        return TensorSelection(
            op_types=tuple(self.op_types) if self.op_types else None, names=names
        )

    def memory_budget(self) -> float:
        return DEFAULT_MAX_MEMORY if self.max_memory is None else float(self.max_memory)
