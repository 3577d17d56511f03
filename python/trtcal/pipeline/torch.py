"""Calibrating from a ``torch.nn.Module``: forward hooks feed every activation to the statistics
collectors where it lives (CUDA tensors go to the CUDA kernels on PyTorch's current stream, with
no copy to the host and no wait per batch).

    import trtcal.torch
    stats = trtcal.torch.collect(model, loader, max_batches=100)
    amax = stats.amax("entropy")            # {module name: amax}

Two sets of tensors: ``capture="outputs"`` (default) hooks every leaf module's output;
``capture="inputs"`` hooks the inputs of the layers TensorRT runs in INT8 with explicit Q/DQ
(convolutions and linear layers by default: the activation quantizers of pytorch-quantization
and ModelOpt), which for a CNN is about a third of the bytes and of the hooks.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Type, Union

from ..core._arrays import dense_axis_order
from ..core.collectors import launch_many
from ..core.names import matches
from ..core.progress import Progress
from .collect import ActivationStats

__all__ = ["collect", "TorchCollector", "quantizable_layers"]


def quantizable_layers() -> tuple:
    """The module classes whose inputs ``capture="inputs"`` hooks by default: convolutions
    (1-3d, transposed) and ``Linear``, where explicit-quantization TensorRT puts its Q/DQ pairs."""
    import torch.nn as nn

    return (
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.ConvTranspose3d,
        nn.Linear,
    )


def _float_dtypes():
    import torch

    return (torch.float32, torch.float16, torch.bfloat16)


def _match(name: str, patterns: Optional[Sequence[str]]) -> bool:
    return matches(name, patterns)


class TorchCollector:
    """Forward hooks on the chosen leaf modules of ``module`` that update ``stats``.

    A module called several times in one forward (torchvision's ResNet reuses one ReLU per
    block) gives one tensor per call: ``name``, ``name#1``, ``name#2`` ... A module with several
    tensor outputs gives ``name:0``, ``name:1`` ...

    Parameters
    ----------
    module : torch.nn.Module
    capture : ``"outputs"`` (each hooked module's output tensors) or ``"inputs"`` (its first
        positional input, named after the module; the default layers then are
        :func:`quantizable_layers`).
    layers : module classes to hook (default: every leaf module for outputs, the quantizable
        layers for inputs).
    names : glob or ``re:`` patterns on qualified module names (default: all).
    inputs : also collect the model's first positional input (as ``"input"``).
    stats : an existing :class:`ActivationStats` to add to (e.g. restored from a checkpoint).
    flush_bytes : activations are held until the end of each forward and then added in one
        batched update (three kernel launches for all of them); past this many bytes they are
        added earlier, bounding the extra memory.
    """

    def __init__(
        self,
        module: Any,
        *,
        layers: Optional[Sequence[Type[Any]]] = None,
        names: Optional[Union[str, Sequence[str]]] = None,
        inputs: bool = False,
        bins: int = 2048,
        stats: Optional[ActivationStats] = None,
        flush_bytes: int = 4 << 30,
        capture: str = "outputs",
    ) -> None:
        if capture not in ("outputs", "inputs"):
            raise ValueError(f"trtcal: capture must be 'outputs' or 'inputs', got {capture!r}")
        if isinstance(names, str):
            names = [names]  # one pattern, not its characters
        if isinstance(layers, type):
            layers = [layers]
        if capture == "inputs" and layers is None:
            layers = quantizable_layers()
        self.module = module
        self.capture = capture
        self.flush_bytes = flush_bytes
        self._pending: Dict[str, Any] = {}
        self._pending_bytes = 0
        self._learned = False  # the first forward reads every CUDA activation at once ...
        self._learning = False
        self._watch: Dict[str, Any] = {}
        self._inplace: set = set()  # ... and learns which ones later ops modify in place
        # names whose hook sees one CUDA float tensor that nothing modifies in place, with its
        # bytes (learned on the first forward): their hooks only hold the tensor (the checks run
        # at the flush), because a hook's host time adds to the forward's once the host, not the
        # GPU, is the bottleneck (benchmarks/NOTES.md, PyTorch hooks)
        self._fast: Dict[str, int] = {}
        self._learn_fast: Dict[str, int] = {}
        self._tensor_type: Any = None
        self._stream = 0
        self._codes: Dict[Any, int] = {}
        self.stats = stats if stats is not None else ActivationStats(bins=bins)
        self.inputs = inputs
        self._calls: Dict[str, int] = {}
        self._handles: List[Any] = []
        self._floats = _float_dtypes()
        for qname, m in module.named_modules():
            if not qname or any(True for _ in m.children()):
                continue  # the root and containers: their outputs are their last leaf's
            if layers is not None and not isinstance(m, tuple(layers)):
                continue
            if not _match(qname, names):
                continue
            if capture == "inputs":
                self._handles.append(m.register_forward_pre_hook(self._pre_hook(qname)))
            else:
                self._handles.append(m.register_forward_hook(self._hook(qname)))
        if not self._handles:
            raise ValueError("trtcal: no module of this model matches the chosen layers/names")

    def _hook(self, qname: str) -> Callable[..., None]:
        def hook(mod: Any, args: Any, out: Any) -> None:
            k = self._calls.get(qname, 0)
            self._calls[qname] = k + 1
            base = qname if k == 0 else f"{qname}#{k}"
            if type(out) is self._tensor_type and base in self._fast:
                self._hold(base, out)
            else:
                self._add(base, out)

        return hook

    def _pre_hook(self, qname: str) -> Callable[..., None]:
        def hook(mod: Any, args: Any) -> None:
            k = self._calls.get(qname, 0)
            self._calls[qname] = k + 1
            if args:
                base = qname if k == 0 else f"{qname}#{k}"
                x = args[0]
                if type(x) is self._tensor_type and base in self._fast:
                    self._hold(base, x)
                else:
                    self._add(base, x)

        return hook

    def _hold(self, name: str, t: Any) -> None:
        """The fast path: hold the tensor for the end-of-forward batch (checked at the flush)."""
        self._pending[name] = (t, t._version)
        self._pending_bytes += self._fast[name]
        if self._pending_bytes >= self.flush_bytes:
            self.flush()

    def _add(self, base: str, out: Any) -> None:
        tensors = _tensors(out)
        for i, t in enumerate(tensors):
            name = base if len(tensors) == 1 else f"{base}:{i}"
            t = self._checked(name, t)
            if t is None:
                continue
            if self._learning or name in self._inplace:
                # read now, before a later in-place op (ReLU(inplace=True), out += identity)
                # changes it; the first forward learns which activations those are
                self._launch([(name, t)])
                if self._learning:
                    self._watch[name] = (t, t._version)
                    if len(tensors) == 1:
                        self._learn_fast[name] = t.numel() * t.element_size()
                continue
            # held until the end of the forward (or flush_bytes), then added in one batch:
            # three kernel launches for all of them instead of three per tensor
            self._pending[name] = (t, t._version)
            self._pending_bytes += t.numel() * t.element_size()
            if self._pending_bytes >= self.flush_bytes:
                self.flush()

    def _checked(self, name: str, t: Any) -> Any:
        """A CUDA float tensor to read (maybe a dense device copy), or None: skipped (not float,
        empty) or already added (a host tensor goes to the CPU statistics here)."""
        if t.dtype not in self._floats or t.numel() == 0:
            return None
        t = t.detach()  # shares the storage and the version counter
        if not t.is_contiguous() and not _dense(t):
            t = t.contiguous()  # a device copy, never a host one
        if not t.is_cuda:
            self.stats.add({name: t})
            return None
        return t

    def _launch(self, items: List[Any]) -> None:

        dev = items[0][1].device.index or 0
        codes = self._codes
        launch_many(
            [self.stats._collector(n) for n, _ in items],
            [t.data_ptr() for _, t in items],
            [codes[t.dtype] for _, t in items],
            [t.numel() for _, t in items],
            self._stream,
            dev,
        )

    def flush(self) -> None:
        """Adds the activations held since the last flush to the statistics (one batched update)."""
        pending, self._pending, self._pending_bytes = self._pending, {}, 0
        if not pending:
            return
        stale = [n for n, (t, v) in pending.items() if t._version != v]
        if stale:
            self._inplace.update(stale)
            for n in stale:
                self._fast.pop(n, None)
            raise RuntimeError(
                f"trtcal: activations {stale[:5]} were modified in place after their hook ran in "
                "this batch "
                "and a previous batch had not shown it (dynamic control flow?); this batch's "
                "statistics are "
                "incomplete. They are read immediately from now on: run the batch again."
            )
        by_device: Dict[int, List[Any]] = {}
        codes = self._codes
        for n, (t, _) in pending.items():
            if not (t.is_cuda and t.dtype in codes and t.is_contiguous()):
                # a fast-path tensor that changed kind since the first forward (dtype, device,
                # layout): the full checks; its values are unchanged (version checked above)
                t = self._checked(n, t)
                if t is None:
                    continue
            elif t.numel() == 0:
                continue
            by_device.setdefault(t.device.index or 0, []).append((n, t))
        for items in by_device.values():
            self._launch(items)

    def forward(self, batch: Any, forward: Optional[Callable[[Any, Any], Any]] = None) -> Any:
        """Runs one batch (under ``torch.no_grad``) and collects its activations.

        CUDA activations that later ops modify in place are read as soon as their hook runs;
        the others are held and added in one batched update at the end of the forward (the
        first forward reads everything at once and learns which are which).
        """
        import torch

        self._calls.clear()
        self._pending, self._pending_bytes = {}, 0
        device = _module_device(self.module)
        batch = _to(batch, device)
        if device is None:  # a module without parameters or buffers runs where its input is
            first = _first_tensor(batch)
            device = first.device if first is not None else torch.device("cpu")
        self._learning = not self._learned
        self._stream = (
            int(torch.cuda.current_stream(device).cuda_stream) if device.type == "cuda" else 0
        )
        if not self._codes:
            self._codes = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
            self._tensor_type = torch.Tensor
        # no_grad, not inference_mode: tensors made under inference_mode have no version
        # counter, which the in-place detection reads
        with torch.no_grad():
            if self.inputs:
                first = _first_tensor(batch)
                if first is not None:
                    self._add("input", first)
            if forward is not None:
                out = forward(self.module, batch)
            elif isinstance(batch, dict):
                out = self.module(**batch)
            elif isinstance(batch, (tuple, list)):
                out = self.module(batch[0])  # (inputs, labels) loaders
            else:
                out = self.module(batch)
        if self._learning:
            self._inplace.update(n for n, (t, v) in self._watch.items() if t._version != v)
            self._watch.clear()
            self._fast = {n: b for n, b in self._learn_fast.items() if n not in self._inplace}
            self._learn_fast = {}
            self._learned = True
        self.flush()  # a forward that raised adds nothing more
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> "TorchCollector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def collect(
    module: Any,
    loader: Iterable[Any],
    *,
    layers: Optional[Sequence[Type[Any]]] = None,
    names: Optional[Union[str, Sequence[str]]] = None,
    inputs: bool = False,
    max_batches: Optional[int] = None,
    forward: Optional[Callable[[Any, Any], Any]] = None,
    bins: int = 2048,
    stats: Optional[ActivationStats] = None,
    progress: bool = False,
    capture: str = "outputs",
) -> ActivationStats:
    """Runs ``module`` over ``loader`` once and returns the per-activation statistics.

    Parameters
    ----------
    module : torch.nn.Module (on the GPU for the CUDA path; put it in eval mode first).
    loader : iterable of batches: a tensor, (inputs, labels), or a dict of keyword inputs.
        Batches are moved to the module's device.
    capture, layers, names, inputs : which activations (see :class:`TorchCollector`).
    max_batches : stop after this many batches.
    forward : ``forward(module, batch)`` for models called some other way.
    stats : continue an earlier :class:`ActivationStats` (e.g. after a checkpoint).

    Returns
    -------
    ActivationStats
        ``histograms()``, ``amax(method)``, ``state_dict()`` (host copies; these wait).
        Queued GPU work is not waited for here.
    """
    bar = Progress(progress, max_batches, "collecting", unit="batch")
    with TorchCollector(
        module, layers=layers, names=names, inputs=inputs, bins=bins, stats=stats, capture=capture
    ) as hooks:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            hooks.forward(batch, forward)
            bar.update(1)
    bar.close()
    return hooks.stats


def _tensors(out: Any) -> List[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, torch.Tensor)]
    if isinstance(out, dict):
        return [t for t in out.values() if isinstance(t, torch.Tensor)]
    return []


def _dense(t: Any) -> bool:
    """Dense in some axis order (channels-last, transposes): the collectors read those as they
    are."""

    return dense_axis_order(tuple(t.shape), tuple(t.stride())) is not None


def _module_device(module: Any) -> Any:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return None


def _to(batch: Any, device: Any) -> Any:
    import torch

    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _first_tensor(batch: Any) -> Any:
    ts = _tensors(batch if not isinstance(batch, dict) else list(batch.values()))
    return ts[0] if ts else None
