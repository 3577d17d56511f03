"""Running the model and exposing the activations to calibrate.

:class:`OrtRunner` (the default) adds the chosen intermediate tensors to an ONNX model's
outputs and runs it with ONNX Runtime (CPU, or CUDA with onnxruntime-gpu); activations come
back as host arrays. :class:`TensorRTRunner` builds an FP32 TensorRT engine with every layer
output marked (shape and constant layers excepted) and hands its device buffers straight to
the CUDA statistics kernels, with no copy to the host.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..core._backend import cuda_available
from ..core.names import matches
from ..formats._onnx_files import external_data_files, load_onnx  # noqa: F401 - re-exported
from ..formats.tensorrt._runtime import load_tensorrt, parse_major
from ..formats.tensorrt.buffers import DeviceAllocator
from .data import InputSpec

ModelLike = Union[str, "os.PathLike[str]", Any]  # path or onnx.ModelProto

# Bytes of activations one ONNX Runtime run may return (``--max-memory``, GB): ONNX Runtime
# hands back every requested activation of a run at once, so a batch is split into sub-batches
# of about this size. 0 or None: no limit.
DEFAULT_MAX_MEMORY = 1.5e9

# ONNX TensorProto element types that hold activations trtcal calibrates
_FLOAT_TYPES = {1: "float32", 10: "float16", 16: "bfloat16"}
_ONNX_TO_NUMPY = {
    1: np.float32,
    10: np.float16,
    11: np.float64,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    12: np.uint32,
    13: np.uint64,
}
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(int16)": np.int16,
}


@dataclass(frozen=True)
class TensorSelection:
    """Which activations to calibrate: all float tensors (default), or those of some op types
    and/or whose names match glob or regular-expression patterns.

    Parameters
    ----------
    op_types : op types whose activations are kept: what they read (weights and constants
        excepted) and what they write (e.g. ``("Conv", "Relu")``); None keeps all.
    names : glob patterns (``"*/conv*"``) or ``re:<regex>`` patterns on tensor names; None keeps
    all.
    inputs : also calibrate the model's float inputs (TensorRT needs their ranges too).
    """

    op_types: Optional[Tuple[str, ...]] = None
    names: Optional[Tuple[str, ...]] = None
    inputs: bool = True

    def matches_name(self, name: str) -> bool:
        return matches(name, self.names)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "op_types": list(self.op_types) if self.op_types else None,
            "names": list(self.names) if self.names else None,
            "inputs": self.inputs,
        }


def model_digest(model: ModelLike) -> str:
    """sha256 (hex, whole) of the model file (or serialised proto): provenance, and what refuses
    resuming a changed model."""
    h = hashlib.sha256()
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(model.SerializeToString())
    return h.hexdigest()


def calibration_tensors(model, selection: TensorSelection = TensorSelection()) -> List[str]:
    """Float activations of an ONNX model in graph order: node outputs (not initializers, not
    Constant outputs, not shape/int tensors) and, with ``selection.inputs``, the float inputs."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort; unknown types are decided at run time
        inferred = model
    g = inferred.graph
    elem: Dict[str, int] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.elem_type:
            elem[vi.name] = t.elem_type
    init = {i.name for i in g.initializer}
    consts = {o for n in g.node if n.op_type == "Constant" for o in n.output}
    out: List[str] = []
    seen = set()

    def take(name: str) -> None:
        if not name or name in seen or name in init or name in consts:
            return
        t = elem.get(name)
        if t is not None and t not in _FLOAT_TYPES:
            return  # integer / bool / shape tensors
        if selection.matches_name(name):
            out.append(name)
            seen.add(name)

    if selection.inputs and not selection.op_types:
        for i in g.input:
            if elem.get(i.name) in _FLOAT_TYPES:
                take(i.name)
    for node in g.node:
        if node.op_type in ("Constant", "Shape", "Size", "ConstantOfShape"):
            continue
        if selection.op_types and node.op_type not in selection.op_types:
            continue
        if selection.op_types:
            # the activations these ops read: a Q/DQ model quantizes them, and an INT8 layer
            # needs the range of its inputs as much as of its outputs
            for i in node.input:
                take(i)
        for o in node.output:
            take(o)
    return out


class Runner:
    """Runs batches; ``run(inputs)`` returns {tensor name: activation} for the chosen tensors."""

    specs: List[InputSpec]
    tensors: List[str]
    device = "cpu"  # where the activations live: 'cpu' or 'cuda'
    stream: Any = None

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, Any]:
        raise NotImplementedError

    def run_parts(self, inputs: Dict[str, np.ndarray]) -> Iterator[Tuple[slice, Dict[str, Any]]]:
        """Runs a batch as one or more sub-batches: yields (rows of the batch, activations).
        Runners whose memory grows with the batch split it; the others run it whole."""
        yield slice(0, None), self.run(inputs)

    def describe(self) -> Dict[str, Any]:
        return {}


