"""TensorRT adapters. The parts that need no TensorRT (batch feeding through an injected
device-copy backend, cache bytes, the dynamic-range plan, the TensorRT 11 refusal) run
everywhere; the rest is marked ``tensorrt`` (and ``gpu`` for engine builds) and skips when
the module is absent. The tensorrt module is never faked."""

import ctypes
import importlib.util
import sys

import numpy as np
import pytest

from trtcal import CalibrationTable
from trtcal import tensorrt as ttrt
from trtcal.formats import cache as tc
from trtcal.tensorrt import calibrator as tcal

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


# ------------------------------------------------------------------ a host "device" for the feeder


class HostMemory(tcal.DeviceMemory):
    """Injected device-copy backend: 'device' buffers are host bytes, so tests can read them."""

    def __init__(self):
        self.buffers, self.allocs, self.frees, self.uploads = {}, 0, 0, 0

    def allocate(self, nbytes):
        self.allocs += 1
        buf = np.zeros(nbytes, dtype=np.uint8)
        self.buffers[buf.ctypes.data] = buf
        return buf

    def pointer(self, handle):
        return handle.ctypes.data

    def upload(self, handle, host):
        self.uploads += 1
        handle[: host.nbytes] = host.reshape(-1).view(np.uint8)

    def free(self, handle):
        self.frees += 1
        self.buffers.pop(handle.ctypes.data, None)


def _read(ptr, like):
    """The array of ``like``'s dtype and shape at host address ``ptr``."""
    buf = (ctypes.c_char * like.nbytes).from_address(ptr)
    return np.frombuffer(buf, dtype=like.dtype).reshape(like.shape).copy()


class DeviceArray:
    """A plain object exposing __cuda_array_interface__ (like a CuPy array), for pass-through."""

    def __init__(self, ptr, shape, typestr="<f4", strides=None):
        self.__cuda_array_interface__ = {
            "data": (ptr, False),
            "shape": shape,
            "typestr": typestr,
            "strides": strides,
            "version": 3,
        }


# ------------------------------------------------------------------ import and version rules


def test_import_needs_no_tensorrt():
    if HAS_TRT:
        pytest.skip(
            "tensorrt is installed here: the lazy-import check needs an environment without it"
        )
    assert "tensorrt" not in sys.modules
    with pytest.raises(ttrt.TensorRTUnavailableError, match="pip install tensorrt"):
        ttrt.EntropyCalibrator2(table={"x": 1.0})
    with pytest.raises(ttrt.TensorRTUnavailableError):
        ttrt.tensorrt_major()
    with pytest.raises(ImportError):  # it is an ImportError too
        ttrt.apply_dynamic_ranges(None, {})
    assert "tensorrt" not in sys.modules


def test_tensorrt_11_points_to_explicit_quantization():
    ttrt.check_implicit_int8(8, "x")
    ttrt.check_implicit_int8(10, "x")
    with pytest.raises(ttrt.ImplicitInt8RemovedError, match="trtcal.onnx.quantize") as e:
        ttrt.check_implicit_int8(11, "an INT8 calibrator")
    assert "quantize_network" in str(e.value) and "TensorRT 11" in str(e.value)


# ------------------------------------------------------------------ batch feeding


def test_feeder_named_inputs_in_tensorrt_order_and_buffer_reuse(rng):
    batches = [
        {
            "mask": rng.integers(0, 2, size=(3, 7)).astype(np.int32),
            "image": rng.standard_t(3, size=(3, 2, 5, 5)).astype(np.float32),
            "unused": np.zeros(1),
        }
        for _ in range(4)
    ]
    mem = HostMemory()
    f = tcal.BatchFeeder(batches, device_memory=mem)
    names = ["image", "mask"]  # TensorRT's order, not the dict's
    seen_ptrs = []
    for b in batches:
        ptrs = f.get_batch(names)
        assert len(ptrs) == 2
        np.testing.assert_array_equal(_read(ptrs[0], b["image"]), b["image"])
        np.testing.assert_array_equal(_read(ptrs[1], b["mask"]), b["mask"])
        seen_ptrs.append(tuple(ptrs))
    assert len(set(seen_ptrs)) == 1 and mem.allocs == 2  # one buffer per input, reused
    assert f.batches == 4 and f.samples == 12
    assert f.get_batch(names) is None and mem.frees == 2 and f.allocated_bytes == 0
    assert f.get_batch(names) is None  # stays at the end


