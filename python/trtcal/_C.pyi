# ruff: noqa: N999
"""Type stub of trtcal._C, the private CUDA extension (csrc/bindings/*.cpp).

Pointers and streams are integers (device addresses and cudaStream_t handles); ``dtype``
arguments take the codes of :class:`DType`. Every name the extension defines is listed here
(tests/test_extension_enums.py compares this stub with the built module on the GPU).
"""

from collections.abc import Sequence
from typing import ClassVar, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

# ---- enums (csrc/bindings/enum_bindings.cpp) -------------------------------------------------

class DType:
    """Element types of the kernels (csrc/kernels/dtype.h)."""

    float32: ClassVar[DType]
    float16: ClassVar[DType]
    bfloat16: ClassVar[DType]
    int8: ClassVar[DType]
    __members__: ClassVar[dict[str, DType]]
    def __init__(self, value: int) -> None: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class RangeMethod:
    """Range-search methods (csrc/kernels/range_search.h)."""

    entropy_proportional: ClassVar[RangeMethod]
    entropy_onnxruntime: ClassVar[RangeMethod]
    mse: ClassVar[RangeMethod]
    percentile: ClassVar[RangeMethod]
    __members__: ClassVar[dict[str, RangeMethod]]
    def __init__(self, value: int) -> None: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class NonFinite:
    """Order of the non-finite counters (csrc/kernels/minmax.h)."""

    nan: ClassVar[NonFinite]
    posinf: ClassVar[NonFinite]
    neginf: ClassVar[NonFinite]
    __members__: ClassVar[dict[str, NonFinite]]
    def __init__(self, value: int) -> None: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class DeviceOutOfMemory(MemoryError):
    """CUDA ran out of device memory."""

# ---- runtime (csrc/bindings/runtime_bindings.cpp) --------------------------------------------

def free_workspaces() -> None: ...
def device_count() -> int: ...
def runtime_version() -> int: ...
def pointer_info(arg0: int, /) -> tuple[int, int]:
    """(device, cudaMemoryType) of a pointer; (-1, 0) when CUDA does not know it."""

def stream_synchronize(arg0: int, arg1: int, /) -> None:
    """(stream, device)."""

def download(arg0: int, arg1: ArrayLike, arg2: int, arg3: int, /) -> None:
    """(src pointer, writable host buffer, stream, device); waits."""

