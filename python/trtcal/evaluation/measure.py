"""Running Q/DQ models against the FP32 model on evaluation batches (ONNX Runtime or TensorRT).

Shared by :func:`trtcal.compare` and :func:`trtcal.analyze`. In ONNX Runtime, Q/DQ models run
with graph optimisations off, so QuantizeLinear/DequantizeLinear execute as written (round
half to even, saturate to [-128, 127]): the INT8 rounding TensorRT applies, simulated in
float; with ``backend="tensorrt"`` TensorRT builds and runs them (its fusions and INT8
kernels). The FP32 reference always runs in ONNX Runtime. The checks both commands make
before any pass (counts, the TensorRT runner and backend, the evaluation data) live here too.
Evaluation streams over the batches and keeps only sums
(:class:`~trtcal.evaluation.metrics.ErrorStats`);
input batches and FP32 outputs are kept in memory up to ``cache_bytes`` so that many
configurations can be measured without re-reading the data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..core._backend import require_cuda
from ..core._files import atomic_write
from ..formats.tensorrt._runtime import load_tensorrt
from ..formats.tensorrt.session import TensorRTSession
from ..pipeline.config import CalibrationConfig
from ..pipeline.data import InputSpec, Source, batches, open_source
from ..pipeline.runners import _ORT_TYPES, load_onnx
from .metrics import ErrorStats
from .tasks import TaskSpec, TaskStats, resolve_task

DEFAULT_CACHE_BYTES = 1 << 30


BACKENDS = ("auto", "onnxruntime", "tensorrt")


def resolve_backend(backend: str) -> str:
    """'auto': TensorRT when the ``tensorrt`` module and a CUDA array library (PyTorch or CuPy)
    are importable, else ONNX Runtime. An explicit 'tensorrt' is checked now (the module and
    PyTorch or CuPy), so that its absence is an error before any pass, not after it."""
    if backend not in BACKENDS:
        raise ValueError(f"trtcal: evaluate must be one of {BACKENDS}, got {backend!r}")
    import importlib.util

    has = importlib.util.find_spec
    if backend == "tensorrt":
        what = (
            "evaluating in TensorRT (--evaluate tensorrt; --evaluate onnxruntime needs no TensorRT)"
        )
        load_tensorrt(what)
        _require_device_arrays(what)
        return backend
    if backend != "auto":
        return backend
    return "tensorrt" if has("tensorrt") and (has("torch") or has("cupy")) else "onnxruntime"


def check_runner(runner: Any) -> None:
    """Before the statistics pass: ``runner='tensorrt'`` needs the ``tensorrt`` module, trtcal's
    CUDA build and PyTorch or CuPy (TensorRTUnavailableError / RuntimeError naming --runner).
    Other names are checked by :func:`trtcal.calibrate`; a Runner object is used as given."""
    if not isinstance(runner, str) or runner != "tensorrt":
        return

    what = (
        "the statistics pass in TensorRT (--runner tensorrt; --runner onnxruntime needs no "
        "TensorRT)"
    )
    load_tensorrt(what)
    require_cuda(what)
    _require_device_arrays(what)


def _require_device_arrays(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None and importlib.util.find_spec("cupy") is None:
        raise RuntimeError(
            f"trtcal: {what} needs PyTorch or CuPy for its device buffers, and neither is "
            "installed (pip install torch)"
        )


def check_before_pass(what: str, calibration: Any, cfg: CalibrationConfig) -> Tuple[str, Any]:
    """What ``compare`` and ``analyze`` would otherwise find only after their statistics pass:
    the counts, the evaluation backend, the runner, the evaluation data (all from ``cfg``).
    Returns (backend, opened evaluation source)."""
    check_counts(cfg.batch_size, cfg.max_samples, cfg.eval_samples)
    backend = resolve_backend(cfg.evaluate)
    if calibration is None:
        if cfg.data is None:
            raise ValueError(
                f"trtcal: {what} needs calibration data (data=...) or a calibration result"
            )
        check_runner(cfg.runner)
    return backend, open_eval_data(cfg.eval_data, cfg.preprocess, cfg.input_name)


def check_counts(
    batch_size: Optional[int] = None,
    max_samples: Optional[int] = None,
    eval_samples: Optional[int] = None,
) -> None:
    """Raises ValueError, before any work, for a batch size or sample count below 1 (None: the
    default)."""
    for name, value in (
        ("batch_size", batch_size),
        ("max_samples", max_samples),
        ("eval_samples", eval_samples),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"trtcal: {name} (--{name.replace('_', '-')}) must be an integer >= 1, got "
                f"{value!r}"
            )


def open_eval_data(
    data: Any, preprocess: Any = None, input_name: Optional[str] = None
) -> Optional[Source]:
    """Opens held-out evaluation data before any pass (None: none given), so that a missing path
    or an unreadable form is reported at once, naming --eval-data rather than the calibration
    data."""
    if data is None:
        return None
    try:
        return open_source(data, preprocess, input_name)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        msg = str(exc).replace("calibration data", "evaluation data (--eval-data)", 1)
        if msg == str(exc):
            raise
        kind = type(exc) if type(exc) in (FileNotFoundError, ValueError, TypeError) else ValueError
        raise kind(msg) from None


def backend_note(backend: str) -> str:
    """The line compare/analyze add to their notes. A TensorRT failure is not hidden by a
    fallback: it raises, and ``evaluate="onnxruntime"`` runs the models in ONNX Runtime."""
    return f"Q/DQ models evaluated in {'TensorRT' if backend == 'tensorrt' else 'ONNX Runtime'}"


def session(model: Any, threads: int = 0, backend: str = "onnxruntime"):
    """A session with ``run(names, feeds)``: ONNX Runtime with graph optimisations off (CUDA
    provider when present), or with ``backend="tensorrt"`` a TensorRT engine of the model
    (:class:`trtcal.tensorrt.session.TensorRTSession`: what TensorRT itself computes)."""
    if backend == "tensorrt":
        return TensorRTSession(model)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    avail = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    return ort.InferenceSession(data, opts, providers=providers)


def name_nodes(model: Any):
    """A copy of ``model`` whose unnamed nodes get unique names ``<op_type>_<index>`` (so each
    layer can be excluded by name)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(load_onnx(model))
    taken = {n.name for n in m.graph.node if n.name}
    for i, n in enumerate(m.graph.node):
        if not n.name:
            name, k = f"{n.op_type}_{i}", 1
            while name in taken:
                name, k = f"{n.op_type}_{i}_{k}", k + 1
            n.name = name
            taken.add(name)
    return m


