"""Calibration data: preprocessing, image folders, .npy/.npz, shape/dtype checks, bad samples."""

import os

import numpy as np
import pytest

from trtcal.calibration.data import (ArrayFiles, ArraySource, BadSampleError, BatchIterable, ImageFolder, InputSpec,
                                   Preprocess, batches, open_source, parse_preprocess)

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

SPEC = [InputSpec("images", (None, 3, 8, 10), np.dtype(np.float32))]


def _png(path, arr):
    Image.fromarray(arr).save(path)


def test_preprocess_matches_numpy_by_hand(rng):
    arr = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)  # odd size
    img = Image.fromarray(arr)
    p = Preprocess(resize=(13, 17), resize_mode="exact", crop=(7, 9), scale=1 / 255, mean=(0.1, 0.2, 0.3),
                   std=(0.5, 0.25, 2.0), channel_order="BGR", layout="NCHW")
    out = p.apply(img)
    crop = arr[3:10, 4:13].astype(np.float32) / 255  # same size: resize is the identity
    expect = ((crop[:, :, ::-1] - np.float32([0.1, 0.2, 0.3])) / np.float32([0.5, 0.25, 2.0])).transpose(2, 0, 1)
    assert out.shape == (3, 7, 9) and out.dtype == np.float32
    np.testing.assert_allclose(out, expect, rtol=1e-6, atol=1e-6)
    nhwc = Preprocess(crop=(7, 9), layout="NHWC").apply(img)
    np.testing.assert_allclose(nhwc, arr[3:10, 4:13] / np.float32(255), rtol=1e-6)


def test_shorter_side_and_letterbox(rng):
    img = Image.fromarray(rng.integers(0, 256, size=(20, 40, 3), dtype=np.uint8))
    a = Preprocess(resize=10, crop=10).apply(img)
    assert a.shape == (3, 10, 10)
    lb = Preprocess(resize=(16, 16), resize_mode="letterbox", scale=1.0, pad_value=7).apply(img)
    assert lb.shape == (3, 16, 16)
    assert np.all(lb[:, 0, :] == 7) and np.all(lb[:, -1, :] == 7)  # padded top and bottom rows
    assert "letterbox" in Preprocess(resize=(16, 16), resize_mode="letterbox").describe()


def test_preprocess_rejects_bad_settings():
    with pytest.raises(ValueError, match="channel_order"):
        Preprocess(channel_order="GRB")
    with pytest.raises(ValueError, match="three values"):
        Preprocess(mean=(1.0, 2.0))
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        parse_preprocess('{"resise": 3}')
    assert parse_preprocess('{"resize": 5, "mean": [1, 2, 3]}') == Preprocess(resize=5, mean=(1, 2, 3))


def test_image_folder_fits_model_size_and_orders_files(tmp_path, rng):
    for name in ("b.png", "a.jpg", "sub/c.png"):
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        _png(tmp_path / name, rng.integers(0, 256, size=(11, 23, 3), dtype=np.uint8))
    src = open_source(str(tmp_path))
    assert isinstance(src, ImageFolder)
    src.bind(SPEC)
    assert src.preprocess.resize == (8, 10)  # taken from the model's fixed H, W
    got = list(batches(src, 2))
    assert [b.names for b in got] == [["a.jpg", "b.png"], ["sub/c.png"]]
    assert got[0].inputs["images"].shape == (2, 3, 8, 10)


def test_unreadable_image_stops_or_is_skipped(tmp_path, rng):
    for i in range(4):
        _png(tmp_path / f"img{i}.png", rng.integers(0, 256, size=(8, 10, 3), dtype=np.uint8))
    (tmp_path / "img2.png").write_bytes(b"not a png at all")
    src = open_source(str(tmp_path))
    src.bind(SPEC)
    with pytest.raises(BadSampleError, match="img2.png"):
        list(batches(src, 3))
    seen = []
    got = list(batches(src, 3, skip_bad=True, on_bad=seen.append))
    assert [b.names for b in got] == [["img0.png", "img1.png", "img3.png"]]
    assert got[0].skipped[0][0] == "img2.png" and seen[0].sample == "img2.png"


