"""Running an ONNX model (a Q/DQ model for INT8) in TensorRT with the ``run`` call of an ONNX
Runtime session, so that :func:`trtcal.compare` and :func:`trtcal.analyze` can measure what
TensorRT itself computes, fusions and INT8 kernels included.

Written against the TensorRT 10.x and 11.x Python API (strongly typed networks: the precision of
every layer comes from the model, Q/DQ pairs give the INT8 layers; TensorRT 11 has no other
kind). Engines are built per set of input shapes (the evaluation batches usually share one).
Needs the ``tensorrt`` module and PyTorch or CuPy for device buffers.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ._runtime import load_tensorrt
from .buffers import DeviceAllocator


class TensorRTSession:
    """``TensorRTSession(model).run(names, feeds)`` -> list of host arrays, like ONNX Runtime's.

    ``model``: onnx.ModelProto or serialized bytes. Every graph output (including tensors that
    :func:`trtcal.evaluation.measure.expose` made outputs) becomes a network output.
    """

    def __init__(self, model: Any, *, workspace_gb: float = 4.0) -> None:
        self.trt = load_tensorrt("evaluating in TensorRT")
        self._bytes = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        self._workspace = int(workspace_gb * (1 << 30))
        self._logger = self.trt.Logger(self.trt.Logger.WARNING)
        self._runtime = self.trt.Runtime(self._logger)
        self._alloc = DeviceAllocator()
        self._stream = self._alloc.stream()
        self._engines: Dict[Tuple[Tuple[str, Tuple[int, ...]], ...], Tuple[Any, Any]] = {}
        self._buffers: Dict[str, Any] = {}
        self._keys: Dict[str, Any] = {}

    def _build(self, shapes: Mapping[str, Tuple[int, ...]]) -> Tuple[Any, Any]:
        trt = self.trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(bytes(self._bytes)):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(
                f"trtcal: TensorRT could not parse the model: {errs} "
                "(evaluate='onnxruntime' runs it in ONNX Runtime instead)"
            )
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self._workspace)
        profile = None
        for i in range(network.num_inputs):
            t = network.get_input(i)
            if t.name not in shapes:
                raise KeyError(f"trtcal: no data for the model input '{t.name}'")
            if any(int(d) < 0 for d in t.shape):
                profile = profile or builder.create_optimization_profile()
                s = tuple(shapes[t.name])
                profile.set_shape(t.name, s, s, s)
        if profile is not None:
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(
                "trtcal: TensorRT failed to build the engine of the quantized model "
                "(evaluate='onnxruntime' runs it in ONNX Runtime instead)"
            )
        engine = self._runtime.deserialize_cuda_engine(plan)
        return engine, engine.create_execution_context()

    def run(self, names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
        trt = self.trt
        arrays = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        key = tuple(sorted((k, tuple(v.shape)) for k, v in arrays.items()))
        if key not in self._engines:
            self._engines[key] = self._build({k: tuple(v.shape) for k, v in arrays.items()})
        engine, ctx = self._engines[key]
        outputs = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                a = arrays[name].astype(
                    np.dtype(trt.nptype(engine.get_tensor_dtype(name))), copy=False
                )
                ctx.set_input_shape(name, a.shape)
                buf = self._buffer(name, a.shape, a.dtype)
                self._alloc.upload(buf, a, self._stream)
                ctx.set_tensor_address(name, self._alloc.ptr(buf))
            else:
                outputs.append(name)
        for name in outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            buf = self._buffer(name, shape, engine.get_tensor_dtype(name))
            ctx.set_tensor_address(name, self._alloc.ptr(buf))
        if not ctx.execute_async_v3(self._alloc.stream_handle(self._stream)):
            raise RuntimeError("trtcal: TensorRT execution failed")
        self._stream.synchronize()
        missing = [n for n in names if n not in self._buffers or n not in outputs]
        if missing:
            raise KeyError(f"trtcal: the TensorRT engine has no output {missing[:5]}")
        return [self._host(self._buffers[n]) for n in names]

    def _buffer(self, name: str, shape: Tuple[int, ...], dtype: Any) -> Any:
        """``dtype``: a NumPy dtype, or a TensorRT DataType (bfloat16 has no NumPy type)."""
        key = (tuple(shape), str(dtype))
        buf = self._buffers.get(name)
        if buf is None or self._keys.get(name) != key:
            buf = self._alloc.empty(shape, dtype, self.trt)
            self._buffers[name], self._keys[name] = buf, key
        return buf

    def _host(self, buf: Any) -> np.ndarray:
        if self._alloc.torch is not None:
            if buf.dtype == self._alloc.torch.bfloat16:
                buf = buf.float()  # exact; NumPy has no bfloat16
            return buf.cpu().numpy()
        return self._alloc.cupy.asnumpy(buf)
