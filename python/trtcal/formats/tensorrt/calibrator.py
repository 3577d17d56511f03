"""INT8 calibrators for TensorRT <= 10, on TensorRT's own base classes.

``EntropyCalibrator2(dataset, table=..., cache_path=...)`` returns an object that IS a
``tensorrt.IInt8EntropyCalibrator2`` (likewise ``EntropyCalibrator``, ``MinMaxCalibrator``,
``LegacyCalibrator``), to be set as ``config.int8_calibrator``:

* with a ``table``, ``read_calibration_cache`` hands TensorRT trtcal's ranges as cache bytes
  (header for the installed TensorRT and this calibrator's algorithm), so TensorRT uses OUR
  ranges and never asks for batches;
* otherwise TensorRT calibrates itself: ``get_batch`` feeds the dataset's batches, one device
  pointer per input TensorRT names, in TensorRT's order (host arrays are copied into device
  buffers reused across batches; device arrays are passed through), and None at the end,
  when the buffers are freed; ``write_calibration_cache`` keeps the result as
  ``calibrator.table`` and saves it to ``cache_path``.

TensorRT 11 removed calibrators: constructing one there raises an error pointing to
:func:`trtcal.onnx.quantize` / :func:`trtcal.tensorrt.quantize_network`.

The batch feeding (:class:`BatchFeeder`) and the device copies (:class:`DeviceMemory`) are
plain Python and work without TensorRT.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...core._backend import cuda_available, require_cuda
from ...core._files import atomic_write
from ...core._streams import stream_handle
from ..cache import parse_cache
from ..table import CalibrationTable
from ._runtime import load_tensorrt, require_implicit_int8

log = logging.getLogger("trtcal.tensorrt")

#: cache-header algorithm name -> TensorRT base class
BASE_CLASSES = {
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
    "LegacyCalibration": "IInt8LegacyCalibrator",
}


# ---------------------------------------------------------------------- device memory


class DeviceMemory:
    """How host batches reach the GPU: ``allocate`` / ``pointer`` / ``upload`` / ``free``.

    Subclass it (or pass any object with these four methods) to use another allocator."""

    def allocate(self, nbytes: int) -> Any:
        raise NotImplementedError

    def pointer(self, handle: Any) -> int:
        raise NotImplementedError

    def upload(self, handle: Any, host: np.ndarray) -> None:
        raise NotImplementedError

    def free(self, handle: Any) -> None:
        pass  # handles are released when dropped


class TrtcalDeviceMemory(DeviceMemory):
    """Device buffers of trtcal's CUDA build (``trtcal._C.DeviceBuffer``). Uploads are
    ordered on ``stream`` and wait for the copy. TensorRT's calibrator interface passes no
    stream, so the default is the legacy default stream (0), chosen explicitly here."""

    def __init__(self, device: int = 0, stream: Any = 0) -> None:

        self._ext = require_cuda("feeding calibration batches to TensorRT")
        self.device = int(device)
        self.stream = stream_handle(stream)

    def allocate(self, nbytes: int) -> Any:
        return self._ext.DeviceBuffer(max(int(nbytes), 1), self.device)

    def pointer(self, handle: Any) -> int:
        return int(handle.ptr)

    def upload(self, handle: Any, host: np.ndarray) -> None:
        handle.upload(host.reshape(-1).view(np.uint8), self.stream)


class CupyDeviceMemory(DeviceMemory):
    """Device buffers from CuPy (its memory pool); copies on CuPy's current stream, waited for."""

    def __init__(self) -> None:
        import cupy

        self._cp = cupy

    def allocate(self, nbytes: int) -> Any:
        return self._cp.empty(max(int(nbytes), 1), dtype=self._cp.uint8)

    def pointer(self, handle: Any) -> int:
        return int(handle.data.ptr)

    def upload(self, handle: Any, host: np.ndarray) -> None:
        flat = host.reshape(-1).view(np.uint8)
        handle[: flat.size].set(flat)
        self._cp.cuda.get_current_stream().synchronize()


def default_device_memory(stream: Any = 0) -> DeviceMemory:
    """trtcal's own buffers when its CUDA build is present, else CuPy, else a clear error."""

    if cuda_available():
        return TrtcalDeviceMemory(stream=stream)
    try:
        return CupyDeviceMemory()
    except ImportError:
        pass
    raise RuntimeError(
        "trtcal: feeding host (NumPy) calibration batches to TensorRT needs device memory: install "
        "trtcal with its CUDA build, or CuPy (pip install cupy-cuda12x), or pass device_memory=, "
        "or "
        "give device arrays (CuPy/PyTorch CUDA tensors) in the dataset"
    )