def test_feeder_grows_buffers_and_casts_float64(rng):
    mem = HostMemory()
    data = [rng.laplace(size=(2, 5)), rng.laplace(size=(5, 5)), rng.laplace(size=(1, 5))]
    f = tcal.BatchFeeder(iter(data), device_memory=mem)
    for x in data:
        (p,) = f.get_batch(["x"])
        np.testing.assert_array_equal(_read(p, x.astype(np.float32)), x.astype(np.float32))
    assert mem.allocs == 2 and mem.frees == 1  # grew once, never shrank


def test_feeder_tuple_and_single_array_batches(rng):
    a, b = (
        rng.standard_normal((2, 3)).astype(np.float32),
        rng.standard_normal((2, 4)).astype(np.float32),
    )
    f = tcal.BatchFeeder([(a, b)], input_names=["a", "b"], device_memory=HostMemory())
    pb, pa = f.get_batch(["b", "a"])
    np.testing.assert_array_equal(_read(pa, a), a)
    np.testing.assert_array_equal(_read(pb, b), b)
    f = tcal.BatchFeeder([(a, b)], device_memory=HostMemory())  # no names: TensorRT's order
    pa, pb = f.get_batch(["a", "b"])
    np.testing.assert_array_equal(_read(pb, b), b)
    f = tcal.BatchFeeder([a.T], device_memory=HostMemory())  # non-contiguous host arrays are copied
    (p,) = f.get_batch(["only"])
    np.testing.assert_array_equal(_read(p, np.ascontiguousarray(a.T)), a.T)


def test_feeder_errors_name_the_input(rng):
    x = np.zeros((1, 3), np.float32)
    with pytest.raises(KeyError, match="'image'"):
        tcal.BatchFeeder([{"img": x}], device_memory=HostMemory()).get_batch(["image"])
    with pytest.raises(ValueError, match="2 inputs"):
        tcal.BatchFeeder([x], device_memory=HostMemory()).get_batch(["a", "b"])
    with pytest.raises(ValueError, match="1 arrays"):
        tcal.BatchFeeder([(x,)], device_memory=HostMemory()).get_batch(["a", "b"])
    with pytest.raises(TypeError, match="float64 device array"):
        tcal.BatchFeeder([DeviceArray(1234, (2,), "<f8")]).get_batch(["a"])
    with pytest.raises(ValueError, match="non-contiguous"):
        tcal.BatchFeeder([DeviceArray(1234, (4, 4), "<f4", (4, 32))]).get_batch(["a"])


def test_feeder_passes_device_arrays_through(rng):
    mem = HostMemory()
    dev = DeviceArray(0xDEAD0000, (8, 3, 4, 4))
    host = rng.standard_normal((8, 2)).astype(np.float32)
    f = tcal.BatchFeeder([{"d": dev, "h": host}], device_memory=mem)
    pd, ph = f.get_batch(["d", "h"])
    assert pd == 0xDEAD0000 and mem.uploads == 1  # only the host array was copied
    np.testing.assert_array_equal(_read(ph, host), host)


def test_feeder_makes_device_memory_lazily():
    made = []

    def factory():
        made.append(HostMemory())
        return made[-1]

    f = tcal.BatchFeeder([{"d": DeviceArray(64, (1,))}], device_memory_factory=factory)
    assert f.get_batch(["d"]) == [64] and not made  # device arrays need no allocator
    f = tcal.BatchFeeder([np.ones(3, np.float32)], device_memory_factory=factory)
    f.get_batch(["x"])
    assert len(made) == 1


# ------------------------------------------------------------------ calibrator behaviour (no
# TensorRT)


class _PlainBase:
    """Stands in for the TensorRT base class to test trtcal's own callback logic."""

    def __init__(self):
        self.base_initialised = True


def _core(algorithm="EntropyCalibration2"):
    core = tcal._LegacyCore if algorithm == "LegacyCalibration" else tcal._CalibratorCore
    return type("C", (core,), {"_trt_base": _PlainBase, "algorithm": algorithm})


@pytest.mark.parametrize("algorithm", list(tcal.BASE_CLASSES))
def test_read_calibration_cache_hands_over_our_table(algorithm, rng):
    names = [f"/l{i}/Conv_output_0" for i in range(9)] + ["(Unnamed Layer* 46) [Constant]_output"]
    table = CalibrationTable(dict(zip(names, (np.abs(rng.standard_t(3, 10)) + 0.1).tolist())))
    cal = _core(algorithm)(table=table, tensorrt_version="10.3.0.26")
    assert cal.base_initialised
    data = cal.read_calibration_cache()
    c = tc.parse_cache(data)
    assert c.header == f"TRT-100300-{algorithm}" and cal.used == "table"
    for n in names:
        assert c.amaxes()[n] == pytest.approx(table[n], rel=1e-7)
    assert data == tcal.cache_bytes_for(table, algorithm, "10.3.0")
    assert cal.get_batch(["x"]) is None  # no dataset: TensorRT must use the cache


