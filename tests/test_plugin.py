"""The TensorRT SiLU plugin library: the dlopen harness (build-time queries without a GPU,
enqueue with one), and, where the tensorrt module exists, engines built from fused ONNX."""

import ctypes
import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trtcal
from trtcal.core.plugin import PluginLibraryNotFoundError

REPO = Path(__file__).resolve().parents[1]


def _library() -> str:
    try:
        return trtcal.plugin_library_path()
    except PluginLibraryNotFoundError as exc:
        pytest.skip(f"plugin library not built: {exc}")


def _harness() -> str:
    env = os.environ.get("TRTCAL_PLUGIN_HARNESS")
    if env:
        return env
    found = glob.glob(
        str(REPO / "build" / "*" / "core" / "csrc" / "plugin" / "trtcal_plugin_harness")
    ) + glob.glob(str(REPO / "build" / "*" / "csrc" / "plugin" / "trtcal_plugin_harness"))
    if not found:
        pytest.skip(
            "trtcal_plugin_harness not found: it is built with the plugin (TensorRT headers found) "
            "in "
            "build/<wheel tag>/core/csrc/plugin/; or set TRTCAL_PLUGIN_HARNESS"
        )
    return max(found, key=os.path.getmtime)


def _run_harness(*args):
    proc = subprocess.run(
        [_harness(), _library(), *args], capture_output=True, text=True, timeout=600
    )
    print(proc.stdout)
    print(proc.stderr, file=sys.stderr)
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert proc.returncode == 0 and not failures, "\n".join(failures) or proc.stdout[-2000:]
    assert "OK:" in proc.stdout


def test_missing_library_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TRTCAL_PLUGIN_LIBRARY", str(tmp_path / "nope.so"))
    with pytest.raises(PluginLibraryNotFoundError, match="TRTCAL_PLUGIN_LIBRARY"):
        trtcal.plugin_library_path()


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt") is not None,
    reason="the tensorrt module is installed here",
)
def test_load_plugins_without_tensorrt():
    from trtcal.tensorrt.plugins import load_plugins

    with pytest.raises(ImportError, match="tensorrt Python module"):
        load_plugins()


@pytest.mark.plugin
def test_library_exports_entry_points():
    lib = ctypes.CDLL(_library())
    assert lib.getCreators and lib.setLoggerFinder


@pytest.mark.plugin
def test_harness_build_time_queries():
    """Creation, capabilities, clone, types, shapes, every format combination, fields."""
    _run_harness("--no-gpu")


@pytest.mark.plugin
@pytest.mark.gpu
def test_harness_enqueue_on_gpu():
    """Everything above plus enqueue on device buffers for every type, rank and alignment,
    and identical output after serialising and recreating the plugin."""
    _run_harness()


# ---- TensorRT itself (where installed) ----------------------------------------------


def _trt_engine(trt, model):
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        pytest.fail(
            "ONNX parse failed: "
            + "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        )
    config = builder.create_builder_config()
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, "engine build failed"
    engine = trt.Runtime(logger).deserialize_cuda_engine(
        plan
    )  # the plugin is recreated from its fields
    assert engine is not None
    return engine


def _trt_run(trt, torch, engine, feeds):
    ctx = engine.create_execution_context()
    tensors, outputs = {}, []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            tensors[name] = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
            ctx.set_input_shape(name, tuple(tensors[name].shape))
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            dtype = torch.from_numpy(np.zeros(1, trt.nptype(engine.get_tensor_dtype(name)))).dtype
            tensors[name] = torch.empty(
                tuple(ctx.get_tensor_shape(name)), dtype=dtype, device="cuda"
            )
            outputs.append(name)
    for name, t in tensors.items():
        ctx.set_tensor_address(name, t.data_ptr())
    stream = torch.cuda.Stream()
    torch.cuda.synchronize()
    assert ctx.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return [tensors[n].cpu().numpy() for n in outputs]


@pytest.fixture
def trt_env():
    trt = pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch with CUDA")
    _library()
    from trtcal.tensorrt.plugins import load_plugins

    load_plugins()
    assert trt.get_plugin_registry().get_creator("SiLU", "1", "trtcal") is not None
    return trt, torch, onnx


@pytest.mark.plugin
@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_tensorrt_float_silu_from_onnx(trt_env, rng, dtype):
    trt, torch, onnx = trt_env
    from onnx import TensorProto, helper

    from trtcal.onnx import fuse_silu
    from trtcal.reference import silu as ref

    et = TensorProto.FLOAT if dtype == "float32" else TensorProto.FLOAT16
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", et, [3, 37, 5])],
        [helper.make_tensor_value_info("y", et, [3, 37, 5])],
    )
    model, n = fuse_silu(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert n == 1
    x = (rng.standard_t(3, size=(3, 37, 5)) * 4).astype(dtype)
    (y,) = _trt_run(trt, torch, _trt_engine(trt, model), {"x": x})
    want = ref.silu(x.astype(np.float64))
    tol = 4e-7 if dtype == "float32" else 1e-3
    np.testing.assert_allclose(
        y.astype(np.float64), want, rtol=tol, atol=1e-7 if dtype == "float32" else 1e-4
    )


@pytest.mark.plugin
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_int8_silu_from_onnx(trt_env, rng):
    """Q -> SiLU[int8, scale fields] -> DQ: TensorRT feeds the plugin int8 and the result is the
    exact table."""
    trt, torch, onnx = trt_env
    from onnx import TensorProto, helper

    from trtcal.onnx import fuse_silu
    from trtcal.reference import silu as ref

    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1001])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1001])],
    )
    s_in, s_out = 0.047, 0.031
    model, n = fuse_silu(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
        scales={"x": s_in, "y": s_out},
    )
    assert [node.op_type for node in model.graph.node] == [
        "QuantizeLinear",
        "SiLU",
        "DequantizeLinear",
    ]
    x = (rng.standard_t(3, size=(4, 1001)) * 2).astype(np.float32)
    (y,) = _trt_run(trt, torch, _trt_engine(trt, model), {"x": x})
    codes = np.clip(np.rint(x / np.float32(s_in)), -128, 127).astype(np.int8)
    want = ref.silu_int8(codes, s_in, s_out).astype(np.float32) * np.float32(s_out)
    np.testing.assert_allclose(y, want, rtol=0, atol=float(np.float32(s_out)) * 1e-3)


@pytest.mark.plugin
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_yolo_block_matches_onnxruntime(trt_env, rng):
    trt, torch, onnx = trt_env
    ort = pytest.importorskip("onnxruntime")
    from test_fuse_silu import _yolo_block

    from trtcal.onnx import fuse_silu

    model, pairs = _yolo_block(rng)
    fused, n = fuse_silu(model)
    assert n == pairs
    x = (rng.standard_t(3, size=(1, 3, 16, 20)) * 2).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"images": x})
    (got,) = _trt_run(trt, torch, _trt_engine(trt, fused), {"images": x})
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