# ---------------------------------------------------------------------- batches


Batch = Union[Mapping, Sequence, Any]


class BatchFeeder:
    """Turns a dataset into TensorRT ``get_batch`` answers.

    Parameters
    ----------
    dataset : iterable of batches
        Each batch is a mapping ``{input name: array}``, a list/tuple of arrays (in
        ``input_names`` order if given, else in the order TensorRT asks for inputs), or one
        array (single-input networks). Arrays are NumPy (copied to the device; float64 is
        cast to float32) or device arrays with ``__cuda_array_interface__`` (passed through;
        they must be C-contiguous and stay alive until the next batch, which this holds).
    input_names : optional order of the inputs for list/tuple batches.
    device_memory : DeviceMemory, optional; default :func:`default_device_memory`, created on
        the first host array.
    """

    def __init__(
        self,
        dataset: Iterable[Batch],
        *,
        input_names: Optional[Sequence[str]] = None,
        device_memory: Optional[DeviceMemory] = None,
        device_memory_factory: Callable[[], DeviceMemory] = default_device_memory,
    ) -> None:
        self._dataset = dataset
        self._iter: Optional[Iterator[Batch]] = None
        self.input_names = list(input_names) if input_names is not None else None
        self._memory = device_memory
        self._factory = device_memory_factory
        self._buffers: Dict[str, Any] = {}  # name -> device handle (reused)
        self._capacity: Dict[str, int] = {}  # name -> bytes
        self._alive: List[Any] = []  # arrays of the current batch
        self.batches = 0
        self.samples = 0
        self.done = False

    def get_batch(self, names: Sequence[str]) -> Optional[List[int]]:
        """One device pointer per name in ``names`` order, or None when the data has ended."""
        if self.done:
            return None
        if self._iter is None:
            self._iter = iter(self._dataset)
        try:
            batch = next(self._iter)
        except StopIteration:
            self.close()
            return None
        arrays = self._match(batch, list(names))
        self._alive = []
        ptrs = [self._to_device(n, a) for n, a in zip(names, arrays)]
        self.batches += 1
        first = arrays[0] if arrays else None
        shape: Tuple[int, ...] = tuple(getattr(first, "shape", ()))
        self.samples += int(shape[0]) if len(shape) else 1
        return ptrs

    def _match(self, batch: Batch, names: List[str]) -> List[Any]:
        where = f"calibration batch {self.batches}"
        if isinstance(batch, Mapping):
            absent = [n for n in names if n not in batch]
            if absent:
                raise KeyError(
                    f"trtcal: {where} has no input {absent[0]!r}; TensorRT asks for {names}, "
                    f"the batch has {list(batch)}"
                )
            return [batch[n] for n in names]
        if isinstance(batch, (list, tuple)):
            order = self.input_names or names
            if len(batch) != len(order):
                raise ValueError(
                    f"trtcal: {where} has {len(batch)} arrays but the network has "
                    f"{len(order)} inputs {order}; give a dict name -> array"
                )
            by_name = dict(zip(order, batch))
            absent = [n for n in names if n not in by_name]
            if absent:
                raise KeyError(
                    f"trtcal: TensorRT asks for input {absent[0]!r}, which input_names {order} "
                    "lacks"
                )
            return [by_name[n] for n in names]
        if len(names) != 1:
            raise ValueError(
                f"trtcal: {where} is a single array but the network has {len(names)} inputs "
                f"{names}; give a dict name -> array"
            )
        return [batch]

    def _to_device(self, name: str, a: Any) -> int:
        cai = getattr(a, "__cuda_array_interface__", None)
        if cai is not None:
            if cai.get("typestr", "").endswith("f8"):
                raise TypeError(
                    f"trtcal: calibration input '{name}' is a float64 device array; TensorRT "
                    "inputs are float32/float16/int32/...: convert it first"
                )
            strides = cai.get("strides")
            if strides is not None and not _c_contiguous(
                cai["shape"], strides, int(cai["typestr"][2:])
            ):
                raise ValueError(
                    f"trtcal: calibration input '{name}' is a non-contiguous device array; "
                    "pass a contiguous copy"
                )
            self._alive.append(a)
            return int(cai["data"][0])
        if not isinstance(a, np.ndarray):
            if hasattr(a, "__dlpack__") or hasattr(a, "device"):
                raise TypeError(
                    f"trtcal: calibration input '{name}' is a {type(a).__name__} without "
                    "__cuda_array_interface__; pass NumPy arrays or CuPy/PyTorch CUDA tensors"
                )
            a = np.asarray(a)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        elif a.dtype == object:
            raise TypeError(f"trtcal: calibration input '{name}' is not a numeric array")
        a = np.ascontiguousarray(a)
        if self._memory is None:
            self._memory = self._factory()
        nbytes = a.nbytes
        if self._capacity.get(name, -1) < nbytes:
            old = self._buffers.pop(name, None)
            if old is not None:
                self._memory.free(old)
            self._buffers[name] = self._memory.allocate(nbytes)
            self._capacity[name] = nbytes
        handle = self._buffers[name]
        self._memory.upload(handle, a)
        return self._memory.pointer(handle)

    def close(self) -> None:
        """Frees the device buffers; later get_batch calls return None."""
        self.done = True
        self._alive = []
        if self._memory is not None:
            for h in self._buffers.values():
                self._memory.free(h)
        self._buffers.clear()
        self._capacity.clear()

    @property
    def allocated_bytes(self) -> int:
        return sum(self._capacity.values())