def test_write_calibration_cache_keeps_and_saves(tmp_path):
    p = tmp_path / "calib.cache"
    cal = _core()(dataset=[], cache_path=p, tensorrt_version="8.6.1")
    assert cal.read_calibration_cache() is None  # nothing yet: TensorRT calibrates
    written = b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n"
    cal.write_calibration_cache(memoryview(written))
    assert p.read_bytes() == written and cal.table["input"] == pytest.approx(
        tc.hex_to_scale("3c010a14") * 127
    )
    cal2 = _core()(cache_path=p, tensorrt_version="8.6.1")
    assert cal2.read_calibration_cache() == written and cal2.used == "cache file"


def test_bad_cache_file_is_reported_not_used(tmp_path):
    p = tmp_path / "calibration.cache"
    p.write_text("input 2.5\n")  # ONNX Runtime's format
    cal = _core()(cache_path=p, tensorrt_version="10.3.0")
    assert cal.read_calibration_cache() is None and "ONNX Runtime" in str(cal.error)


def test_get_batch_errors_stop_calibration_and_are_kept(rng):
    cal = _core()(
        dataset=[{"a": np.ones(2, np.float32)}],
        tensorrt_version="10.3.0",
        device_memory=HostMemory(),
    )
    assert cal.get_batch(["b"]) is None and isinstance(cal.error, KeyError)
    cal = _core()(
        dataset=[np.ones(2, np.float32)] * 2, tensorrt_version="10.3.0", device_memory=HostMemory()
    )
    assert cal.get_batch(["x"]) and cal.used == "calibration"
    cal.free()
    assert cal.get_batch(["x"]) is None
    legacy = _core("LegacyCalibration")(table={"x": 1.0}, tensorrt_version="10.3.0")
    assert legacy.get_quantile() > 0.99 and legacy.read_histogram_cache(0) is None
    with pytest.raises(ValueError, match="dataset, a table or a cache_path"):
        _core()(tensorrt_version="10.3.0")


# ------------------------------------------------------------------ dynamic range plan


def test_plan_dynamic_ranges_reports_both_sides():
    table = CalibrationTable(
        {"in": 2.0, "conv": 5.0, "dead": 0.0, "big": float("inf"), "gone": 1.0}
    )
    rep = ttrt.plan_dynamic_ranges(["in", "conv", "relu", "dead", "big"], table)
    assert rep.applied == {"in": 2.0, "conv": 5.0}
    assert rep.missing_in_table == ["relu"] and rep.missing_in_network == ["gone"]
    assert set(rep.invalid) == {"dead", "big"} and rep.path.startswith("implicit INT8")


# ------------------------------------------------------------------ with TensorRT


def _trt():
    import tensorrt as trt

    return trt