def test_npy_and_npz(tmp_path, rng):
    x = rng.standard_normal((5, 3, 8, 10)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x[0])  # a single sample
    src = open_source(str(tmp_path))
    assert isinstance(src, ArrayFiles)
    src.bind(SPEC)
    assert len(src) == 6
    got = list(batches(src, 4))
    assert got[0].names[:2] == ["a.npy[0]", "a.npy[1]"] and got[1].names[-1] == "b.npy"
    np.testing.assert_array_equal(np.concatenate([b.inputs["images"] for b in got]), np.concatenate([x, x[:1]]))
    z = tmp_path / "z.npz"
    np.savez(z, whatever=x)
    zs = open_source(str(z))
    zs.bind(SPEC)
    assert len(list(batches(zs, 2))) == 3


def test_npy_rows_are_read_not_mapped(tmp_path, rng):
    # .npy rows come from positional reads (constant RSS over a large file), equal to the
    # array's rows in C and Fortran order; a truncated file is a named bad sample
    from trtcal.calibration.data import NpyRows

    x = rng.standard_normal((7, 3, 8, 10)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    for name in ("c.npy", "f.npy"):
        rows = NpyRows(str(tmp_path / name))
        assert rows.shape == x.shape and rows.ndim == 4 and rows.dtype == np.float32 and len(rows) == 7
        for j in range(-7, 7):
            np.testing.assert_array_equal(rows[j], x[j])
    data = (tmp_path / "c.npy").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t.npy").write_bytes(data[:-7])
    src = open_source(str(bad))
    src.bind(SPEC)
    with pytest.raises(BadSampleError, match="t.npy.*truncated"):
        list(batches(src, 2))


def test_shape_and_dtype_errors_name_input_expected_found(rng):
    src = ArraySource(rng.standard_normal((4, 3, 9, 10)).astype(np.float32))
    src.bind(SPEC)
    with pytest.raises(BadSampleError, match=r"input 'images' expects .*\(3, 8, 10\), found \(3, 9, 10\)"):
        list(batches(src, 2))
    ints = ArraySource(np.zeros((4, 3, 8, 10), dtype=np.int64))
    ints.bind(SPEC)
    with pytest.raises(BadSampleError, match="expects dtype float32, found int64"):
        list(batches(ints, 2))
    f64 = ArraySource(rng.standard_normal((3, 3, 8, 10)))
    f64.bind(SPEC)
    assert next(batches(f64, 2)).inputs["images"].dtype == np.float32  # floats are cast


def test_several_inputs_by_name(rng):
    specs = [InputSpec("a", (None, 5), np.dtype(np.float32)), InputSpec("b", (None, 2, 3), np.dtype(np.float32))]
    data = {"a": rng.standard_normal((7, 5)).astype(np.float32), "b": rng.standard_normal((7, 2, 3)).astype(np.float32)}
    src = open_source(data)
    src.bind(specs)
    got = list(batches(src, 3, max_samples=5))
    assert [len(b.names) for b in got] == [3, 2]
    with pytest.raises(ValueError, match=r"no data for model input\(s\) \['b'\]"):
        open_source({"a": data["a"]}).bind(specs)
    with pytest.raises(ValueError, match="2 inputs"):
        open_source(data["a"]).bind(specs)


def test_iterable_of_batches_resumes_by_skipping(rng):
    bs = [{"images": rng.standard_normal((2, 3, 8, 10)).astype(np.float32)} for _ in range(4)]
    src = BatchIterable(bs)
    src.bind(SPEC)
    got = list(batches(src, 99, start=1))
    assert len(got) == 3 and got[0].names == ["batch1[0]", "batch1[1]"] and got[-1].end == 4
    np.testing.assert_array_equal(got[0].inputs["images"], bs[1]["images"])
