"""NumPy float64 references of every trtcal kernel: the CPU path and the test oracle."""

from . import range_search
from .stats import (
    histogram_fixed,
    histogram_state_merge,
    histogram_state_new,
    histogram_state_update,
    minmax_channels,
    rebin,
)

__all__ = [
    "range_search",
    "histogram_fixed",
    "histogram_state_merge",
    "histogram_state_new",
    "histogram_state_update",
    "minmax_channels",
    "rebin",
]