def _small_network(trt, rng):
    """input [1,3,8,8] -> conv 3->4 (kernel weights) -> relu -> conv 4->4 ; add(conv2, relu) ->
    out"""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    x = network.add_input("input", trt.float32, (1, 3, 8, 8))
    w1 = (rng.laplace(size=(4, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.laplace(size=(4, 4, 3, 3)) * 0.3).astype(np.float32)
    c1 = network.add_convolution_nd(x, 4, (3, 3), trt.Weights(w1), trt.Weights())
    c1.padding_nd = (1, 1)
    c1.name = "conv1"
    c1.get_output(0).name = "conv1_out"
    r = network.add_activation(c1.get_output(0), trt.ActivationType.RELU)
    r.name = "relu"
    r.get_output(0).name = "relu_out"
    c2 = network.add_convolution_nd(r.get_output(0), 4, (3, 3), trt.Weights(w2), trt.Weights())
    c2.padding_nd = (1, 1)
    c2.name = "conv2"
    c2.get_output(0).name = "conv2_out"
    add = network.add_elementwise(c2.get_output(0), r.get_output(0), trt.ElementWiseOperation.SUM)
    add.name = "residual_add"
    add.get_output(0).name = "output"
    network.mark_output(add.get_output(0))
    return builder, network, (w1, w2)


TABLE = {
    "input": 3.0,
    "conv1_out": 4.0,
    "relu_out": 4.0,
    "conv2_out": 6.0,
    "output": 8.0,
    "not_here": 1.0,
}


@pytest.mark.tensorrt
def test_tensorrt_major_matches_module():
    trt = _trt()
    assert ttrt.tensorrt_major() == int(trt.__version__.split(".")[0])


@pytest.mark.tensorrt
@pytest.mark.parametrize("algorithm", list(tcal.BASE_CLASSES))
def test_calibrators_are_tensorrt_calibrators(algorithm):
    trt = _trt()
    if ttrt.tensorrt_major() >= 11:
        with pytest.raises(ttrt.ImplicitInt8RemovedError, match="trtcal.onnx.quantize"):
            ttrt.make_calibrator(algorithm=algorithm, table=TABLE)
        return
    cal = ttrt.make_calibrator(algorithm=algorithm, table=TABLE)
    assert isinstance(cal, getattr(trt, tcal.BASE_CLASSES[algorithm]))
    header = tc.parse_cache(cal.read_calibration_cache()).header
    assert header == tc.format_header(trt.__version__, algorithm)
    assert isinstance(ttrt.EntropyCalibrator2(table=TABLE), trt.IInt8EntropyCalibrator2)


@pytest.mark.tensorrt
def test_apply_dynamic_ranges_on_a_real_network(rng):
    trt = _trt()
    _, network, _ = _small_network(trt, rng)
    if ttrt.tensorrt_major() >= 11:
        with pytest.raises(ttrt.ImplicitInt8RemovedError):
            ttrt.apply_dynamic_ranges(network, TABLE)
        return
    rep = ttrt.apply_dynamic_ranges(network, TABLE)
    assert set(rep.applied) == {"input", "conv1_out", "relu_out", "conv2_out", "output"}
    assert rep.missing_in_network == ["not_here"] and not rep.failed
    t = CalibrationTable(TABLE)
    del t["relu_out"]
    assert ttrt.apply_dynamic_ranges(network, t).missing_in_table == ["relu_out"]
    with pytest.raises(ValueError, match="no range"):
        ttrt.apply_dynamic_ranges(network, t, strict=True)


@pytest.mark.tensorrt
def test_quantize_network_adds_qdq(rng):
    trt = _trt()
    _, network, _ = _small_network(trt, rng)
    before = network.num_layers
    rep = ttrt.quantize_network(network, TABLE)
    assert rep.path.startswith("explicit Q/DQ")
    assert set(rep.activations) == {"input", "relu_out"}  # relu_out: conv2 input and residual input
    assert {k: v[1] for k, v in rep.weights.items()} == {"conv1_kernel": 4, "conv2_kernel": 4}
    types = [network.get_layer(i).type for i in range(network.num_layers)]
    assert types.count(trt.LayerType.QUANTIZE) == 4 and types.count(trt.LayerType.DEQUANTIZE) == 4
    assert network.num_layers > before and rep.quantized_layers == [
        "conv1",
        "conv2",
        "residual_add",
    ]


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_quantized_network_builds_an_engine(rng):
    trt = _trt()
    builder, network, _ = _small_network(trt, rng)
    rep = ttrt.quantize_network(network, TABLE)  # noqa: F841 - keeps the weights alive for the build
    config = builder.create_builder_config()
    if ttrt.tensorrt_major() <= 10:
        config.set_flag(trt.BuilderFlag.INT8)
    assert builder.build_serialized_network(network, config) is not None


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_calibrator_with_our_table_builds_an_int8_engine(rng, tmp_path):
    trt = _trt()
    if ttrt.tensorrt_major() >= 11:
        pytest.skip("TensorRT 11 has no calibrators")
    builder, network, _ = _small_network(trt, rng)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    cal = ttrt.EntropyCalibrator2(table=TABLE, cache_path=tmp_path / "written.cache")
    config.int8_calibrator = cal
    assert builder.build_serialized_network(network, config) is not None
    assert cal.used == "table" and cal.error is None


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_calibrator_feeds_batches_and_writes_a_cache(rng, tmp_path):
    trt = _trt()
    if ttrt.tensorrt_major() >= 11:
        pytest.skip("TensorRT 11 has no calibrators")
    builder, network, _ = _small_network(trt, rng)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    data = [{"input": rng.standard_t(4, size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(5)]
    cal = ttrt.MinMaxCalibrator(data, cache_path=tmp_path / "calib.cache")
    config.int8_calibrator = cal
    assert builder.build_serialized_network(network, config) is not None
    assert cal.error is None and cal.feeder.batches == 5 and cal.feeder.allocated_bytes == 0
    table = CalibrationTable.from_cache(tmp_path / "calib.cache")
    assert table["input"] == pytest.approx(
        max(float(np.abs(d["input"]).max()) for d in data), rel=1e-2
    )
