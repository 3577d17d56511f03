"""A corpus of malformed inputs for every reader (images, arrays, ONNX models, caches, tables,
checkpoints): each gives one clean line on stderr, ``trtcal: error: ...`` naming the file, exit
status 1, and no traceback (the CLI's fallback for an unexpected exception type, which says
TRTCAL_TRACEBACK, must never be needed)."""

import io
import json
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
PIL = pytest.importorskip("PIL")

import onnx  # noqa: E402
from calib_models import cnn_model, save_graph  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from PIL import Image  # noqa: E402

from trtcal.cli import main  # noqa: E402
from trtcal.pipeline import checkpoint as ckpt  # noqa: E402


def _clean_error(capsys, argv, name):
    """Runs the CLI; asserts exit 1 and one line 'trtcal: error: ...' naming ``name``."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("trtcal: error:")]
    assert rc == 1, (rc, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "TRTCAL_TRACEBACK" not in err, f"an unexpected exception type reached the CLI: {err}"
    assert name in lines[0], (name, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------ images
def _png16_rgb(path, h=12, w=12):
    rgb = np.random.default_rng(0).integers(0, 65535, (h, w, 3)).astype(">u2")
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _good_png(path, size=14):
    Image.fromarray(
        np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)
    ).save(path)


IMAGES = {
    "empty.png": lambda p: p.write_bytes(b""),
    "truncated.png": lambda p: (_good_png(p), p.write_bytes(p.read_bytes()[:60])),
    "text.jpg": lambda p: p.write_text("not a picture at all\n"),
    "rgb16.png": _png16_rgb,
    "dangling.png": lambda p: os.symlink(p.parent / "nowhere.png", p),
    "bomb.png": lambda p: _good_png(p, 64),  # with Image.MAX_IMAGE_PIXELS lowered below
}


@pytest.fixture
def model(tmp_path):
    return cnn_model(tmp_path / "cnn.onnx")


@pytest.mark.parametrize("bad", sorted(IMAGES))
def test_bad_images_are_named_and_skippable(tmp_path, capsys, monkeypatch, model, bad):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        _good_png(folder / f"ok{i}.png")
    IMAGES[bad](folder / bad)
    monkeypatch.setattr(
        Image, "MAX_IMAGE_PIXELS", 1500
    )  # 64x64 = 4096 > 2 x 1500: a bomb; 14x14 is not
    args = [
        "calibrate",
        model,
        "--data",
        str(folder),
        "--method",
        "minmax",
        "-q",
        "--checkpoint",
        str(tmp_path / "ck.npz"),
    ]
    line = _clean_error(capsys, args, bad)
    assert "bad sample" in line
    why = {
        "bomb.png": "decompression bomb",
        "rgb16.png": "16-bit colour image",
        "truncated.png": "cannot read",
    }
    assert why.get(bad, "") in line
    assert main(args + ["--skip-bad", "--resume", "--out-table", str(tmp_path / "t.json")]) == 0
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["provenance"]["num_samples"] == 3 and table["provenance"]["extra"]["skipped"] == 1


def test_sixteen_bit_grayscale_png_keeps_its_low_bits(tmp_path):
    from trtcal.pipeline.data import Preprocess

    a = (np.arange(16 * 16).reshape(16, 16) * 250 + 7).astype(np.uint16)  # values far above 255
    Image.fromarray(a).save(tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as img:
        got = Preprocess(scale=1 / 255).apply(img)
    assert got.shape == (3, 16, 16)
    np.testing.assert_allclose(
        got[0], a / 65535.0, rtol=1e-6
    )  # scaled to [0, 1], not clipped at 255
    assert len(np.unique(got[0])) == 256


# ------------------------------------------------------------------------------------------ arrays
def _typed_model(path, dtype):
    """x (dtype, [N, 4]) -> Cast to float -> Relu."""
    x = helper.make_tensor_value_info("x", dtype, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    g = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "g",
        [x],
        [y],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)


ARRAYS = {  # name: (model input dtype, writer)
    "truncated.npy": (
        TensorProto.FLOAT,
        lambda p: (np.save(p, np.ones((5, 4), np.float32)), p.write_bytes(p.read_bytes()[:100])),
    ),
    "header.npy": (
        TensorProto.FLOAT,
        lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{garbage}       \n"),
    ),
    "objects.npy": (
        TensorProto.FLOAT,
        lambda p: np.save(p, np.array([[1, "a", None, 2]] * 3, dtype=object)),
    ),
    "text.npy": (TensorProto.FLOAT, lambda p: p.write_text("1,2,3,4\n")),
    "notzip.npz": (TensorProto.FLOAT, lambda p: p.write_bytes(b"PK\x03\x04 broken")),
    "empty.npy": (TensorProto.FLOAT, lambda p: p.write_bytes(b"")),
    "shape.npy": (TensorProto.FLOAT, lambda p: np.save(p, np.ones((5, 3), np.float32))),
    "uint8_200.npy": (TensorProto.INT8, lambda p: np.save(p, np.full((5, 4), 200, np.uint8))),
    "int64_big.npy": (TensorProto.INT32, lambda p: np.save(p, np.full((5, 4), 2**40, np.int64))),
    "f32_big.npy": (TensorProto.FLOAT16, lambda p: np.save(p, np.full((5, 4), 1e6, np.float32))),
    "stringy.npy": (TensorProto.FLOAT, lambda p: np.save(p, np.array([["a"] * 4] * 2))),
}


@pytest.mark.parametrize("bad", sorted(ARRAYS))
def test_bad_arrays_are_refused_naming_the_file(tmp_path, capsys, bad):
    dtype, write = ARRAYS[bad]
    model = _typed_model(tmp_path / "m.onnx", dtype)
    write(tmp_path / bad)
    line = _clean_error(
        capsys,
        [
            "calibrate",
            model,
            "--data",
            str(tmp_path / bad),
            "-q",
            "--method",
            "minmax",
            "--checkpoint",
            str(tmp_path / "ck.npz"),
        ],
        bad,
    )
    if bad == "uint8_200.npy":
        assert "value 200" in line and "int8" in line
    if bad == "int64_big.npy":
        assert f"value {2**40}" in line and "int32" in line
    if bad == "f32_big.npy":
        assert "overflows float16" in line and "NaN" not in line


def test_values_that_survive_are_converted(tmp_path):
    from trtcal import calibrate

    model = _typed_model(tmp_path / "m.onnx", TensorProto.INT8)
    np.save(tmp_path / "ok.npy", np.array([[0, 1, 100, 127]] * 3, np.uint8))
    res = calibrate(
        model, str(tmp_path / "ok.npy"), method="minmax", progress=False, log=lambda s: None
    )
    assert res.amax["minmax"]["y"] == 127.0


# ------------------------------------------------------------------------------------------ models
def _external_model(folder, location):
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    w.ClearField("float_data")
    w.ClearField("raw_data")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = folder / "ext.onnx"
    p.write_bytes(m.SerializeToString())
    return p


def _models(tmp_path, model):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(16, dtype=np.float32).tobytes())
    sub = tmp_path / "m"
    sub.mkdir()
    out = {}
    out["garbage.onnx"] = tmp_path / "garbage.onnx"
    out["garbage.onnx"].write_bytes(os.urandom(3000))
    out["half.onnx"] = tmp_path / "half.onnx"
    raw = open(model, "rb").read()
    out["half.onnx"].write_bytes(raw[: len(raw) // 2])
    out["empty.onnx"] = tmp_path / "empty.onnx"
    out["empty.onnx"].write_bytes(b"")
    out["custom_op.onnx"] = tmp_path / "custom_op.onnx"
    save_graph(
        out["custom_op.onnx"],
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="no.such")],
        [("x", ["N", 4])],
        [("y", ["N", 4])],
    )
    m = onnx.load(str(out["custom_op.onnx"]))
    m.opset_import.append(helper.make_opsetid("no.such", 1))
    onnx.save(m, str(out["custom_op.onnx"]))
    out["fails_at_run.onnx"] = (
        tmp_path / "fails_at_run.onnx"
    )  # Reshape to a size the data does not have
    shape = numpy_helper.from_array(np.array([-1, 5], np.int64), "shape")
    save_graph(
        out["fails_at_run.onnx"],
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("Relu", ["r"], ["y"]),
        ],
        [("x", ["N", 4])],
        [("y", ["N", 5])],
        [shape],
    )
    traversal = sub / "traversal"
    traversal.mkdir()
    out["traversal/ext.onnx"] = _external_model(traversal, "../../secret.bin")
    absolute = sub / "absolute"
    absolute.mkdir()
    out["absolute/ext.onnx"] = _external_model(absolute, str(secret))
    link = sub / "link"
    link.mkdir()
    os.symlink(secret, link / "w.bin")
    out["link/ext.onnx"] = _external_model(link, "w.bin")
    return out


MODELS = [
    "garbage.onnx",
    "half.onnx",
    "empty.onnx",
    "custom_op.onnx",
    "fails_at_run.onnx",
    "traversal/ext.onnx",
    "absolute/ext.onnx",
    "link/ext.onnx",
]


@pytest.mark.parametrize("bad", MODELS)
def test_bad_models_are_refused_naming_the_model(tmp_path, capsys, model, bad):
    path = _models(tmp_path, model)[bad]
    data = tmp_path / "x.npy"
    np.save(
        data,
        np.ones(
            (6, 4)
            if "ext" in bad or bad in ("custom_op.onnx", "fails_at_run.onnx")
            else (6, 3, 12, 12),
            np.float32,
        ),
    )
    line = _clean_error(
        capsys,
        [
            "calibrate",
            str(path),
            "--data",
            str(data),
            "-q",
            "--method",
            "minmax",
            "--checkpoint",
            str(tmp_path / "ck.npz"),
        ],
        str(path),
    )
    if "ext" in bad:
        assert "outside the model's folder" in line
    if bad == "fails_at_run.onnx":
        assert "ONNX Runtime failed running" in line and "x.npy[0]" in line


def test_external_data_inside_the_folder_loads(tmp_path):
    from trtcal.pipeline.runners import load_onnx

    folder = tmp_path / "ok"
    folder.mkdir()
    (folder / "w.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    m = load_onnx(str(_external_model(folder, "w.bin")))
    np.testing.assert_array_equal(
        numpy_helper.to_array(m.graph.initializer[0]).ravel(), np.arange(16)
    )


# ------------------------------------------------------------------------------- caches and tables
CACHES = {
    "binary.cache": b"\x00\x01\x02TRT",
    "garbage.cache": os.urandom(4096).replace(b"\x00", b"\x01"),
    "longline.cache": b"x" * 200_000,
    "version0.cache": b"TRT-0-EntropyCalibration2\na: 3c010204\n",
    "version12.cache": b"TRT-12000-EntropyCalibration2\na: 3c010204\n",
    "version99.cache": b"TRT-99999999-EntropyCalibration2\na: 3c010204\n",
    "badhex.cache": b"TRT-8601-EntropyCalibration2\na: xyz\n",
    "twice.cache": b"TRT-8601-EntropyCalibration2\na: 3c010204\r\na: 3c010204\n",
    "nocolon.cache": b"TRT-8601-EntropyCalibration2\njust text\n",
    "empty.cache": b"",
    "ort.cache": b"conv1 1.5\nrelu1 2.0\n",
    "bad.json": b"{not json",
    "array.json": b"[1, 2]",
    "tensors_list.json": json.dumps(
        {"format": "trtcal.calibration-table", "version": 1, "tensors": [1]}
    ).encode(),
    "neg.json": json.dumps(
        {"format": "trtcal.calibration-table", "version": 1, "tensors": {"t": {"amax": -1.0}}}
    ).encode(),
    "nan.json": json.dumps(
        {"format": "trtcal.calibration-table", "version": 1, "tensors": {"t": {"amax": "nan"}}}
    ).encode(),
    "neginf.json": json.dumps(
        {"format": "trtcal.calibration-table", "version": 1, "tensors": {"t": {"amax": "-inf"}}}
    ).encode(),
    "noamax.json": json.dumps(
        {"format": "trtcal.calibration-table", "version": 1, "tensors": {"t": {"scale": 1}}}
    ).encode(),
    "future.json": json.dumps(
        {"format": "trtcal.calibration-table", "version": 99, "tensors": {}}
    ).encode(),
}


@pytest.mark.parametrize("bad", sorted(CACHES))
@pytest.mark.parametrize("action", ["show", "convert"])
def test_bad_caches_and_tables_are_refused_naming_the_file(tmp_path, capsys, bad, action):
    p = tmp_path / bad
    p.write_bytes(CACHES[bad])
    out = tmp_path / ("out.cache" if bad.endswith(".json") else "out.json")
    argv = ["cache", "show", str(p)] if action == "show" else ["cache", "convert", str(p), str(out)]
    line = _clean_error(capsys, argv, bad)
    assert not out.exists()
    if bad in ("neg.json", "nan.json", "neginf.json"):
        assert "tensor 't'" in line


# ------------------------------------------------------------------------------------- checkpoints
def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npz_meta(path, meta_bytes):
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(meta_bytes, np.uint8))
    cbuf = io.BytesIO()
    np.save(cbuf, np.zeros((1, 4), np.int64))
    _zip(path, {"meta.npy": buf.getvalue(), "counts.npy": cbuf.getvalue()})


CHECKPOINTS = {
    "text.npz": lambda p: p.write_text("hello"),
    "json.npz": lambda p: p.write_text('{"format": "x"}'),
    "array.npz": lambda p: np.save(open(p, "wb"), np.ones(3)),
    "pickle.npz": lambda p: p.write_bytes(pickle.dumps({"a": 1})),
    "image.npz": lambda p: (
        _good_png(p.with_suffix(".png")) or p.write_bytes(p.with_suffix(".png").read_bytes())
    ),
    "nometa.npz": lambda p: np.savez(p, counts=np.zeros(3)),
    "metanotjson.npz": lambda p: _npz_meta(p, b"{{{"),
    "metalist.npz": lambda p: _npz_meta(p, b"[1, 2]"),
    "metamissing.npz": lambda p: _npz_meta(
        p, json.dumps({"format": ckpt.FORMAT, "version": ckpt.VERSION}).encode()
    ),
    "empty.npz": lambda p: p.write_bytes(b""),
    "cut.npz": lambda p: (
        np.savez(p, meta=np.zeros(100, np.uint8), counts=np.zeros(5)),
        p.write_bytes(p.read_bytes()[:150]),
    ),
}


@pytest.mark.parametrize("bad", sorted(CHECKPOINTS))
def test_bad_checkpoints_are_refused_naming_the_file(tmp_path, capsys, model, bad):
    p = tmp_path / bad
    CHECKPOINTS[bad](p)
    np.save(tmp_path / "x.npy", np.ones((4, 3, 12, 12), np.float32))
    line = _clean_error(
        capsys,
        [
            "calibrate",
            model,
            "--data",
            str(tmp_path / "x.npy"),
            "-q",
            "--resume",
            "--checkpoint",
            str(p),
        ],
        bad,
    )
    assert "not a readable trtcal checkpoint" in line
    if bad != "pickle.npz":
        assert "pickle" not in line  # only a pickle is called one
    else:
        assert "Python pickle" in line


def test_a_checkpoint_that_is_a_folder_is_refused(tmp_path, capsys, model):
    (tmp_path / "ck.npz").mkdir()
    np.save(tmp_path / "x.npy", np.ones((4, 3, 12, 12), np.float32))
    _clean_error(
        capsys,
        [
            "calibrate",
            model,
            "--data",
            str(tmp_path / "x.npy"),
            "-q",
            "--checkpoint",
            str(tmp_path / "ck.npz"),
        ],
        "ck.npz",
    )


@pytest.mark.parametrize(
    "doc",
    [
        {"format": "trtcal.calibration-table", "version": 1, "provenance": [1], "tensors": {}},
        {
            "format": "trtcal.calibration-table",
            "version": 1,
            "provenance": {"extra": 5},
            "tensors": {},
        },
        {"format": "trtcal.calibration-table", "version": "one", "tensors": {}},
        {"format": "trtcal.calibration-table", "version": 1, "tensors": {"t": {"amax": [1]}}},
        {"format": "trtcal.calibration-table", "version": 1, "tensors": {"t": {"amax": True}}},
    ],
)
def test_malformed_table_fields_are_refused_naming_the_file(tmp_path, capsys, doc):
    p = tmp_path / "odd.json"
    p.write_text(json.dumps(doc))
    _clean_error(capsys, ["cache", "show", str(p)], "odd.json")
