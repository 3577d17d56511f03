"""What a calibration run produced (:class:`CalibrationResult`), and the methods it may ask for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import outputs

# the methods whose ranges an FP8 Q/DQ model takes (E4M3-grid searches, min-max, percentile)
FP8_QDQ_METHODS = ("fp8-mse", "fp8-kl", "minmax", "percentile")
METHOD_CHOICES = (
    "auto",
    "entropy",
    "percentile",
    "minmax",
    "mse",
    "all",
    "fp8-mse",
    "fp8-kl",
)  # fp8-*: trtcal.fp8


@dataclass
class CalibrationResult:
    """What a calibration run produced.

    Attributes
    ----------
    amax : {method: {tensor: amax}}
    histograms : {tensor: Histogram}, the collected |x| histograms
    tables : {method: CalibrationTable} (empty when this build has no table API)
    files : {what: path} of every file written
    next_steps : the TensorRT commands that use the outputs
    """

    amax: Dict[str, Dict[str, float]]
    histograms: Dict[str, Any]
    samples: int
    batches: int
    skipped: List[Tuple[str, str]]
    provenance: Dict[str, Any]
    tables: Dict[str, Any] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)
    next_steps: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    flavors: Dict[str, Optional[str]] = field(default_factory=dict)
    clipped: Dict[str, Dict[str, float]] = field(
        default_factory=dict
    )  # {method: {tensor: fraction}}
    auto: Any = None  # method 'auto': its AutoDecision (what it measured and why it chose)

    @property
    def method(self) -> str:
        return self.provenance["method"]

    @property
    def table(self) -> Any:
        """The table of the primary method (auto; entropy when several were asked)."""
        return self.tables.get(primary(list(self.amax)))


def primary(methods: Sequence[str]) -> str:
    return next((m for m in ("auto", "entropy") if m in methods), methods[0])


def parse_methods(method: Union[str, Sequence[str]]) -> List[str]:
    ms = [method] if isinstance(method, str) else list(method)
    if not ms:
        raise ValueError(f"trtcal: no method given; choose from {', '.join(METHOD_CHOICES)}")
    out: List[str] = []
    for m in ms:
        if m not in METHOD_CHOICES:
            raise ValueError(
                f"trtcal: method must be one of {', '.join(METHOD_CHOICES)}, got {m!r}"
            )
        for x in outputs.METHODS if m == "all" else (m,):
            if x not in out:
                out.append(x)
    if "auto" in out and len(out) > 1:
        raise ValueError(
            "trtcal: method 'auto' chooses among the others by measurement; give it alone"
        )
    return out
