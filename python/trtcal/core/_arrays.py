"""Turning caller arrays into (pointer, shape, strides, dtype, device, stream) views.

Accepted: NumPy arrays (host), and device arrays exposing ``__cuda_array_interface__``
(CuPy, PyTorch, pycuda, Numba) or DLPack (``__dlpack__``; PyTorch bfloat16, JAX, ...).
Strided inputs are accepted when they are dense in some axis order (transposes,
channels-last); arrays with gaps or overlaps are refused with a message, never read wrongly.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _streams
from ._backend import enum_codes, extension

# dtype codes of csrc/kernels/dtype.h: read from trtcal._C.DType; the table is the fallback of
# the NumPy-only install (tests/test_extension_enums.py checks that the two agree).
_CPU_DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2, "int8": 3}
DTYPE_CODES = enum_codes("DType", _CPU_DTYPE_CODES)
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}

_CAI_TYPESTR = {"<f4": "float32", "<f2": "float16", "|i1": "int8", "<i1": "int8"}
_DL_CODES = {(2, 32): "float32", (2, 16): "float16", (4, 16): "bfloat16", (0, 8): "int8"}
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13


@dataclass
class ArrayView:
    """A typed window on caller memory. Strides are in elements."""

    name: str
    dtype: str
    shape: Tuple[int, ...]
    strides: Tuple[int, ...]
    on_device: bool
    ptr: int = 0
    device: int = -1
    stream: int = 0
    host: Optional[np.ndarray] = None  # set for host arrays
    keepalive: List[Any] = field(default_factory=list)
    known_contiguous: bool = False  # the producer said so (skips the stride check)

    def require_host(self) -> np.ndarray:
        """The host array (for the NumPy path; a device view has none)."""
        if self.host is None:
            raise TypeError(
                f"trtcal: '{self.name}' is a device array here, where a host array was expected"
            )
        return self.host

    @property
    def contiguous(self) -> bool:
        """C-contiguous (dense, row-major)."""
        return self.known_contiguous or self.strides == _c_strides(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype_code(self) -> int:
        return DTYPE_CODES[self.dtype]

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self.dtype]

    def memory_order(self) -> List[int]:
        """Axes from outermost to innermost in memory; raises if the layout is not dense."""
        if self.contiguous:
            return list(range(len(self.shape)))
        order = dense_axis_order(self.shape, self.strides)
        if order is None:
            raise ValueError(
                f"trtcal: tensor '{self.name}' is not contiguous (shape {self.shape}, element "
                f"strides {self.strides}): it has gaps or overlapping elements. Pass a contiguous "
                "copy (numpy.ascontiguousarray, cupy.ascontiguousarray or tensor.contiguous())."
            )
        return order

    def channel_split(self, axis: int) -> Tuple[int, int, int]:
        """(outer, channels, inner) of the memory-order view around ``axis``."""
        order = self.memory_order()
        pos = order.index(axis)
        outer = int(np.prod([self.shape[a] for a in order[:pos]], dtype=np.int64))
        inner = int(np.prod([self.shape[a] for a in order[pos + 1 :]], dtype=np.int64))
        return outer, self.shape[axis], inner


def dense_axis_order(shape: Sequence[int], strides: Sequence[int]) -> Optional[List[int]]:
    """Axes sorted outermost-first if the strides describe a dense permutation, else None."""
    ndim = len(shape)
    if any(s == 0 for s in shape):
        return list(range(ndim))
    # size-1 axes never move the pointer: keep them in place by giving them a stride
    # consistent with their logical position.
    key: List[Optional[int]] = []
    for a in range(ndim):
        st = strides[a] if shape[a] != 1 else None
        key.append(st)
    big = [a for a in range(ndim) if key[a] is not None]
    big.sort(key=lambda a: (-(key[a] or 0), a))
    expected = 1
    for a in reversed(big):
        if key[a] != expected:
            return None
        expected *= shape[a]
    ones = [a for a in range(ndim) if key[a] is None]
    # put size-1 axes first (they do not affect the split)
    return ones + big


def normalise_axis(axis: int, ndim: int, name: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"trtcal: axis {axis} is out of range for tensor '{name}' with {ndim} dims"
        )
    return axis % ndim


def _numpy_dtype_name(dt: np.dtype) -> Optional[str]:
    if dt == np.float32:
        return "float32"
    if dt == np.float16:
        return "float16"
    if dt == np.int8:
        return "int8"
    if dt.name == "bfloat16":  # ml_dtypes.bfloat16
        return "bfloat16"
    return None


def _unsupported(name: str, found: str, accepted: Sequence[str]) -> TypeError:
    return TypeError(f"trtcal: tensor '{name}' has dtype {found}; accepted: {', '.join(accepted)}")


def as_view(
    x: Any, name: str = "x", stream: Any = None, accepted: Sequence[str] = FLOAT_DTYPES
) -> ArrayView:
    """Wraps ``x`` without copying. ``stream`` overrides the producer's current stream."""
    module = type(x).__module__
    if module == "torch" and getattr(x, "is_cuda", False):
        return _from_torch_cuda(x, name, stream, accepted)
    if module.startswith("cupy") and type(x).__name__ == "ndarray":
        return _from_cupy(x, name, stream, accepted)
    if isinstance(x, np.ndarray):
        dt = _numpy_dtype_name(x.dtype)
        if dt is None or dt not in accepted:
            raise _unsupported(name, str(x.dtype), accepted)
        strides = tuple(s // x.itemsize for s in x.strides)
        if any(s * x.itemsize != b for s, b in zip(strides, x.strides)):
            raise ValueError(
                f"trtcal: tensor '{name}' has strides that are not a multiple of its item size"
            )
        return ArrayView(name, dt, tuple(x.shape), strides, False, host=x)
    cai = _get_cai(x)
    if cai is not None:
        return _from_cai(x, cai, name, stream, accepted)
    if hasattr(x, "__dlpack__"):
        return _from_dlpack(x, name, stream, accepted)
    if isinstance(x, (list, tuple, float, int)):
        return as_view(np.asarray(x, dtype=np.float32), name, stream, accepted)
    raise TypeError(
        f"trtcal: tensor '{name}' is a {type(x).__module__}.{type(x).__name__}; expected a NumPy "
        "array or a device array with __cuda_array_interface__ or __dlpack__ (CuPy, PyTorch, "
        "pycuda, ...)"
    )


_TORCH_DTYPES: dict = {}
_CUPY_DTYPES = {"float32": "float32", "float16": "float16", "int8": "int8"}


def _from_torch_cuda(x: Any, name: str, stream: Any, accepted: Sequence[str]) -> ArrayView:
    """PyTorch CUDA tensors through their own attributes: the array interface costs tens of
    microseconds per tensor, which a model's hundreds of activations would feel."""
    if not _TORCH_DTYPES:
        import torch

        _TORCH_DTYPES.update(
            {
                torch.float32: "float32",
                torch.float16: "float16",
                torch.bfloat16: "bfloat16",
                torch.int8: "int8",
            }
        )
    dt = _TORCH_DTYPES.get(x.dtype)
    if dt is None or dt not in accepted:
        raise _unsupported(name, str(x.dtype).replace("torch.", ""), accepted)
    device = x.get_device()
    handle = (
        _streams.stream_handle(stream)
        if stream is not None
        else _streams.torch_current_stream(device)
    )
    return ArrayView(
        name,
        dt,
        tuple(x.shape),
        tuple(x.stride()),
        True,
        ptr=x.data_ptr(),
        device=device,
        stream=handle,
        keepalive=[x],
        known_contiguous=x.is_contiguous(),
    )


def _from_cupy(x: Any, name: str, stream: Any, accepted: Sequence[str]) -> ArrayView:
    """CuPy arrays through their own attributes (no array-interface dict per call)."""
    dt = _CUPY_DTYPES.get(x.dtype.name)
    if dt is None or dt not in accepted:
        cai = _get_cai(x)  # bfloat16 and others: the general path says what is wrong
        if cai is not None:
            return _from_cai(x, cai, name, stream, accepted)
        raise _unsupported(name, x.dtype.name, accepted)
    itemsize = x.itemsize
    strides = tuple(s // itemsize for s in x.strides)
    if any(s * itemsize != b for s, b in zip(strides, x.strides)):
        raise ValueError(
            f"trtcal: tensor '{name}' has strides that are not a multiple of its item size"
        )
    handle = (
        _streams.stream_handle(stream) if stream is not None else _streams.cupy_current_stream()
    )
    return ArrayView(
        name,
        dt,
        x.shape,
        strides,
        True,
        ptr=x.data.ptr,
        device=x.device.id,
        stream=handle,
        keepalive=[x],
        known_contiguous=x.flags.c_contiguous,
    )


def _get_cai(x: Any) -> Optional[dict]:
    try:
        return getattr(x, "__cuda_array_interface__", None)
    except (TypeError, AttributeError, RuntimeError):
        return None  # e.g. PyTorch refuses bfloat16 here: fall back to DLPack


def _from_cai(x: Any, cai: dict, name: str, stream: Any, accepted: Sequence[str]) -> ArrayView:
    typestr = cai["typestr"]
    dt = _CAI_TYPESTR.get(typestr)
    if dt is None or dt not in accepted:
        if hasattr(x, "__dlpack__") and typestr.startswith("<V"):
            return _from_dlpack(x, name, stream, accepted)
        raise _unsupported(name, typestr, accepted)
    shape = tuple(int(s) for s in cai["shape"])
    itemsize = _ITEMSIZE[dt]
    if cai.get("strides") is None:
        strides = _c_strides(shape)
    else:
        strides = tuple(int(s) // itemsize for s in cai["strides"])
        if any(s * itemsize != b for s, b in zip(strides, cai["strides"])):
            raise ValueError(
                f"trtcal: tensor '{name}' has strides that are not a multiple of its item size"
            )
    ptr = int(cai["data"][0] or 0)
    handle = (
        _streams.stream_handle(stream)
        if stream is not None
        else _streams.current_stream_for(x, cai.get("stream"))
    )
    return ArrayView(
        name,
        dt,
        shape,
        strides,
        True,
        ptr=ptr,
        device=_device_of(ptr),
        stream=handle,
        keepalive=[x],
    )


def _c_strides(shape: Sequence[int]) -> Tuple[int, ...]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= max(int(s), 1)
    return tuple(reversed(out))


def _device_of(ptr: int) -> int:

    ext = extension()
    if ext is None or ptr == 0:
        return 0
    dev, _kind = ext.pointer_info(ptr)
    return max(int(dev), 0)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _from_dlpack(x: Any, name: str, stream: Any, accepted: Sequence[str]) -> ArrayView:
    dev_type, dev_id = x.__dlpack_device__()
    if dev_type == _DL_CPU:
        try:
            host = np.from_dlpack(x)
        except (RuntimeError, TypeError, BufferError):
            as_f32 = _host_bfloat16_as_float32(x)  # NumPy has no bfloat16 (without ml_dtypes)
            if as_f32 is None or "bfloat16" not in accepted:
                raise
            host = as_f32
        return as_view(host, name, stream, FLOAT_DTYPES if host.dtype == np.float32 else accepted)
    if dev_type not in (_DL_CUDA, _DL_CUDA_MANAGED, _DL_CUDA_HOST):
        raise TypeError(
            f"trtcal: tensor '{name}' lives on DLPack device type {dev_type}; expected CUDA or CPU"
        )
    handle = (
        _streams.stream_handle(stream) if stream is not None else _streams.current_stream_for(x)
    )
    # DLPack forbids 0 for the legacy default stream; it is spelled 1.
    capsule = x.__dlpack__(stream=1 if handle == 0 else handle)
    t = _DLTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
    key = (t.dtype.code, t.dtype.bits)
    dt = _DL_CODES.get(key)
    if dt is None or t.dtype.lanes != 1 or dt not in accepted:
        raise _unsupported(name, f"DLPack(code={key[0]}, bits={key[1]})", accepted)
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    strides = tuple(int(t.strides[i]) for i in range(t.ndim)) if t.strides else _c_strides(shape)
    ptr = int(t.data or 0) + int(t.byte_offset)
    # keep the capsule alive: its destructor releases the producer's memory reference
    return ArrayView(
        name,
        dt,
        shape,
        strides,
        True,
        ptr=ptr,
        device=int(dev_id),
        stream=handle,
        keepalive=[x, capsule],
    )


def _host_bfloat16_as_float32(x: Any) -> Optional[np.ndarray]:
    """A CPU PyTorch bfloat16 tensor as float32 (exact: bfloat16 is float32's upper 16 bits),
    or None for anything else."""
    if type(x).__module__ != "torch" or str(getattr(x, "dtype", "")) != "torch.bfloat16":
        return None
    import torch

    bits = x.detach().contiguous().view(torch.int16).numpy().view(np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def host_float64(view: ArrayView) -> np.ndarray:
    """Host view as float64 (the reference path works in float64)."""
    assert view.host is not None
    return np.asarray(view.host).astype(np.float64)
