"""End-to-end calibration on the CPU: exact statistics, resume, bad samples, memory, tensor
choice."""

import os
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from calib_models import QUIET, cnn_model  # noqa: E402
from calib_models import heavy_tailed_images as _data  # noqa: E402
from nan_model import write_log_relu_model  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

import trtcal  # noqa: E402
from trtcal import calibrate  # noqa: E402
from trtcal.pipeline import checkpoint as ckpt  # noqa: E402
from trtcal.pipeline.data import BadSampleError  # noqa: E402
from trtcal.pipeline.runners import (  # noqa: E402
    OrtRunner,
    TensorSelection,  # noqa: E402
    calibration_tensors,
)


@pytest.fixture
def model_path(tmp_path):
    return cnn_model(tmp_path / "cnn.onnx")


def _states(result_or_stats):
    return {n: h for n, h in result_or_stats.histograms.items()}


def _assert_same_hists(a, b):
    assert list(a) == list(b)
    for n in a:
        ha, hb = a[n], b[n]
        np.testing.assert_array_equal(ha.counts, hb.counts, err_msg=n)
        assert (ha.range, ha.amax, ha.min, ha.max, ha.nan) == (
            hb.range,
            hb.amax,
            hb.min,
            hb.max,
            hb.nan,
        ), n


def test_histograms_equal_one_histogram_of_all_activations(model_path, rng):
    x = _data(rng, 37)  # odd count: a short last batch
    res = calibrate(model_path, x, method="minmax", batch_size=8, **QUIET)
    assert res.samples == 37 and res.batches == 5
    runner = OrtRunner(model_path)
    full = runner.run({"images": x})  # every activation of every sample at once
    assert set(full) == set(res.histograms)
    for name, act in full.items():
        expect = trtcal.HistogramCollector(2048, name=name).update(act).histogram()
        got = res.histograms[name]
        np.testing.assert_array_equal(got.counts, expect.counts, err_msg=name)
        assert got.range == expect.range and got.amax == expect.amax
        assert res.amax["minmax"][name] == pytest.approx(float(np.abs(act).max()), rel=0, abs=0)