def _c_contiguous(shape: Sequence[int], strides: Sequence[int], itemsize: int) -> bool:
    expected = itemsize
    for dim, st in zip(reversed(shape), reversed(strides)):
        if dim != 1 and st != expected:
            return False
        expected *= dim
    return True


# ---------------------------------------------------------------------- cache bytes


def cache_bytes_for(table: CalibrationTable, algorithm: str, tensorrt_version: str) -> bytes:
    """``table`` as TensorRT cache bytes with the header TensorRT ``tensorrt_version`` expects
    from a calibrator of ``algorithm`` (it ignores a cache whose header differs)."""
    if not isinstance(table, CalibrationTable):
        table = CalibrationTable(table)
    return table.to_cache_bytes(tensorrt_version=tensorrt_version, algorithm=algorithm)


# ---------------------------------------------------------------------- calibrators


class _CalibratorCore:
    """The behaviour shared by every calibrator; mixed with a TensorRT base class at runtime."""

    _trt_base: Any = None
    algorithm: str = "EntropyCalibration2"

    def __init__(
        self,
        dataset: Optional[Iterable[Batch]] = None,
        *,
        table: Optional[Union[CalibrationTable, Mapping[str, float]]] = None,
        cache_path: Optional[Union[str, "os.PathLike[str]"]] = None,
        input_names: Optional[Sequence[str]] = None,
        batch_size: int = 1,
        device_memory: Optional[DeviceMemory] = None,
        stream: Any = 0,
        tensorrt_version: Optional[str] = None,
    ) -> None:
        self._trt_base.__init__(self)  # pybind11 base classes must be initialised explicitly
        if dataset is None and table is None and cache_path is None:
            raise ValueError("trtcal: a calibrator needs a dataset, a table or a cache_path")
        if table is not None and not isinstance(table, CalibrationTable):
            table = CalibrationTable(table)
        self.input_table = table
        self.cache_path = os.fspath(cache_path) if cache_path is not None else None
        self.batch_size = int(batch_size)
        self.tensorrt_version = tensorrt_version or str(load_tensorrt("calibrators").__version__)
        self.feeder = None
        if dataset is not None:
            self.feeder = BatchFeeder(
                dataset,
                input_names=input_names,
                device_memory=device_memory,
                device_memory_factory=lambda: default_device_memory(stream),
            )
        self.table: Optional[CalibrationTable] = None  # what TensorRT wrote back
        self.error: Optional[BaseException] = None
        self.used: Optional[str] = (
            None  # 'table', 'cache file' or 'calibration': where TensorRT's ranges came from
        )

    # -- TensorRT callbacks (they must not raise into TensorRT)
    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names, *unused) -> Optional[List[int]]:
        if self.feeder is None:
            return None
        try:
            ptrs = self.feeder.get_batch(list(names))
        except Exception as exc:  # TensorRT would swallow it: keep it and stop calibration
            self.error = exc
            log.error("trtcal: calibration stopped: %s", exc)
            self.feeder.close()
            return None
        if ptrs is not None:
            self.used = "calibration"
        return ptrs

    def read_calibration_cache(self, *unused) -> Optional[bytes]:
        try:
            if self.input_table is not None:
                self.used = "table"
                return cache_bytes_for(self.input_table, self.algorithm, self.tensorrt_version)
            if self.cache_path and os.path.exists(self.cache_path):
                with open(self.cache_path, "rb") as f:
                    data = f.read()
                parse_cache(data, source=self.cache_path)  # refuse non-TensorRT files loudly
                self.used = "cache file"
                return data
        except Exception as exc:
            self.error = exc
            log.error("trtcal: cannot hand the calibration cache to TensorRT: %s", exc)
        return None

    def write_calibration_cache(self, cache, *unused) -> None:
        try:
            data = bytes(cache)
            self.table = CalibrationTable.from_calibration_cache(
                parse_cache(data, source="TensorRT's cache"), source="TensorRT calibration"
            )
            if self.cache_path:
                atomic_write(self.cache_path, data)
        except Exception as exc:
            self.error = exc
            log.error("trtcal: cannot save TensorRT's calibration cache: %s", exc)

    def free(self) -> None:
        """Frees the device buffers (also done at the end of the data and on deletion)."""
        if self.feeder is not None:
            self.feeder.close()

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:
            pass