def expose(model: Any, names: Sequence[str]):
    """A copy of ``model`` with ``names`` appended to the graph outputs."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
            have.add(n)
    return m


def dequantized_names(qmodel: Any, tensors: Sequence[str]) -> Dict[str, str]:
    """{activation: output of its per-tensor DequantizeLinear} in a Q/DQ model."""
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    want = set(tensors)
    out: Dict[str, str] = {}
    for n in qmodel.graph.node:
        if n.op_type != "DequantizeLinear" or any(a.name == "axis" for a in n.attribute):
            continue
        q = producer.get(n.input[0])
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in want:
            out.setdefault(q.input[0], n.output[0])
    return out


def model_outputs(model: Any) -> List[str]:
    return [o.name for o in model.graph.output]


def input_specs(sess) -> List[InputSpec]:

    return [
        InputSpec(
            i.name,
            tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape),
            np.dtype(_ORT_TYPES.get(i.type, np.float32)),
        )
        for i in sess.get_inputs()
    ]


def fixed_batch(specs: Sequence[InputSpec]) -> Optional[int]:
    dims = {s.shape[0] for s in specs if s.shape}
    return next(iter(dims)) if len(dims) == 1 and next(iter(dims)) is not None else None


class EvalSet:
    """Evaluation batches from a path, arrays or an iterable (the forms :func:`trtcal.calibrate`
    reads), kept in memory up to ``cache_bytes`` and re-read beyond that.

    ``digest`` is the sha256 of every batch's bytes (read once on first use).
    """

    def __init__(
        self,
        data: Any,
        specs: Sequence[InputSpec],
        batch_size: int,
        *,
        max_samples: Optional[int] = None,
        preprocess: Any = None,
        input_name: Optional[str] = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.source = open_source(data, preprocess, input_name)
        self.source.bind(specs)
        self.batch_size = int(batch_size)
        self.max_samples = max_samples
        self.cache_bytes = int(cache_bytes)
        self._cached: List[Dict[str, np.ndarray]] = []
        self._complete = False
        self._digest: Optional[str] = None
        self.samples = 0

    def __iter__(self) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
        if self._complete:
            yield from enumerate(self._cached)
            return
        h = hashlib.sha256()
        used, keep, n, samples = 0, True, 0, 0
        for b in batches(self.source, self.batch_size, max_samples=self.max_samples):
            if not b.names:
                continue
            for k in sorted(b.inputs):
                a = np.ascontiguousarray(b.inputs[k])
                h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode())
                h.update(a.tobytes())
            nbytes = sum(a.nbytes for a in b.inputs.values())
            if keep and used + nbytes <= self.cache_bytes:
                if len(self._cached) == n:
                    self._cached.append(b.inputs)
                used += nbytes
            else:
                keep = False
            samples += len(b.names)
            yield n, b.inputs
            n += 1
        if n == 0:
            raise ValueError("trtcal: no evaluation samples")
        self._digest = h.hexdigest()[:32]
        self.samples = samples
        self._complete = keep

    @property
    def digest(self) -> str:
        if self._digest is None:
            for _ in self:
                pass
        assert self._digest is not None
        return self._digest


class Reference:
    """The FP32 model with extra tensors exposed; model outputs of each batch are kept in memory
    up to ``cache_bytes`` (the exposed intermediate tensors never are)."""

    def __init__(
        self, model: Any, tensors: Sequence[str] = (), cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self.model = load_onnx(model)
        self.outputs = model_outputs(self.model)
        self.tensors = [t for t in tensors if t not in self.outputs]
        self.session = session(expose(self.model, self.tensors))
        self.specs = input_specs(self.session)
        self.cache_bytes = int(cache_bytes)
        self._cache: Dict[int, Dict[str, np.ndarray]] = {}
        self._used = 0

    def run(
        self, index: int, inputs: Mapping[str, np.ndarray], with_tensors: bool = False
    ) -> Dict[str, np.ndarray]:
        if not with_tensors and index in self._cache:
            return self._cache[index]
        names = self.outputs + (self.tensors if with_tensors else [])
        values = dict(zip(names, self.session.run(names, dict(inputs))))
        outs = {k: values[k] for k in self.outputs}
        size = sum(np.asarray(v).nbytes for v in outs.values())
        if index not in self._cache and self._used + size <= self.cache_bytes:
            self._cache[index] = outs
            self._used += size
        return values


def new_output_stats(
    outputs: Sequence[str], reference: Mapping[str, np.ndarray]
) -> Dict[str, ErrorStats]:
    """ErrorStats per model output; top-1 is counted for 2-D outputs with several classes."""
    stats = {}
    for o in outputs:
        v = np.asarray(reference[o])
        classes = 1 if v.ndim == 2 and v.shape[1] > 1 else None
        stats[o] = ErrorStats(o, classes_axis=classes)
    return stats


def measure(
    qmodel: Any,
    reference: Reference,
    evalset: EvalSet,
    layers: Optional[Mapping[str, str]] = None,
    backend: str = "onnxruntime",
) -> Tuple[Dict[str, ErrorStats], Dict[str, ErrorStats]]:
    """Runs ``qmodel`` over ``evalset`` against ``reference``: (per model output, per layer) stats.

    ``layers`` maps activations (exposed by ``reference``) to the tensors of ``qmodel`` to
    compare them with (the DequantizeLinear outputs). ``backend``: where ``qmodel`` runs (the
    FP32 reference always runs in ONNX Runtime).
    """
    layers = dict(layers or {})
    sess = session(expose(qmodel, list(layers.values())), backend=backend)
    names = reference.outputs + [v for v in layers.values() if v not in reference.outputs]
    out_stats: Dict[str, ErrorStats] = {}
    layer_stats = {t: ErrorStats(t) for t in layers}
    for i, inputs in evalset:
        ref = reference.run(i, inputs, with_tensors=bool(layers))
        got = dict(zip(names, sess.run(names, dict(inputs))))
        if not out_stats:
            out_stats = new_output_stats(reference.outputs, ref)
        for o in reference.outputs:
            out_stats[o].update(ref[o], got[o])
        for t, q in layers.items():
            layer_stats[t].update(ref[t], got[q])
    return out_stats, layer_stats


def task_spec(
    reference: Reference,
    evalset: EvalSet,
    task: Any = "auto",
    output_slices: Any = None,
    score_threshold: Optional[float] = None,
) -> TaskSpec:
    """The model's task and heads (:func:`trtcal.tasks.resolve_task`), from the FP32 outputs of
    the first evaluation batch (detected) or as declared."""
    for i, inputs in evalset:
        return resolve_task(reference.run(i, inputs), task, output_slices, score_threshold)
    raise ValueError("trtcal: no evaluation samples")


def measure_task(
    qmodel: Any,
    reference: Reference,
    evalset: EvalSet,
    spec: TaskSpec,
    layers: Optional[Mapping[str, str]] = None,
    backend: str = "onnxruntime",
) -> Tuple[TaskStats, Dict[str, ErrorStats]]:
    """Like :func:`measure`, with the task metrics: (TaskStats of the outputs, per-layer stats)."""
    layers = dict(layers or {})
    sess = session(expose(qmodel, list(layers.values())), backend=backend)
    names = reference.outputs + [v for v in layers.values() if v not in reference.outputs]
    stats = TaskStats(spec)
    layer_stats = {t: ErrorStats(t) for t in layers}
    for i, inputs in evalset:
        ref = reference.run(i, inputs, with_tensors=bool(layers))
        got = dict(zip(names, sess.run(names, dict(inputs))))
        stats.update(ref, got)
        for t, q in layers.items():
            layer_stats[t].update(ref[t], got[q])
    return stats, layer_stats


def accuracy_rows(
    model: Any,
    quantized: Any,
    eval_data: Any,
    *,
    task: Any = "auto",
    output_slices: Any = None,
    batch_size: Optional[int] = None,
    eval_samples: Optional[int] = None,
    preprocess: Any = None,
    input_name: Optional[str] = None,
    backend: str = "onnxruntime",
) -> List[Dict[str, Any]]:
    """Per-head accuracy of a quantized model against the FP32 model on evaluation data.

    Parameters
    ----------
    model : the FP32 ONNX model (path or ModelProto)
    quantized : its Q/DQ model (path or ModelProto), or a calibration table ({tensor: amax},
        a CalibrationTable) that :func:`trtcal.onnx.quantize` turns into one
    eval_data : evaluation data (any form :func:`trtcal.calibrate` reads)
    task, output_slices : as for :func:`trtcal.tasks.resolve_task` (default: detected)

    Returns
    -------
    list of dict, one per head (``head``, ``kind``, ``sqnr_db``, ``cosine``, ``max_abs_error``;
    ``top1_agreement``/``top5_agreement`` for classifier heads, ``mask_iou`` for masks) and one
    per detector output (``detections_reference``, ``detections_kept``, ...), then a last row
    ``{"head": "task", "task": ..., "metric_name": ..., "metric": ...}`` with the task metric
    of the worst head.
    """
    proto = load_onnx(model)
    if isinstance(quantized, Mapping):
        from ..formats.onnx import quantize

        usable = {
            k: float(v) for k, v in quantized.items() if float(v) > 0 and np.isfinite(float(v))
        }
        qmodel = quantize(proto, usable, missing="skip")
    else:
        qmodel = load_onnx(quantized)
    reference = Reference(proto)
    evalset = EvalSet(
        eval_data,
        reference.specs,
        fixed_batch(reference.specs) or batch_size or 16,
        max_samples=eval_samples,
        preprocess=preprocess,
        input_name=input_name,
    )
    spec = task_spec(reference, evalset, task, output_slices)
    stats, _ = measure_task(qmodel, reference, evalset, spec, backend=backend)
    return stats.head_rows() + [
        dict(stats.summary(), head="task", how=spec.how, samples=evalset.samples)
    ]


def summary(stats: Mapping[str, ErrorStats]) -> Dict[str, Any]:
    """One line for several outputs: the worst output's cosine/SQNR, the largest error, the
    mean top-1 agreement of the classifier outputs."""
    vals = list(stats.values())
    top = [s.top1 for s in vals if s.top1 is not None]
    return {
        "cosine": min(s.cosine for s in vals),
        "sqnr_db": min(s.sqnr_db for s in vals),
        "max_abs_error": max(s.max_abs for s in vals),
        "worst_sample_cosine": min(s.worst_cosine for s in vals),
        "top1_agreement": float(np.mean(top)) if top else None,
    }


def table_digest(table: Mapping[str, float]) -> str:
    items = sorted((k, repr(float(v))) for k, v in table.items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:32]


def safe_label(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)


def write_json(path: str, obj: Any) -> str:

    return atomic_write(path, json.dumps(obj, indent=1, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def pyplot():
    """matplotlib.pyplot with the Agg backend, or a clear ImportError."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "trtcal: plots need matplotlib (pip install 'trtcal[report]'); "
            "pass plots=False / --no-plots to skip them"
        ) from None
    return plt
