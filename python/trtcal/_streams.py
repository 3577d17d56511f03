"""Resolving the caller's CUDA stream: never a silent default."""

from __future__ import annotations

from typing import Any, Optional

# Sentinels of the CUDA array interface / DLPack for the default streams.
LEGACY_DEFAULT_STREAM = 0
PER_THREAD_DEFAULT_STREAM = 2


def stream_handle(stream: Any) -> int:
    """The raw ``cudaStream_t`` (as int) of a stream-like object.

    Accepts an int handle, an object with ``__cuda_stream__`` (returns ``(version, handle)``),
    a CuPy stream (``.ptr``), a PyTorch stream (``.cuda_stream``), a pycuda stream
    (``.handle``), or a Numba stream (``.handle.value``).
    """
    if isinstance(stream, bool):
        raise TypeError("trtcal: stream must be a stream object or an int handle, not bool")
    if isinstance(stream, int):
        return _normalise(stream)
    proto = getattr(stream, "__cuda_stream__", None)
    if proto is not None:
        value = proto() if callable(proto) else proto
        return _normalise(int(value[1]))
    for attr in ("cuda_stream", "ptr"):
        if hasattr(stream, attr):
            return _normalise(int(getattr(stream, attr)))
    handle = getattr(stream, "handle", None)
    if handle is not None:
        return _normalise(int(getattr(handle, "value", handle) or 0))
    raise TypeError(
        f"trtcal: cannot get a CUDA stream from {type(stream).__name__}: pass an int handle, "
        "a CuPy/PyTorch/pycuda stream, or an object with __cuda_stream__"
    )


def _normalise(handle: int) -> int:
    # The array-interface sentinel 1 means the legacy default stream (handle 0).
    return LEGACY_DEFAULT_STREAM if handle == 1 else handle


def current_stream_for(obj: Any, cai_stream: Optional[int] = None) -> int:
    """The stream the producer of ``obj`` is working on.

    PyTorch tensors: ``torch.cuda.current_stream()`` of their device; CuPy arrays: CuPy's
    current stream; otherwise the stream named in ``__cuda_array_interface__``; otherwise
    the legacy default stream, which is what pycuda and Numba use unless told otherwise.
    """
    module = type(obj).__module__.split(".")[0]
    if module == "torch":
        import torch

        return int(torch.cuda.current_stream(obj.device).cuda_stream)
    if module == "cupy":
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    if cai_stream is not None:
        return _normalise(int(cai_stream))
    return LEGACY_DEFAULT_STREAM