def test_tensor_choice_skips_int_shape_and_constant_tensors(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node(
            "Constant", [], ["c"], value=helper.make_tensor("cv", TensorProto.FLOAT, [1], [2.0])
        ),
        helper.make_node("Mul", ["r", "c"], ["m"]),
        helper.make_node("Reshape", ["m", "s"], ["y"]),
        helper.make_node("Cast", ["y"], ["yi"], to=TensorProto.INT32),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
        [helper.make_tensor_value_info("yi", TensorProto.INT32, ["N", 5])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    assert calibration_tensors(m) == ["x", "r", "m", "y"]
    # an op type selects what it reads (not the constant) and what it writes
    assert calibration_tensors(m, TensorSelection(op_types=("Mul",))) == ["r", "m"]
    assert calibration_tensors(m, TensorSelection(names=("re:^[ry]$",))) == ["r", "y"]
    r = OrtRunner(m)
    out = r.run({"x": np.ones((2, 5), np.float32)})
    assert sorted(out) == ["m", "r", "x", "y"]


def test_selection_by_op_type_end_to_end(model_path, rng):
    res = calibrate(model_path, _data(rng, 6), method="minmax", op_types=["Relu"], **QUIET)
    # the Relus' outputs and what they read (the convolutions' outputs and the residual add)
    assert set(res.histograms) == {
        "relu1",
        "relu2",
        "block/relu_a",
        "block/relu",
        "conv1",
        "conv2",
        "block/conv_a",
        "block/add",
    }


class _Interrupting:
    """Yields batches and raises KeyboardInterrupt when asked for batch ``k`` (like Ctrl-C)."""

    def __init__(self, xs, k=None):
        self.xs, self.k = xs, k

    def __iter__(self):
        for i, x in enumerate(self.xs):
            if i == self.k:
                raise KeyboardInterrupt
            yield {"images": x}


@pytest.mark.parametrize("every", [1, 3])
def test_resume_after_interrupt_is_bit_identical(model_path, rng, tmp_path, every):
    xs = [_data(rng, int(n)) for n in rng.integers(1, 6, size=9)]
    full = calibrate(model_path, _Interrupting(xs), method="minmax", **QUIET)
    ck = str(tmp_path / "run.ckpt.npz")
    k = int(rng.integers(2, 8))
    with pytest.raises(KeyboardInterrupt):
        calibrate(
            model_path,
            _Interrupting(xs, k),
            method="minmax",
            checkpoint=ck,
            checkpoint_every=every,
            **QUIET,
        )
    saved = ckpt.load(ck)
    assert saved["progress"]["batches"] == k and not saved["progress"]["complete"]
    res = calibrate(
        model_path, _Interrupting(xs), method="minmax", checkpoint=ck, resume=True, **QUIET
    )
    assert res.batches == 9 and res.samples == sum(len(x) for x in xs)
    _assert_same_hists(res.histograms, full.histograms)
    assert res.amax == full.amax


def test_resume_of_files_with_skips_matches_uninterrupted(model_path, rng, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for i in range(7):
        np.save(d / f"s{i}.npy", _data(rng, 3))
    (d / "s3.npy").write_bytes(b"garbage")
    ref = calibrate(model_path, str(d), method="minmax", batch_size=4, skip_bad=True, **QUIET)
    assert [s for s, _ in ref.skipped] == ["s3.npy"]
    ck = str(tmp_path / "c.npz")
    calls = {"n": 0}
    real_run = OrtRunner.run

    def flaky(self, inputs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real_run(self, inputs)

    OrtRunner.run = flaky
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            calibrate(
                model_path,
                str(d),
                method="minmax",
                batch_size=4,
                skip_bad=True,
                checkpoint=ck,
                checkpoint_every=1,
                **QUIET,
            )
    finally:
        OrtRunner.run = real_run
    res = calibrate(
        model_path,
        str(d),
        method="minmax",
        batch_size=4,
        skip_bad=True,
        checkpoint=ck,
        resume=True,
        **QUIET,
    )
    _assert_same_hists(res.histograms, ref.histograms)
    assert res.skipped == ref.skipped and res.samples == ref.samples == 18


def test_resume_refuses_changed_settings(model_path, rng, tmp_path):
    x = _data(rng, 10)
    ck = str(tmp_path / "c.npz")
    calibrate(model_path, x, method="minmax", batch_size=4, checkpoint=ck, **QUIET)
    with pytest.raises(ValueError, match="changed: batch_size"):
        calibrate(model_path, x, method="minmax", batch_size=5, checkpoint=ck, resume=True, **QUIET)
    with pytest.raises(ValueError, match="changed: .*tensors"):
        calibrate(
            model_path,
            x,
            method="minmax",
            batch_size=4,
            op_types=["Conv"],
            checkpoint=ck,
            resume=True,
            **QUIET,
        )
    # a completed checkpoint resumes to the same result without running anything
    again = calibrate(
        model_path, x, method="minmax", batch_size=4, checkpoint=ck, resume=True, **QUIET
    )
    assert again.samples == 10


@pytest.mark.parametrize("share", [0.001, 0.1, 0.5, 0.9, 0.999])
def test_checkpoint_write_is_atomic(tmp_path, rng, model_path, monkeypatch, share):
    """The disk fills after ``at`` bytes of the new checkpoint were written (so a cut-off file
    exists on disk): the previous checkpoint stays byte for byte, and no temporary remains."""
    from trtcal.core import _files

    ck = tmp_path / "c.npz"
    x = _data(rng, 4)
    calibrate(model_path, x, method="minmax", checkpoint=str(ck), **QUIET)
    before = ck.read_bytes()
    at = max(1, int(share * len(before)))
    cut = []  # the size of each cut-off temporary when the disk filled

    def opener(fd):
        f = open(fd, "wb")  # noqa: SIM115
        real = f.write
        done = [0]

        def write(b):
            b = bytes(b)
            if done[0] + len(b) > at:
                real(b[: at - done[0]])
                f.flush()
                cut.append(os.fstat(f.fileno()).st_size)
                raise OSError(28, "No space left on device")
            done[0] += len(b)
            return real(b)

        f.write = write
        return f

    monkeypatch.setattr(_files, "_open_temp", opener)
    with pytest.raises(_files.OutputError, match="no space left"):
        calibrate(model_path, x, method="minmax", checkpoint=str(ck), **QUIET)
    assert cut and cut[0] > 0  # bytes of the new checkpoint had reached the disk
    assert ck.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name != "cnn.onnx"] == ["c.npz"]


def test_nan_activation_names_sample_and_tensor(tmp_path, rng):
    path = write_log_relu_model(str(tmp_path / "log.onnx"))  # NaN appears in 'l', not in the input
    x = rng.uniform(0.5, 3.0, size=(9, 4)).astype(np.float32)
    x[5, 2] = -1.0
    ck = str(tmp_path / "c.npz")
    with pytest.raises(BadSampleError, match=r"arrays\[5\].*activation 'l'"):
        calibrate(
            path, x, method="minmax", batch_size=4, checkpoint=ck, checkpoint_every=1, **QUIET
        )
    assert ckpt.load(ck)["progress"]["samples"] == 4  # the batch before is kept
    res = calibrate(
        path, x, method="minmax", batch_size=4, checkpoint=ck, resume=True, skip_bad=True, **QUIET
    )
    clean = calibrate(path, np.delete(x, 5, axis=0), method="minmax", batch_size=4, **QUIET)
    assert res.skipped == [("arrays[5]", "NaN or Inf in activation 'l'")]
    _assert_same_hists(res.histograms, clean.histograms)


def test_memory_is_constant_in_the_number_of_batches(model_path, rng):
    def peak(nbatches):
        def gen():
            r = np.random.default_rng(1)
            for _ in range(nbatches):
                yield {"images": r.standard_normal((4, 3, 12, 12)).astype(np.float32)}

        calibrate(model_path, gen(), method="minmax", **QUIET)  # warm caches (ORT, imports)
        tracemalloc.start()
        calibrate(model_path, gen(), method="minmax", **QUIET)
        _, p = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return p

    small, large = peak(5), peak(50)
    assert large <= small * 1.05 + 64 * 1024, (small, large)


def test_fixed_batch_model_drops_short_last_batch(tmp_path, rng):
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = str(tmp_path / "fixed.onnx")
    onnx.save(m, p)
    res = calibrate(p, rng.standard_normal((8, 4)).astype(np.float32), method="minmax", **QUIET)
    assert res.samples == 6 and res.batches == 2
    with pytest.raises(ValueError, match="fixed batch size of 3"):
        calibrate(p, rng.standard_normal((8, 4)).astype(np.float32), batch_size=4, **QUIET)


def test_tensorrt_11_refuses_cache_output(model_path, rng, tmp_path):
    with pytest.raises(ValueError, match="no calibration caches"):
        calibrate(
            model_path,
            _data(rng, 2),
            out_cache=str(tmp_path / "c.cache"),
            tensorrt_version="11.1",
            **QUIET,
        )


def test_report_markdown_and_html(model_path, rng, tmp_path):
    res = calibrate(
        model_path, _data(rng, 5), method="minmax", report=str(tmp_path / "r.md"), **QUIET
    )
    text = (tmp_path / "r.md").read_text()
    assert "| block/relu |" in text and "r_files/histograms.svg" in text
    svg = (tmp_path / "r_files" / "histograms.svg").read_text()
    assert svg.count("<polyline") == len(res.histograms)  # one figure, a row per tensor
    calibrate(model_path, _data(rng, 5), method="minmax", report=str(tmp_path / "r.html"), **QUIET)
    html = (tmp_path / "r.html").read_text()
    assert (
        html.count("<svg") == len(res.histograms)
        and "<table>" in html
        and "Accuracy against FP32" in html
    )


def test_report_shows_accuracy_with_eval_data(model_path, rng, tmp_path):
    import onnxruntime as ort

    xe = _data(rng, 4)
    res = calibrate(
        model_path,
        _data(rng, 6),
        method=["entropy", "minmax"],
        report=str(tmp_path / "r.html"),
        out_qdq=str(tmp_path / "m.qdq.onnx"),
        eval_data=xe,
        **QUIET,
    )
    html = (tmp_path / "r.html").read_text()
    # per method: one row per output head, then the task row (the worst head's task metric)
    heads = [r for r in res.accuracy if r["head"] != "task"]
    tasks = [r for r in res.accuracy if r["head"] == "task"]
    assert {r["method"] for r in heads} == {r["method"] for r in tasks} == {"entropy", "minmax"}
    assert len(heads) == len(tasks) == 2  # the CNN has one head: its logits
    assert all(r["task"] == "classify" and 0 <= r["metric"] <= 1 for r in tasks)
    assert "sqnr_db" in html and "top1_agreement" in html
    # the rows are the Q/DQ models' outputs against FP32 on the evaluation data, recomputed here
    # (Q/DQ executed as written: ONNX Runtime with graph optimisations off)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(model_path, so).run(None, {"images": xe})[0].astype(np.float64)
    for r in heads:
        qdq = res.files[f"qdq.{r['method']}"]
        got = ort.InferenceSession(qdq, so).run(None, {"images": xe})[0].astype(np.float64)
        cos = float((ref * got).sum() / np.sqrt((ref * ref).sum() * (got * got).sum()))
        sqnr = 10 * np.log10((ref * ref).sum() / ((ref - got) ** 2).sum())
        assert r["cosine"] == pytest.approx(cos, abs=1e-6), r
        assert r["sqnr_db"] == pytest.approx(sqnr, abs=1e-4), r


def test_ctrl_c_finishes_the_batch_checkpoints_and_resumes_exactly(model_path, rng, tmp_path):
    import signal

    xs = [_data(rng, 3) for _ in range(6)]
    full = calibrate(model_path, _Interrupting(xs), method="minmax", **QUIET)

    def sigint_at(k):
        for i, x in enumerate(xs):
            if i == k:
                os.kill(os.getpid(), signal.SIGINT)  # handled after this batch is complete
            yield {"images": x}

    ck = str(tmp_path / "c.npz")
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(KeyboardInterrupt):
        calibrate(
            model_path, sigint_at(2), method="minmax", checkpoint=ck, checkpoint_every=100, **QUIET
        )
    assert ckpt.load(ck)["progress"]["batches"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    res = calibrate(
        model_path, _Interrupting(xs), method="minmax", checkpoint=ck, resume=True, **QUIET
    )
    _assert_same_hists(res.histograms, full.histograms)


def test_model_with_two_inputs_from_npz(tmp_path, rng):
    g = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["p"]), helper.make_node("Add", ["p", "b"], ["y"])],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 5]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            onnx.numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "w")
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = str(tmp_path / "two.onnx")
    onnx.save(m, p)
    a, b = (
        rng.laplace(size=(11, 5)).astype(np.float32),
        rng.standard_t(2, size=(11, 3)).astype(np.float32),
    )
    np.savez(tmp_path / "d.npz", a=a, b=b)
    res = calibrate(p, str(tmp_path / "d.npz"), method="minmax", batch_size=4, **QUIET)
    assert set(res.amax["minmax"]) == {"a", "b", "p", "y"}
    assert res.amax["minmax"]["b"] == float(np.abs(b).max())
    np.savez(tmp_path / "wrong.npz", a=a, c=b)
    with pytest.raises(
        ValueError, match=r"no data for model input\(s\) \['b'\].*unknown input name\(s\) \['c'\]"
    ):
        calibrate(p, str(tmp_path / "wrong.npz"), method="minmax", **QUIET)