class DeviceBuffer:
    def __init__(self, nbytes: int, device: int) -> None: ...
    @property
    def ptr(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def device(self) -> int: ...
    def upload(self, arg0: ArrayLike, arg1: int, /) -> None:
        """(host buffer, stream); waits."""

# ---- min/max (csrc/bindings/minmax_bindings.cpp) ---------------------------------------------

def minmax_once(
    ptr: int, dtype: int, outer: int, channels: int, inner: int, stream: int, device: int
) -> tuple[float | NDArray[np.float64], float | NDArray[np.float64], int, int, int]:
    """(min, max, nan, posinf, neginf); min/max are floats for one channel, arrays otherwise."""

class MinMaxState:
    def __init__(self, channels: int, device: int) -> None: ...
    def reset(self, stream: int) -> None: ...
    def update(self, ptr: int, dtype: int, outer: int, inner: int, stream: int) -> None: ...
    def read(
        self, stream: int
    ) -> tuple[NDArray[np.uint32], NDArray[np.uint32], NDArray[np.uint64]]: ...
    def load(
        self,
        min_ordered: NDArray[np.uint32],
        max_ordered: NDArray[np.uint32],
        nonfinite: NDArray[np.uint64],
        stream: int,
    ) -> None: ...
    @property
    def channels(self) -> int: ...
    @property
    def device(self) -> int: ...

# ---- histograms (csrc/bindings/histogram_bindings.cpp) ---------------------------------------

class HistogramState:
    def __init__(self, bins: int, signed: bool, device: int, stream: int) -> None: ...
    def update(self, ptr: int, dtype: int, n: int, stream: int) -> None: ...
    def merge(self, other: HistogramState, stream: int) -> None: ...
    def read(self, stream: int) -> dict[str, object]:
        """exponent, has_range, amax, min, max, finite, nan, posinf, neginf, counts (int64)."""

    def load(
        self,
        exponent: int,
        has_range: bool,
        amax: float,
        min: float | None,
        max: float | None,
        finite: int,
        nan: int,
        posinf: int,
        neginf: int,
        counts: NDArray[np.int64],
        stream: int,
    ) -> None: ...
    @property
    def counts_ptr(self) -> int: ...
    @property
    def bins(self) -> int: ...
    @property
    def signed(self) -> bool: ...
    @property
    def device(self) -> int: ...

def histogram_update_many(
    states: list[HistogramState],
    ptrs: list[int],
    dtypes: list[int],
    sizes: list[int],
    stream: int,
    device: int,
) -> None: ...
def _histogram_set_replicas(arg0: int, /) -> None: ...
def _histogram_set_blocks_per_sm(arg0: int, /) -> None: ...
def histogram_fixed(
    arg0: int, arg1: int, arg2: int, arg3: float, arg4: int, arg5: bool, arg6: int, arg7: int, /
) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """(ptr, dtype, n, range, bins, signed, stream, device) -> (counts, stats).

    stats: outside, nan, posinf, neginf.
    """

def histogram_once(
    ptr: int, dtype: int, n: int, bins: int, signed: bool, stream: int, device: int
) -> dict[str, object]: ...
def histogram_read_states(
    states: list[HistogramState], stream: int, device: int
) -> dict[str, np.ndarray]: ...

# ---- SiLU (csrc/bindings/silu_bindings.cpp) --------------------------------------------------

def silu(x: int, y: int, dtype: int, n: int, stream: int, device: int) -> None: ...
def silu_int8_table(scale_in: float, scale_out: float) -> NDArray[np.int8]: ...
def silu_int8_to_float_table(
    scale_in: float, dtype: int
) -> NDArray[np.uint32] | NDArray[np.uint16]: ...
def silu_int8(
    q: int, y: int, n: int, scale_in: float, scale_out: float, stream: int, device: int
) -> None: ...
def silu_int8_to_float(
    q: int, y: int, dtype: int, n: int, scale_in: float, stream: int, device: int
) -> None: ...
def silu_float_to_int8(
    x: int, dtype: int, y: int, n: int, scale_out: float, stream: int, device: int
) -> None: ...

# ---- FP8 (E4M3) search and SiLU (csrc/bindings/fp8_bindings.cpp) -----------------------------

def silu_fp8_table(scale_in: float, scale_out: float) -> NDArray[np.uint8]: ...
def silu_fp8(
    x: int, y: int, n: int, scale_in: float, scale_out: float, stream: int, device: int
) -> None: ...
def fp8_search(
    device: int,
    method: int,
    counts: NDArray[np.int64],
    centers: NDArray[np.float64],
    nbins: NDArray[np.int32],
    totals: NDArray[np.int64],
    ncand: NDArray[np.int32],
    cand_keep: NDArray[np.int32],
    cand_amax: NDArray[np.float64],
    tol: float,
    stream: int,
) -> tuple[NDArray[np.int32], NDArray[np.float64]]: ...

# ---- range search and exact percentile (csrc/bindings/range_search_bindings.cpp) -------------

_Choices: TypeAlias = tuple[
    NDArray[np.int32], NDArray[np.int32], NDArray[np.float64], NDArray[np.float64] | None
]

class PrivateStream:
    def __init__(self, device: int) -> None: ...
    @property
    def handle(self) -> int: ...

class RangeSearchPlan:
    def __init__(
        self,
        *,
        device: int,
        method: int,
        levels: int,
        zero_bin_rule: bool,
        tie_last: bool,
        per_bin: int,
        max_bound: int,
        threads: int,
        tol: float,
        eps: float,
        counts_ptrs: ArrayLike,
        nbins: ArrayLike,
        edges_ptrs: ArrayLike,
        linspace: ArrayLike,
        grid: ArrayLike,
        targets: ArrayLike,
        cands: ArrayLike,
        group: int = 0,
        chunk: int = 0,
    ) -> None: ...
    def launch(self, stream: int) -> None: ...
    def read(self, stream: int, with_curve: bool) -> _Choices: ...
    @property
    def blocks(self) -> int: ...
    @property
    def shape(self) -> tuple[int, int, int]:
        """(threads, group, chunk)."""

def range_search_once(
    *,
    device: int,
    method: int,
    levels: int,
    zero_bin_rule: bool,
    tie_last: bool,
    per_bin: int,
    max_bound: int,
    threads: int,
    tol: float,
    eps: float,
    counts_ptrs: ArrayLike,
    nbins: ArrayLike,
    edges_ptrs: ArrayLike,
    linspace: ArrayLike,
    grid: ArrayLike,
    targets: ArrayLike,
    cands: ArrayLike,
    group: int,
    chunk: int,
    host_counts: ArrayLike,
    host_counts_off: ArrayLike,
    host_edges: ArrayLike,
    host_edges_off: ArrayLike,
    stream: int,
    with_curve: bool,
) -> _Choices: ...
def range_search_max_bins(method: int) -> int: ...
def select_histogram(
    x: int,
    dtype: int,
    keys: int,
    n: int,
    abs: bool,
    shift: int,
    bits: int,
    prefix_shift: int,
    prefix: int,
    stream: int,
    device: int,
) -> NDArray[np.uint64]: ...
def select_key_buffer(count: int, device: int) -> int:
    """The thread's cached compaction buffer (>= count keys); valid until the next select call."""

def select_compact(
    x: int,
    dtype: int,
    keys: int,
    n: int,
    abs: bool,
    lo: int,
    hi: int,
    out: int,
    stream: int,
    device: int,
) -> int: ...
def select_bracket(
    x: int,
    dtype: int,
    n: int,
    abs: bool,
    runs: int,
    t_lo: float,
    t_hi: float,
    sigmas: float,
    capacity: int,
    ranks: Sequence[int],
    stream: int,
    device: int,
) -> tuple[int, int, int, int, int, int, int, list[tuple[int, int]]]:
    """(below, equal_lo, inside, nan, lo, hi, keys_ptr, [(status, key) per rank])."""
