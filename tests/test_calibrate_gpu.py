"""Device activations: the TensorRT runner (FP32 engine, every layer output marked) against
ONNX Runtime, and NaN reporting when activations stay on the GPU."""

import numpy as np
import pytest

pytest.importorskip("onnx")

from nan_model import write_log_relu_model  # noqa: E402

from trtcal import calibrate  # noqa: E402
from trtcal.pipeline.data import BadSampleError  # noqa: E402
from trtcal.pipeline.demo import build_model  # noqa: E402

QUIET = dict(progress=False, log=lambda s: None)


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_runner_matches_onnxruntime(tmp_path, rng):
    model = str(tmp_path / "cnn.onnx")
    build_model(model, size=16, width=8)
    x = rng.standard_t(4, size=(13, 3, 16, 16)).astype(np.float32)
    trt_res = calibrate(model, x, method="minmax", batch_size=4, runner="tensorrt", **QUIET)
    ort_res = calibrate(model, x, method="minmax", batch_size=4, runner="onnxruntime", **QUIET)
    common = set(trt_res.amax["minmax"]) & set(ort_res.amax["minmax"])
    assert {"images", "relu1", "block/relu", "logits"} <= common
    for n in common:
        assert trt_res.amax["minmax"][n] == pytest.approx(
            ort_res.amax["minmax"][n], rel=1e-4, abs=1e-6
        ), n
    assert trt_res.provenance["runner"]["runner"] == "tensorrt"
    assert trt_res.samples == 13


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_runner_nan_deferred_and_per_batch(tmp_path, rng):
    path = write_log_relu_model(str(tmp_path / "log.onnx"))  # NaN appears in 'l', not in the input
    x = rng.uniform(0.5, 3.0, size=(12, 4)).astype(np.float32)
    x[6, 1] = -1.0
    with pytest.raises(BadSampleError, match="NaN or Inf in activation"):
        calibrate(path, x, method="minmax", batch_size=4, runner="tensorrt", **QUIET)
    res = calibrate(
        path, x, method="minmax", batch_size=4, runner="tensorrt", skip_bad=True, **QUIET
    )
    assert [s for s, _ in res.skipped] == ["arrays[6]"] and res.samples == 11
