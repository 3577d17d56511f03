"""Device buffers and streams for TensorRT execution contexts, from PyTorch, else CuPy (shared
by the TensorRT calibration runner and the evaluation session)."""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np


class DeviceAllocator:
    """Device arrays and a stream from PyTorch, else CuPy."""

    torch: Any
    cupy: Any

    def __init__(self) -> None:
        try:
            import torch

            if not torch.cuda.is_available():
                raise ImportError
            self.torch = torch
            self.cupy = None
        except ImportError:
            try:
                import cupy
            except ImportError:
                raise RuntimeError(
                    "trtcal: the TensorRT runner needs PyTorch (with CUDA) or CuPy for its device "
                    "buffers; neither is usable here"
                ) from None
            self.torch = None
            self.cupy = cupy

    def current_stream(self) -> Any:
        return (
            self.torch.cuda.current_stream() if self.torch else self.cupy.cuda.get_current_stream()
        )

    def stream(self) -> Any:
        """A private stream (the evaluation session synchronises it before reading)."""
        return self.torch.cuda.Stream() if self.torch else self.cupy.cuda.Stream(non_blocking=True)

    def stream_handle(self, s: Any) -> int:
        return int(s.cuda_stream) if self.torch else int(s.ptr)

    def empty(self, shape: Tuple[int, ...], dtype: Any, trt: Any = None) -> Any:
        """A device array; ``dtype`` a TensorRT DataType (bfloat16 has no NumPy type) or NumPy
        dtype."""
        if trt is not None and isinstance(dtype, trt.DataType):
            if getattr(trt, "bfloat16", None) is not None and dtype == trt.bfloat16:
                if not self.torch:
                    raise TypeError(
                        "trtcal: bfloat16 TensorRT buffers need PyTorch (CuPy has no bfloat16)"
                    )
                return self.torch.empty(shape, dtype=self.torch.bfloat16, device="cuda")
            dtype = np.dtype(trt.nptype(dtype))
        if self.torch:
            tdt = {
                np.float32: self.torch.float32,
                np.float16: self.torch.float16,
                np.int32: self.torch.int32,
                np.int64: self.torch.int64,
                np.int8: self.torch.int8,
                np.bool_: self.torch.bool,
                np.uint8: self.torch.uint8,
            }[np.dtype(dtype).type]
            return self.torch.empty(shape, dtype=tdt, device="cuda")
        return self.cupy.empty(shape, dtype=dtype)

    def ptr(self, buf: Any) -> int:
        return int(buf.data_ptr()) if self.torch else int(buf.data.ptr)

    def upload(self, buf: Any, host: np.ndarray, stream: Any) -> None:
        if self.torch:
            with self.torch.cuda.stream(stream):
                buf.copy_(self.torch.from_numpy(host), non_blocking=False)
        else:
            with stream:
                buf.set(host)
