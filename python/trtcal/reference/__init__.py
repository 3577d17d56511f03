"""NumPy float64 references of every trtcal kernel: the CPU path and the test oracle."""

from .stats import (
    histogram_fixed,
    histogram_state_merge,
    histogram_state_new,
    histogram_state_update,
    minmax_channels,
    rebin,
)

__all__ = [
    "histogram_fixed",
    "histogram_state_merge",
    "histogram_state_new",
    "histogram_state_update",
    "minmax_channels",
    "rebin",
]