class _LegacyCore(_CalibratorCore):
    """IInt8LegacyCalibrator also asks for a quantile, a regression cutoff and a histogram cache."""

    quantile: float = 0.9999
    regression_cutoff: float = 1.0

    def get_quantile(self) -> float:
        return self.quantile

    def get_regression_cutoff(self) -> float:
        return self.regression_cutoff

    def read_histogram_cache(self, *unused) -> None:
        return None

    def write_histogram_cache(self, *unused) -> None:
        return None


_CLASSES: Dict[str, type] = {}


def calibrator_class(algorithm: str = "EntropyCalibration2") -> type:
    """The calibrator class on TensorRT's base class for ``algorithm`` (built on first use)."""
    if algorithm not in BASE_CLASSES:
        raise ValueError(
            f"trtcal: unknown calibration algorithm '{algorithm}'; accepted: {list(BASE_CLASSES)}"
        )
    if algorithm not in _CLASSES:
        trt = require_implicit_int8(f"an INT8 calibrator ({algorithm})")
        base_name = BASE_CLASSES[algorithm]
        base = getattr(trt, base_name, None)
        if base is None:
            raise AttributeError(f"trtcal: this tensorrt ({trt.__version__}) has no {base_name}")
        core = _LegacyCore if algorithm == "LegacyCalibration" else _CalibratorCore
        _CLASSES[algorithm] = type(
            f"Trtcal{base_name[5:]}",
            (core, base),
            {"_trt_base": base, "algorithm": algorithm, "__module__": __name__},
        )
    return _CLASSES[algorithm]


def make_calibrator(
    dataset: Optional[Iterable[Batch]] = None, algorithm: str = "EntropyCalibration2", **kwargs: Any
):
    """A calibrator for ``algorithm`` (see the module docstring for the arguments)."""
    return calibrator_class(algorithm)(dataset, **kwargs)


class _CalibratorFactory:
    """Calling the class builds an instance of the real subclass of TensorRT's base."""

    algorithm = "EntropyCalibration2"

    def __new__(cls, dataset: Optional[Iterable[Batch]] = None, **kwargs: Any):
        return make_calibrator(dataset, cls.algorithm, **kwargs)


class EntropyCalibrator2(_CalibratorFactory):
    """A ``tensorrt.IInt8EntropyCalibrator2`` fed by trtcal (TensorRT's default choice)."""

    algorithm = "EntropyCalibration2"


class EntropyCalibrator(_CalibratorFactory):
    """A ``tensorrt.IInt8EntropyCalibrator`` fed by trtcal."""

    algorithm = "EntropyCalibration"


class MinMaxCalibrator(_CalibratorFactory):
    """A ``tensorrt.IInt8MinMaxCalibrator`` fed by trtcal."""

    algorithm = "MinMaxCalibration"


class LegacyCalibrator(_CalibratorFactory):
    """A ``tensorrt.IInt8LegacyCalibrator`` fed by trtcal."""

    algorithm = "LegacyCalibration"