class OrtRunner(Runner):
    """ONNX Runtime with the chosen intermediate tensors appended to the graph outputs.

    Parameters
    ----------
    model : path or onnx.ModelProto
    selection : TensorSelection
    providers : ONNX Runtime providers; default CUDA when available (onnxruntime-gpu), then CPU.
    threads : intra-op threads (0: ONNX Runtime's default).
    device_id : the GPU for the CUDA provider (default 0; one per rank in distributed runs).
    max_memory : bytes of activations one run may return (default 1.5e9; 0 or None: no limit).
        ONNX Runtime returns every requested activation of a run at once, so ``run_parts``
        splits a batch into sub-batches of about this size (the bytes per sample are measured
        on a one-sample first run). The statistics do not depend on the split (histograms are
        batch-independent), so the table is the same for any budget.
    """

    def __init__(
        self,
        model: ModelLike,
        selection: TensorSelection = TensorSelection(),
        providers: Optional[Sequence[str]] = None,
        threads: int = 0,
        device_id: Optional[int] = None,
        max_memory: Optional[float] = DEFAULT_MAX_MEMORY,
    ) -> None:
        import onnx
        import onnxruntime as ort

        proto = load_onnx(model)
        self.tensors = calibration_tensors(proto, selection)
        if not self.tensors:
            raise ValueError(
                "trtcal: no float activations match the tensor selection "
                f"{selection.to_dict()} in this model"
            )
        aug = onnx.ModelProto()
        aug.CopyFrom(proto)
        existing = {o.name for o in aug.graph.output}
        for t in self.tensors:
            if t not in existing:
                aug.graph.output.append(onnx.ValueInfoProto(name=t))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        if providers is None:
            avail = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        self.providers = list(providers)
        chosen: List[Any] = list(self.providers)
        if device_id is not None:
            chosen = [
                (p, {"device_id": int(device_id)}) if p == "CUDAExecutionProvider" else p
                for p in chosen
            ]
        if aug.ByteSize() < (2 << 30) - (1 << 20):
            self.session = ort.InferenceSession(aug.SerializeToString(), opts, providers=chosen)
        else:  # > 2 GB protobuf limit: through a temporary file with external data
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="trtcal-ort-")
            path = os.path.join(self._tmp.name, "model.onnx")
            onnx.save(aug, path, save_as_external_data=True, location="model.data")
            self.session = ort.InferenceSession(path, opts, providers=chosen)
        init = {i.name for i in proto.graph.initializer}
        self.specs = [
            InputSpec(
                i.name,
                tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape),
                np.dtype(_ORT_TYPES.get(i.type, np.float32)),
            )
            for i in self.session.get_inputs()
            if i.name not in init
        ]
        self._out_names = [o.name for o in self.session.get_outputs()]
        self._out_index = {n: i for i, n in enumerate(self._out_names)}
        self._wanted = set(self.tensors)
        self.max_memory = max_memory
        self.bytes_per_sample: Optional[float] = None  # measured on the first split batch
        # only a batch axis the model leaves free can be split
        self._splittable = bool(self.specs) and all(
            sp.shape and sp.shape[0] is None for sp in self.specs
        )

    def rows_per_run(self) -> Optional[int]:
        """Samples per sub-batch under ``max_memory`` (None: not known yet, or no limit); at
        least 2 (see :meth:`run_parts`)."""
        if not self.max_memory or self.bytes_per_sample is None:
            return None
        return max(2, int(float(self.max_memory) // max(self.bytes_per_sample, 1.0)))

    def run_parts(self, inputs: Dict[str, np.ndarray]) -> Iterator[Tuple[slice, Dict[str, Any]]]:
        """Runs the batch in sub-batches whose activations fit ``max_memory``; yields
        (rows, activations). A sub-batch has at least 2 samples: ONNX Runtime's CPU kernels
        compute some layers of a one-sample batch in another order (a matrix-vector product
        where a larger batch gets a matrix product), which moves their last bits; from 2
        samples on, a sample's activations do not depend on the sub-batch (tested on a real
        text detector), so the statistics are the same for any budget."""
        n = _rows(inputs)
        if not self.max_memory or not self._splittable or n is None or n < 4:
            yield slice(0, None), self.run(inputs)
            return
        start = 0
        if self.bytes_per_sample is None:  # two samples first: how many bytes a sample returns
            acts = self.run(_take(inputs, 0, 2))
            self.bytes_per_sample = float(sum(getattr(v, "nbytes", 0) for v in acts.values())) / 2
            yield slice(0, 2), acts
            del acts
            start = 2
        step = self.rows_per_run() or n
        lo = start
        while lo < n:
            hi = min(lo + step, n)
            if n - hi == 1:
                hi = n  # never leave a one-sample sub-batch
            part = inputs if (lo, hi) == (0, n) else _take(inputs, lo, hi)
            yield slice(lo, hi), self.run(part)
            lo = hi

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, Any]:
        values = self.session.run(self._out_names, inputs)
        out: Dict[str, Any] = {}
        for name in self.tensors:
            if name in inputs:
                v = inputs[name]
            else:
                v = values[self._out_index[name]]
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.dtype != np.float64:
                out[name] = v
            elif isinstance(v, np.ndarray) and v.dtype == np.float64:
                out[name] = v.astype(np.float32)
        return out

    def describe(self) -> Dict[str, Any]:
        import onnxruntime as ort

        return {"runner": "onnxruntime", "version": ort.__version__, "providers": self.providers}


def _rows(inputs: Dict[str, np.ndarray]) -> Optional[int]:
    """The batch size shared by every input (their first axis), or None."""
    sizes = {int(v.shape[0]) for v in inputs.values() if getattr(v, "ndim", 0) >= 1}
    if len(sizes) != 1 or any(getattr(v, "ndim", 0) < 1 for v in inputs.values()):
        return None
    return sizes.pop()


def _take(inputs: Dict[str, np.ndarray], lo: int, hi: int) -> Dict[str, np.ndarray]:
    return {k: v[lo:hi] for k, v in inputs.items()}


class TensorRTRunner(Runner):
    """An FP32 TensorRT engine (TensorRT 10/11 API) with every layer output marked.

    Shape and constant layers, non-float tensors and loop internals are left out. Device
    buffers come from PyTorch (or CuPy) and go to the statistics kernels as device arrays.
    """

    device = "cuda"

    def __init__(
        self,
        model: ModelLike,
        selection: TensorSelection = TensorSelection(),
        *,
        batch_size: int = 1,
        workspace_gb: float = 4.0,
    ) -> None:
        trt = load_tensorrt(
            "the TensorRT calibration runner (runner='tensorrt'; 'onnxruntime' runs without it)"
        )
        self.trt = trt
        self._alloc = DeviceAllocator()
        path = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
        proto = load_onnx(model)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if (
            hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
            and parse_major(trt.__version__) < 10
        ):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        ok = parser.parse_from_file(path) if path else parser.parse(proto.SerializeToString())
        if not ok:
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"trtcal: TensorRT could not parse the model: {errs}")
        # the tensors ONNX Runtime would report (top-level node outputs and graph inputs, as
        # chosen):
        # TensorRT may not mark a tensor inside a Loop or If body as an output, and its own
        # internal tensors ('(Unnamed Layer* N) ...') have no ONNX name to calibrate under
        wanted = set(calibration_tensors(proto, selection))
        float_types = {trt.float32, trt.float16}
        if hasattr(trt, "bfloat16") and self._bfloat16_buffers():
            float_types.add(trt.bfloat16)
        names: List[str] = []
        for i in range(network.num_inputs):
            t = network.get_input(i)
            if t.name in wanted and t.dtype in float_types:
                names.append(t.name)
        for li in range(network.num_layers):
            layer = network.get_layer(li)
            if layer.type in (trt.LayerType.SHAPE, trt.LayerType.CONSTANT):
                continue
            for oi in range(layer.num_outputs):
                t = layer.get_output(oi)
                if t is None or t.name not in wanted or t.name in names:
                    continue
                if t.dtype not in float_types or getattr(t, "is_shape_tensor", False):
                    continue
                if not t.is_network_output:
                    network.mark_output(t)
                names.append(t.name)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        if hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # true FP32: TF32 would shift the activations
        self.specs = []
        profile = None
        for i in range(network.num_inputs):
            t = network.get_input(i)
            shape = tuple(int(d) for d in t.shape)
            if any(d < 0 for d in shape):
                profile = profile or builder.create_optimization_profile()
                fixed = tuple(batch_size if (d < 0 and k == 0) else d for k, d in enumerate(shape))
                if any(d < 0 for d in fixed):
                    raise ValueError(
                        f"trtcal: TensorRT input '{t.name}' has dynamic dimensions beyond the "
                        "batch "
                        f"axis {shape}; use the ONNX Runtime runner or fix the shape"
                    )
                smallest = tuple(1 if (d < 0 and k == 0) else d for k, d in enumerate(shape))
                profile.set_shape(t.name, smallest, fixed, fixed)  # a short last batch runs too
            if hasattr(trt, "bfloat16") and t.dtype == trt.bfloat16:
                raise ValueError(
                    f"trtcal: TensorRT input '{t.name}' is bfloat16, which NumPy data cannot feed; "
                    "use the ONNX Runtime runner"
                )
            self.specs.append(
                InputSpec(
                    t.name,
                    tuple(None if d < 0 else d for d in shape),
                    np.dtype(trt.nptype(t.dtype)),
                )
            )
        if profile is not None:
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError("trtcal: TensorRT failed to build the FP32 calibration engine")
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError(
                "trtcal: TensorRT could not deserialize the FP32 calibration engine it built"
            )
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(
                "trtcal: TensorRT could not create an execution context (out of device memory?)"
            )
        self.tensors = names
        # TensorRT runs on the caller's current stream, so the NaN/Inf screening, the row
        # selection of skipped samples and the statistics kernels (all queued on it) follow the
        # engine without events, and buffers freed on a shape change are reused in order
        self.stream = self._alloc.current_stream()
        self._buffers: Dict[str, Any] = {}
        self._batch = batch_size

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, Any]:
        trt = self.trt
        self.stream = self._alloc.current_stream()
        for s in self.specs:
            a = np.ascontiguousarray(inputs[s.name])
            if not self.context.set_input_shape(s.name, a.shape):
                raise ValueError(
                    f"trtcal: TensorRT refused the shape {a.shape} for input '{s.name}' (outside "
                    "the "
                    f"engine's profile: batch 1 to {self._batch})"
                )
            buf = self._buffer(s.name, a.shape, a.dtype)
            self._alloc.upload(buf, a, self.stream)
            self.context.set_tensor_address(s.name, self._alloc.ptr(buf))
        outs: Dict[str, Any] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ValueError(
                    f"trtcal: TensorRT output '{name}' has a shape that depends on the data "
                    f"{shape} "
                    "(e.g. after NonZero); leave it out with --tensors, or use the ONNX Runtime "
                    "runner"
                )
            buf = self._buffer(name, shape, self.engine.get_tensor_dtype(name))
            self.context.set_tensor_address(name, self._alloc.ptr(buf))
            outs[name] = buf
        if not self.context.execute_async_v3(self._alloc.stream_handle(self.stream)):
            raise RuntimeError("trtcal: TensorRT execution failed")
        result = {}
        for name in self.tensors:
            result[name] = self._buffers[name]  # device arrays: inputs included (uploaded above)
        return result

    def _buffer(self, name: str, shape: Tuple[int, ...], dtype: Any) -> Any:
        """The device buffer of ``name`` (``dtype``: a TensorRT DataType or a NumPy dtype)."""
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != tuple(shape):
            buf = self._alloc.empty(shape, dtype, self.trt)
            self._buffers[name] = buf
        return buf

    def _bfloat16_buffers(self) -> bool:
        return self._alloc.torch is not None  # CuPy has no bfloat16 arrays

    def describe(self) -> Dict[str, Any]:
        return {"runner": "tensorrt", "version": self.trt.__version__, "precision": "fp32"}


def make_runner(
    model: ModelLike,
    selection: TensorSelection,
    runner: str = "auto",
    batch_size: int = 1,
    device_id: Optional[int] = None,
    max_memory: Optional[float] = DEFAULT_MAX_MEMORY,
) -> Runner:
    """'auto' picks TensorRT when the tensorrt module and trtcal's CUDA build are present.

    ``device_id``: the GPU of ONNX Runtime's CUDA provider (TensorRT uses the current device);
    ``max_memory``: ONNX Runtime's budget of activation bytes per run (see :class:`OrtRunner`)."""
    if runner not in ("auto", "onnxruntime", "tensorrt"):
        raise ValueError(
            f"trtcal: runner must be 'auto', 'onnxruntime' or 'tensorrt', got {runner!r}"
        )
    if runner == "auto":
        import importlib.util

        runner = (
            "tensorrt"
            if importlib.util.find_spec("tensorrt") and cuda_available()
            else "onnxruntime"
        )
    if runner == "tensorrt":
        return TensorRTRunner(model, selection, batch_size=batch_size)
    return OrtRunner(model, selection, device_id=device_id, max_memory=max_memory)
