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


_torch_raw_stream = None
_cupy_get_stream = None


def torch_current_stream(device: int) -> int:
    """PyTorch's current stream on ``device`` as a raw handle (the cheap internal call when
    this PyTorch has it, else ``torch.cuda.current_stream``)."""
    global _torch_raw_stream
    if _torch_raw_stream is None:
        import torch

        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        _torch_raw_stream = (
            raw if raw is not None else (lambda d: torch.cuda.current_stream(d).cuda_stream)
        )
    return _normalise(int(_torch_raw_stream(device)))


def cupy_current_stream() -> int:
    """CuPy's current stream as a raw handle."""
    global _cupy_get_stream
    if _cupy_get_stream is None:
        import cupy

        _cupy_get_stream = cupy.cuda.get_current_stream
    return _normalise(int(_cupy_get_stream().ptr))


def current_stream_for(obj: Any, cai_stream: Optional[int] = None) -> int:
    """The stream the producer of ``obj`` is working on.

    PyTorch tensors: ``torch.cuda.current_stream()`` of their device; CuPy arrays: CuPy's
    current stream; otherwise the stream named in ``__cuda_array_interface__``; otherwise
    the legacy default stream, which is what pycuda and Numba use unless told otherwise.
    """
    module = type(obj).__module__.split(".")[0]
    if module == "torch":
        return torch_current_stream(obj.get_device())
    if module == "cupy":
        return cupy_current_stream()
    if cai_stream is not None:
        return _normalise(int(cai_stream))
    return LEGACY_DEFAULT_STREAM
