"""End-to-end choices of `trtcal calibrate` (CPU): flavors checked before the pass and applied per
method, op-type selection that serves a Q/DQ model, tensors with no range, the cache header
trtexec accepts, and errors raised before any inference."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from calib_models import QUIET, cnn_model, save_graph  # noqa: E402
from calib_models import heavy_tailed_images as _data  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

import trtcal  # noqa: E402
from trtcal import calibrate  # noqa: E402
from trtcal.pipeline import outputs  # noqa: E402


@pytest.fixture
def model_path(tmp_path):
    return cnn_model(tmp_path / "cnn.onnx", seed=5)


class _Counting:
    """An iterable of batches that counts how many were read."""

    def __init__(self, x, batch=4, name="images"):
        self.x, self.batch, self.name, self.read = x, batch, name, 0

    def __iter__(self):
        for i in range(0, len(self.x), self.batch):
            self.read += 1
            yield {self.name: self.x[i : i + self.batch]}


def test_flavor_is_checked_before_any_batch(model_path, rng):
    data = _Counting(_data(rng, 8))
    with pytest.raises(
        ValueError, match="no requested method has the flavor 'tensorrt'.*percentile"
    ):
        calibrate(model_path, data, method="percentile", flavor="tensorrt", **QUIET)
    with pytest.raises(ValueError, match="unknown mse flavor 'onnxruntime'"):
        calibrate(model_path, data, method="all", flavor={"mse": "onnxruntime"}, **QUIET)
    assert data.read == 0


def test_flavor_applies_to_the_methods_that_have_it(model_path, rng, tmp_path):
    x = _data(rng, 13)
    res = calibrate(
        model_path,
        x,
        method="all",
        flavor="tensorrt",
        batch_size=5,
        out_table=str(tmp_path / "t.json"),
        **QUIET,
    )
    plain = calibrate(model_path, x, method="all", batch_size=5, **QUIET)
    hists = plain.histograms
    assert res.flavors == {"entropy": "tensorrt", "percentile": None, "mse": None, "minmax": None}
    assert res.amax["entropy"] == trtcal.compute_amax(
        hists, method="entropy", flavor="tensorrt", device="cpu"
    )
    for m in ("percentile", "mse", "minmax"):
        assert res.amax[m] == plain.amax[m], m
    assert res.tables["entropy"].provenance.flavor == "tensorrt"
    assert res.tables["mse"].provenance.flavor is None


def test_onnxruntime_flavor_collects_signed_histograms(model_path, rng):
    x = _data(rng, 9)
    res = calibrate(
        model_path,
        x,
        method=["entropy", "percentile", "mse"],
        flavor="onnxruntime",
        batch_size=4,
        **QUIET,
    )
    h = res.histograms["conv1"]
    assert h.signed
    full = trtcal.HistogramCollector(2048, signed=True, device="cpu")
    from trtcal.pipeline.runners import OrtRunner

    full.update(OrtRunner(model_path).run({"images": x})["conv1"])
    np.testing.assert_array_equal(h.counts, full.histogram().counts)
    for m in ("entropy", "percentile"):
        want = trtcal.compute_amax(full.histogram(), method=m, flavor="onnxruntime", device="cpu")
        assert res.amax[m]["conv1"] == want, m
    # the |x| method searches the signed histogram folded
    assert res.amax["mse"]["conv1"] == trtcal.compute_amax(
        full.histogram(), method="mse", device="cpu"
    )


def test_op_types_select_inputs_and_outputs_and_the_qdq_model_quantizes_them(
    model_path, rng, tmp_path
):
    out = str(tmp_path / "q.onnx")
    res = calibrate(
        model_path, _data(rng, 8), method="entropy", op_types=["Conv"], out_qdq=out, **QUIET
    )
    assert {"images", "relu1", "relu2", "block/relu_a"} <= set(res.histograms)
    m = onnx.load(out)
    quantized = {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    assert {"images", "relu1", "relu2", "block/relu_a"} <= quantized
    # only the chosen op type is quantized: the Gemm keeps its float weight and input, unnamed
    assert not any("in float" in n for n in res.notes)
    dq_of = {n.output[0]: n for n in m.graph.node if n.op_type == "DequantizeLinear"}
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    assert not any(i in dq_of for i in gemm.input)
    with pytest.raises(ValueError, match="none of the op types .*Relu"):
        calibrate(model_path, _data(rng, 4), op_types=["Relu"], out_qdq=out, **QUIET)


def test_qdq_model_says_which_inputs_stay_float(model_path, rng, tmp_path):
    said = []
    res = calibrate(
        model_path,
        _data(rng, 8),
        method="entropy",
        tensors=["relu1"],
        out_qdq=str(tmp_path / "q.onnx"),
        progress=False,
        log=said.append,
    )
    note = next(n for n in res.notes if "in float" in n)
    assert "'images'" in note and "'relu2'" in note
    assert any(note == s for s in said)


def _zero_model(path):
    # z = x * 0: an all-zero activation
    nodes = [helper.make_node("Mul", ["x", "zero"], ["z"]), helper.make_node("Relu", ["x"], ["y"])]
    return save_graph(
        path,
        nodes,
        [("x", ["N", 7])],
        [("z", ["N", 7]), ("y", ["N", 7])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])],
    )


def test_all_zero_tensor_gets_no_threshold_from_any_method(tmp_path, rng):
    model = _zero_model(str(tmp_path / "z.onnx"))
    said = []
    res = calibrate(
        model,
        rng.standard_normal((11, 7)).astype(np.float32),
        method="all",
        out_cache=str(tmp_path / "c.cache"),
        progress=False,
        log=said.append,
    )
    for m, amax in res.amax.items():
        assert "z" not in amax and amax["y"] > 0, m
    assert any("'z'" in n and "all-zero" in n for n in res.notes)
    assert any("no range" in s and "z (all-zero)" in s for s in said)
    for m in res.amax:
        text = open(res.files[f"cache.{m}"]).read()
        assert "\nz:" not in text and "\ny:" in text, m


def test_cache_header_is_the_one_trtexec_reads_for_every_method(model_path, rng, tmp_path):
    res = calibrate(
        model_path, _data(rng, 6), method="all", out_cache=str(tmp_path / "c.cache"), **QUIET
    )
    for m in outputs.METHODS:
        first = open(res.files[f"cache.{m}"]).readline().strip()
        assert first.startswith("TRT-") and first.endswith("-EntropyCalibration2"), (m, first)


def test_invalid_model_with_qdq_output_fails_before_the_pass(tmp_path, rng):
    untyped = onnx.ValueInfoProto()
    untyped.name = (
        "y"  # a graph output without a type: ONNX Runtime runs it, ONNX's checker refuses it
    )
    path = save_graph(
        tmp_path / "bad.onnx",
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", ["N", 3])],
        [untyped],
    )
    data = _Counting(rng.standard_normal((8, 3)).astype(np.float32), name="x")
    with pytest.raises(ValueError, match="fails ONNX's checker"):
        calibrate(path, data, out_qdq=str(tmp_path / "q.onnx"), **QUIET)
    assert data.read == 0


def test_progress_total_follows_max_samples(model_path, rng, monkeypatch):
    totals = []
    import trtcal.pipeline.calibration_pass as cal

    class Spy(cal.Progress):
        def __init__(self, enabled, total, desc, unit="sample", start=0):
            totals.append(total)
            super().__init__(False, total, desc, unit, start)

    monkeypatch.setattr(cal, "Progress", Spy)
    calibrate(
        model_path,
        _data(rng, 40),
        method="minmax",
        max_samples=12,
        batch_size=4,
        log=lambda s: None,
    )
    assert totals == [12]


def test_cli_flavor_and_error_prefix(model_path, rng, tmp_path, capsys):
    from trtcal.cli import main

    np.save(tmp_path / "x.npy", _data(rng, 6))
    rc = main(
        [
            "calibrate",
            model_path,
            "--data",
            str(tmp_path / "x.npy"),
            "--method",
            "percentile",
            "--flavor",
            "tensorrt",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and err.count("trtcal:") == 1 and "no requested method has the flavor" in err
    rc = main(
        [
            "calibrate",
            model_path,
            "--data",
            str(tmp_path / "x.npy"),
            "--method",
            "all",
            "--flavor",
            "onnxruntime",
            "--out-table",
            str(tmp_path / "t.json"),
            "-q",
        ]
    )
    assert rc == 0
    prov = json.load(open(tmp_path / "t.entropy.json"))["provenance"]
    assert prov["flavor"] == "onnxruntime"


@pytest.mark.parametrize("batch", [1, 4])
def test_max_samples_counts_calibrated_samples(model_path, rng, tmp_path, batch):
    x = _data(rng, 20)
    x[2, 0, 5, 5] = np.nan  # its activations are NaN: dropped after the model ran, and replaced
    np.save(tmp_path / "x.npy", x)
    res = calibrate(
        model_path,
        str(tmp_path / "x.npy"),
        method="minmax",
        max_samples=9,
        batch_size=batch,
        skip_bad=True,
        **QUIET,
    )
    assert res.samples == 9 and [s for s, _ in res.skipped] == ["x.npy[2]"]
    clean = calibrate(
        model_path, np.delete(x, 2, axis=0)[:9], method="minmax", batch_size=batch, **QUIET
    )
    assert res.amax == clean.amax


def test_preprocessing_that_cannot_fit_the_input_fails_before_the_first_image(
    model_path, rng, tmp_path
):
    from PIL import Image

    from trtcal.pipeline.data import Preprocess

    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20 + i, 23, 3), dtype=np.uint8)).save(d / f"{i}.png")
    with pytest.raises(
        ValueError, match=r"gives images of shape \(3, 18, 18\).*takes \(3, 12, 12\)"
    ):
        calibrate(
            model_path, str(d), preprocess=Preprocess(resize=(18, 18), resize_mode="exact"), **QUIET
        )
    # a size that depends on the image ('shorter' resize, no crop) is checked per image
    res = calibrate(
        model_path, str(d), preprocess=Preprocess(resize=12, crop=12), method="minmax", **QUIET
    )
    assert res.samples == 3


def _sigmoid_model(path):
    return save_graph(
        path, [helper.make_node("Sigmoid", ["x"], ["s"])], [("x", ["N", 64])], [("s", ["N", 64])]
    )


def test_clipped_share_is_reported_and_heavy_clipping_named(tmp_path, rng):
    # a sigmoid's outputs sit in (0.5, 1) for positive inputs: a search that keeps the low bins
    # saturates most of them, and the run says so
    model = _sigmoid_model(str(tmp_path / "s.onnx"))
    x = np.abs(rng.standard_t(3, size=(33, 64))).astype(np.float32)
    said = []
    res = calibrate(
        model, x, method="all", report=str(tmp_path / "r.md"), progress=False, log=said.append
    )
    from trtcal.pipeline.runners import OrtRunner

    acts = {t: np.abs(v) for t, v in OrtRunner(model).run({"x": x}).items()}
    for m, per in res.clipped.items():
        for t, frac in per.items():
            h, a = res.histograms[t], res.amax[m][t]
            direct = float(
                np.mean(acts[t] > a)
            )  # saturated: beyond amax (a value equal to it is exact)
            one_bin = float(h.counts.max()) / h.total
            assert frac <= direct + 1e-12 and direct - frac <= one_bin, (m, t, frac, direct)
    assert (
        res.clipped["minmax"]["s"] == 0.0
    )  # min-max saturates nothing: its amax is the largest |x|
    heavy = [m for m, per in res.clipped.items() if per.get("s", 0) > outputs.CLIP_WARN]
    for m in heavy:
        assert any(s.startswith(f"trtcal: {m} saturates") and "'s' (" in s for s in said), m
    text = open(tmp_path / "r.md").read()
    assert "clipped" in text


def test_clipped_fraction_of_a_signed_histogram():
    h = trtcal.HistogramCollector(16, signed=True, device="cpu")
    h.update(np.array([-8, -3, -1, 0, 1, 2, 5, 7.5], np.float32))
    hist = h.histogram()  # |-8| needs range 16: bins of width 2 over [-16, 16)
    assert hist.range == 16
    assert outputs.clipped_fraction(hist, 6.0) == 2 / 8  # -8 and 7.5, on both sides of zero
    assert outputs.clipped_fraction(hist, 5.0) == 2 / 8  # 5 shares a bin with 4: a lower bound
    assert outputs.clipped_fraction(hist, 16.0) == 0.0


def test_signed_histograms_resume_exactly(model_path, rng, tmp_path):
    x = _data(rng, 14)
    ck = str(tmp_path / "ck.npz")
    full = calibrate(model_path, x, method="all", flavor="onnxruntime", batch_size=4, **QUIET)

    def interrupted():
        for i in range(0, 14, 4):
            if i == 8:
                raise KeyboardInterrupt
            yield {"images": x[i : i + 4]}

    with pytest.raises(KeyboardInterrupt):
        calibrate(
            model_path,
            interrupted(),
            method="all",
            flavor="onnxruntime",
            checkpoint=ck,
            checkpoint_every=1,
            **QUIET,
        )
    rest = calibrate(
        model_path,
        [{"images": x[i : i + 4]} for i in range(0, 14, 4)],
        method="all",
        flavor="onnxruntime",
        checkpoint=ck,
        resume=True,
        **QUIET,
    )
    assert rest.amax == full.amax
    for n, h in full.histograms.items():
        np.testing.assert_array_equal(rest.histograms[n].counts, h.counts)


@pytest.mark.parametrize("damage", ["truncate", "flip", "text"])
def test_damaged_checkpoint_is_a_clear_error(model_path, rng, tmp_path, damage):
    x = _data(rng, 8)
    ck = tmp_path / "ck.npz"
    calibrate(model_path, x, method="minmax", batch_size=4, checkpoint=str(ck), **QUIET)
    blob = ck.read_bytes()
    if damage == "truncate":
        ck.write_bytes(blob[: len(blob) // 3])
    elif damage == "flip":
        b = bytearray(blob)
        for i in range(200, len(b) - 200, 97):
            b[i] ^= 0xFF
        ck.write_bytes(bytes(b))
    else:
        ck.write_text("name amax\nconv1 1.5\n")
    with pytest.raises(ValueError, match="is not a readable trtcal checkpoint"):
        calibrate(
            model_path, x, method="minmax", batch_size=4, checkpoint=str(ck), resume=True, **QUIET
        )


@pytest.mark.parametrize(
    "flavor,given,want", [(None, None, 99.99), ("onnxruntime", None, 99.999), (None, 99.9, 99.9)]
)
def test_the_percentile_used_is_recorded(model_path, rng, tmp_path, flavor, given, want):
    params = {"percentile": {"percentile": given}} if given is not None else None
    res = calibrate(
        model_path,
        _data(rng, 5),
        method="all",
        flavor=flavor,
        params=params,
        out_table=str(tmp_path / "t.json"),
        **QUIET,
    )
    assert res.provenance["percentile"] == want
    assert json.load(open(tmp_path / "t.percentile.json"))["provenance"]["percentile"] == want
    assert "percentile" not in json.load(open(tmp_path / "t.entropy.json"))["provenance"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method=[]), "no method given"),
        (dict(bins=128), "bins=128 is too few for the entropy search"),
        (dict(checkpoint_every=0, checkpoint="ck.npz"), "checkpoint_every must be >= 1"),
        (dict(max_samples=0), "max_samples must be >= 1"),
        (dict(method="all", params={"mse": {"foo": 1}}), "unknown parameter"),
        (
            dict(method="all", params={"entropyy": {}}),
            "params for 'entropyy', which is not a method",
        ),
        (dict(method="percentile", params={"percentile": 99.0}), "must be a mapping"),
        (
            dict(method="percentile", params={"percentile": {"percentile": 0}}),
            r"percentile must be in \(0, 100\]",
        ),
        (dict(out_dir="od"), "out_dir is where the demo"),
        (dict(tensors=["re:(("]), "not a valid regular expression"),
    ],
)
def test_settings_are_checked_before_any_batch(
    model_path, rng, tmp_path, monkeypatch, kwargs, match
):
    monkeypatch.chdir(tmp_path)
    data = _Counting(_data(rng, 8))
    with pytest.raises((ValueError, TypeError), match=match):
        calibrate(model_path, data, **dict(QUIET, **kwargs))
    assert data.read == 0


def test_output_folders_are_created(model_path, rng, tmp_path):
    res = calibrate(
        model_path,
        _data(rng, 6),
        method="all",
        out_qdq=str(tmp_path / "a" / "q.onnx"),
        out_table=str(tmp_path / "b" / "c" / "t.json"),
        out_cache=str(tmp_path / "d" / "x.cache"),
        **QUIET,
    )
    assert all(os.path.isfile(p) for p in res.files.values())


def test_iterable_batches_progress_counts_samples(model_path, rng, monkeypatch):
    import trtcal.pipeline.calibration_pass as cal

    seen = []

    class Spy(cal.Progress):
        def __init__(self, enabled, total, desc, unit="sample", start=0):
            seen.append(("total", total))
            super().__init__(False, total, desc, unit, start)

        def move_to(self, pos):
            seen.append(pos)
            super().move_to(pos)

    monkeypatch.setattr(cal, "Progress", Spy)
    x = _data(rng, 15)
    said = []
    calibrate(
        model_path,
        [{"images": x[:5]}, {"images": x[5:8]}, {"images": x[8:]}],
        method="minmax",
        batch_size=2,
        max_samples=12,
        log=said.append,
    )
    assert seen == [("total", 12), 5, 8, 12]
    assert any("batches of an iterable are run as it gives them" in s for s in said)


def test_data_hints(model_path, rng, tmp_path):
    x = _data(rng, 3)
    with pytest.raises(ValueError, match="looks like one sample"):
        calibrate(model_path, [{"images": x[0]}], **QUIET)
    gray = save_graph(
        tmp_path / "g.onnx",
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", ["N", 1, 12, 12])],
        [("y", ["N", 1, 12, 12])],
    )
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
        tmp_path / "imgs" / "a.png"
    )
    with pytest.raises(ValueError, match="takes 1 channel"):
        calibrate(gray, str(tmp_path / "imgs"), **QUIET)
    (tmp_path / "m.onnx").write_bytes(b"not a protobuf at all \x00\xff" * 7)
    with pytest.raises(ValueError, match="is not an ONNX model"):
        calibrate(str(tmp_path / "m.onnx"), x, **QUIET)
    with pytest.raises(ValueError, match="is a folder"):
        calibrate(str(tmp_path), x, **QUIET)


def test_params_of_a_method_not_computed_are_ignored(model_path, rng):
    # the command line passes --percentile whatever --method is
    res = calibrate(
        model_path,
        _data(rng, 4),
        method="entropy",
        params={"percentile": {"percentile": 99.9}},
        **QUIET,
    )
    assert list(res.amax) == ["entropy"] and "percentile" not in res.provenance


def test_batch_size_input_name_and_preprocess_on_arrays(model_path, rng, tmp_path):
    from trtcal.pipeline.data import Preprocess

    data = _Counting(_data(rng, 8))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        calibrate(model_path, data, batch_size=0, **QUIET)
    with pytest.raises(ValueError, match="no input 'nope'"):
        calibrate(model_path, data, input_name="nope", **QUIET)
    assert data.read == 0
    np.save(tmp_path / "x.npy", _data(rng, 4))
    said = []
    calibrate(
        model_path,
        str(tmp_path / "x.npy"),
        method="minmax",
        preprocess=Preprocess(resize=12),
        progress=False,
        log=said.append,
    )
    assert any("preprocessing applies to images" in s for s in said)
