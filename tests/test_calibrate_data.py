"""Calibration data: preprocessing, image folders, .npy/.npz, shape/dtype checks, bad samples."""

import os

import numpy as np
import pytest

from trtcal.pipeline.data import (
    ArrayFiles,
    ArraySource,
    BadSampleError,
    BatchIterable,
    ImageFolder,
    InputSpec,
    Preprocess,
    batches,
    open_source,
    parse_preprocess,
)

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

SPEC = [InputSpec("images", (None, 3, 8, 10), np.dtype(np.float32))]


def _png(path, arr):
    Image.fromarray(arr).save(path)


def test_preprocess_matches_numpy_by_hand(rng):
    arr = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)  # odd size
    img = Image.fromarray(arr)
    p = Preprocess(
        resize=(13, 17),
        resize_mode="exact",
        crop=(7, 9),
        scale=1 / 255,
        mean=(0.1, 0.2, 0.3),
        std=(0.5, 0.25, 2.0),
        channel_order="BGR",
        layout="NCHW",
    )
    out = p.apply(img)
    crop = arr[3:10, 4:13].astype(np.float32) / 255  # same size: resize is the identity
    expect = (
        (crop[:, :, ::-1] - np.float32([0.1, 0.2, 0.3])) / np.float32([0.5, 0.25, 2.0])
    ).transpose(2, 0, 1)
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
    assert parse_preprocess('{"resize": 5, "mean": [1, 2, 3]}') == Preprocess(
        resize=5, mean=(1, 2, 3)
    )


def test_image_folder_fits_model_size_and_orders_files(tmp_path, rng):
    for name in ("b.png", "a.jpg", "sub/c.png"):
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        _png(tmp_path / name, rng.integers(0, 256, size=(11, 23, 3), dtype=np.uint8))
    src = open_source(str(tmp_path))
    src.bind(SPEC)
    assert isinstance(src.inner, ImageFolder)  # a folder's kind is settled when bound
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
    src.bind(SPEC)
    assert isinstance(src.inner, ArrayFiles)
    assert len(src) == 6
    got = list(batches(src, 4))
    assert got[0].names[:2] == ["a.npy[0]", "a.npy[1]"] and got[1].names[-1] == "b.npy"
    np.testing.assert_array_equal(
        np.concatenate([b.inputs["images"] for b in got]), np.concatenate([x, x[:1]])
    )
    z = tmp_path / "z.npz"
    np.savez(z, whatever=x)
    zs = open_source(str(z))
    zs.bind(SPEC)
    assert len(list(batches(zs, 2))) == 3


def test_npy_rows_are_read_not_mapped(tmp_path, rng):
    # .npy rows come from positional reads (constant RSS over a large file), equal to the
    # array's rows in C and Fortran order; a truncated file is a named bad sample
    from trtcal.pipeline.data import NpyRows

    x = rng.standard_normal((7, 3, 8, 10)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    for name in ("c.npy", "f.npy"):
        rows = NpyRows(str(tmp_path / name))
        assert (
            rows.shape == x.shape and rows.ndim == 4 and rows.dtype == np.float32 and len(rows) == 7
        )
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
    with pytest.raises(
        BadSampleError, match=r"input 'images' expects .*\(3, 8, 10\), found \(3, 9, 10\)"
    ):
        list(batches(src, 2))
    ints = ArraySource(np.zeros((4, 3, 8, 10), dtype=np.int64))
    ints.bind(SPEC)
    with pytest.raises(BadSampleError, match="expects dtype float32, found int64"):
        list(batches(ints, 2))
    f64 = ArraySource(rng.standard_normal((3, 3, 8, 10)))
    f64.bind(SPEC)
    assert next(batches(f64, 2)).inputs["images"].dtype == np.float32  # floats are cast


def test_several_inputs_by_name(rng):
    specs = [
        InputSpec("a", (None, 5), np.dtype(np.float32)),
        InputSpec("b", (None, 2, 3), np.dtype(np.float32)),
    ]
    data = {
        "a": rng.standard_normal((7, 5)).astype(np.float32),
        "b": rng.standard_normal((7, 2, 3)).astype(np.float32),
    }
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


def test_single_image_file_is_one_sample(tmp_path, rng):
    for name in ("a.png", "b.png", "c.jpg"):
        _png(tmp_path / name, rng.integers(0, 256, size=(9, 13, 3), dtype=np.uint8))
    src = open_source(str(tmp_path / "b.png"))
    assert isinstance(src, ImageFolder)
    src.bind(SPEC)
    got = list(batches(src, 4))
    assert len(src) == 1 and [b.names for b in got] == [["b.png"]]
    expect = Preprocess(resize=(8, 10), resize_mode="exact").apply(Image.open(tmp_path / "b.png"))
    np.testing.assert_array_equal(got[0].inputs["images"][0], expect)
    d = src.describe()
    assert d["file"] == str(tmp_path / "b.png") and d["files"] == 1 and "root" not in d
    other = open_source(str(tmp_path / "a.png"))
    other.bind(SPEC)
    assert other.fingerprint() != src.fingerprint()
    listed = ImageFolder([str(tmp_path / "c.jpg"), str(tmp_path / "a.png")])  # the order given
    listed.bind(SPEC)
    assert [n for n, _ in listed.items(0)] == ["c.jpg", "a.png"] and listed.describe()["files"] == 2
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(ValueError, match="x.npy is not an image file"):
        ImageFolder([str(tmp_path / "a.png"), str(tmp_path / "x.npy")])


def _traced_peak(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_is_read_by_rows_never_whole(tmp_path, rng, save):
    # bind() reads headers only; a row costs about a row: an stored array is read in place, a
    # compressed one decompressed as a stream (in order; going back restarts it)
    x = rng.standard_normal((517, 3, 37, 41)).astype(np.float32)  # ~9.4 MB, odd sizes
    y = rng.integers(-9, 9, size=(517, 7), dtype=np.int32)
    z = tmp_path / "big.npz"
    save(z, x=x, y=y)
    specs = [
        InputSpec("x", (None, 3, 37, 41), np.dtype(np.float32)),
        InputSpec("y", (None, 7), np.dtype(np.int32)),
    ]
    src = open_source(str(z))
    _, peak = _traced_peak(lambda: src.bind(specs))
    assert len(src) == 517 and peak < 200_000
    rows, peak = _traced_peak(lambda: [src.row(0, 0), src.row(0, 1)])
    assert peak < 1_000_000, peak  # a whole load is > 9 MB
    _, whole = _traced_peak(lambda: np.load(z)["x"])
    assert whole > x.nbytes  # the measure sees a whole load
    for j, r in zip((0, 1), rows):
        np.testing.assert_array_equal(r["x"], x[j])
        np.testing.assert_array_equal(r["y"], y[j])
    for j in (516, 3, 200, -1):  # random access, backwards included
        np.testing.assert_array_equal(src.row(0, j)["x"], x[j])
    got = list(batches(src, 100, start=400))
    np.testing.assert_array_equal(np.concatenate([b.inputs["x"] for b in got]), x[400:])
    np.testing.assert_array_equal(np.concatenate([b.inputs["y"] for b in got]), y[400:])


def test_npz_single_sample_and_truncated_member(tmp_path, rng):
    x = rng.standard_normal((3, 8, 10)).astype(np.float32)  # one sample
    np.savez(tmp_path / "one.npz", images=x)
    src = open_source(str(tmp_path / "one.npz"))
    src.bind(SPEC)
    got = list(batches(src, 2))
    assert got[0].names == ["one.npz"]
    np.testing.assert_array_equal(got[0].inputs["images"][0], x)
    data = bytearray((tmp_path / "one.npz").read_bytes())
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "t.npz", images=rng.standard_normal((4, 3, 8, 10)).astype(np.float32))
    (bad / "u.npz").write_bytes(bytes(data[: len(data) // 2]))  # not a zip any more
    src = open_source(str(bad))
    src.bind(SPEC)
    assert len(src) == 5
    with pytest.raises(BadSampleError, match="u.npz.*cannot read array file"):
        list(batches(src, 2))


def _two_inputs(h=6, w=7):
    return [
        InputSpec("x", (None, 3, h, w), np.dtype(np.float32)),
        InputSpec("y", (None, 5), np.dtype(np.float32)),
    ]


def test_folder_per_input_pairs_images_and_arrays(tmp_path, rng):
    ys = {}
    for stem in ("b", "a", "sub/c"):
        for d in ("x", "y"):
            os.makedirs(tmp_path / d / os.path.dirname(stem), exist_ok=True)
        _png(tmp_path / "x" / f"{stem}.png", rng.integers(0, 256, size=(11, 13, 3), dtype=np.uint8))
        ys[stem] = rng.standard_normal(5).astype(np.float32)  # one sample per file
        np.save(tmp_path / "y" / f"{stem}.npy", ys[stem])
    (tmp_path / "notes").mkdir()  # other subfolders are ignored
    _png(tmp_path / "notes" / "n.png", rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8))
    src = open_source(str(tmp_path))
    src.bind(_two_inputs())
    assert src.kind == "per-input" and len(src) == 3
    assert src.preprocess.resize == (6, 7)  # fitted to input x
    got = list(batches(src, 2))
    assert [b.names for b in got] == [["a", "b"], ["sub/c"]]
    np.testing.assert_array_equal(
        np.concatenate([b.inputs["y"] for b in got]), np.stack([ys[s] for s in ("a", "b", "sub/c")])
    )
    expect = Preprocess(resize=(6, 7), resize_mode="exact").apply(
        Image.open(tmp_path / "x" / "sub" / "c.png")
    )
    np.testing.assert_array_equal(got[1].inputs["x"][0], expect)
    d = src.describe()
    assert (
        set(d["inputs"]) == {"x", "y"}
        and d["inputs"]["x"]["files"] == 3
        and d["inputs"]["y"]["files"] == 3
    )
    assert d["inputs"]["x"]["folder"] == str(tmp_path / "x") and d["ignored_subfolders"] == [
        "notes"
    ]
    assert src.notes and "['notes']" in src.notes[0]
    with pytest.raises(ValueError, match="subfolder per model input.*drop it"):
        open_source(str(tmp_path), input_name="x").bind(_two_inputs())
    before = src.fingerprint()
    np.save(
        tmp_path / "y" / "a.npy", np.zeros((2, 5), np.float32)
    )  # y changes: the fingerprint does
    again = open_source(str(tmp_path))
    with pytest.raises(
        ValueError, match=r"'a' hold different numbers of samples .*x/a.png: 1.*y/a.npy: 2"
    ):
        again.bind(_two_inputs())
    os.remove(tmp_path / "y" / "a.npy")
    np.savez(tmp_path / "y" / "a.npz", y=ys["a"])  # only y's files differ
    again = open_source(str(tmp_path))
    again.bind(_two_inputs())
    assert again.fingerprint() != before


def test_folder_per_input_of_arrays_rows_and_npz(tmp_path, rng):
    specs = [
        InputSpec("a", (None, 5), np.dtype(np.float32)),
        InputSpec("b", (None, 2, 3), np.dtype(np.float32)),
    ]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a1, b1 = (
        rng.standard_normal((4, 5)).astype(np.float32),
        rng.standard_normal((4, 2, 3)).astype(np.float32),
    )
    a2, b2 = (
        rng.standard_normal(5).astype(np.float32),
        rng.standard_normal((2, 3)).astype(np.float32),
    )
    np.save(tmp_path / "a" / "p.npy", a1)
    np.savez(tmp_path / "b" / "p.npz", whatever=b1)
    np.save(tmp_path / "a" / "q.npy", a2)
    np.savez_compressed(tmp_path / "b" / "q.npz", b=b2)
    src = open_source(str(tmp_path))
    src.bind(specs)
    got = list(batches(src, 3, start=1))
    assert [n for b in got for n in b.names] == ["p[1]", "p[2]", "p[3]", "q"]
    np.testing.assert_array_equal(
        np.concatenate([b.inputs["a"] for b in got]), np.concatenate([a1[1:], a2[None]])
    )
    np.testing.assert_array_equal(
        np.concatenate([b.inputs["b"] for b in got]), np.concatenate([b1[1:], b2[None]])
    )


def test_folder_per_input_errors_name_file_and_input(tmp_path, rng):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
    for stem in ("a", "b", "c"):
        _png(tmp_path / "x" / f"{stem}.png", rng.integers(0, 256, size=(7, 9, 3), dtype=np.uint8))
    for stem in ("a", "c"):
        np.save(tmp_path / "y" / f"{stem}.npy", rng.standard_normal(5).astype(np.float32))
    with pytest.raises(ValueError, match=r"input 'y' has no file 'y/b\.\*' to pair with x/b.png"):
        open_source(str(tmp_path)).bind(_two_inputs())
    # images for one input of two: told at bind, before any batch, how to give the other
    with pytest.raises(ValueError, match=r"gives input 'x' only.*\['y'\].*subfolder per input"):
        open_source(str(tmp_path / "x"), input_name="x").bind(_two_inputs())
    with pytest.raises(ValueError, match=r"gives input 'x' only"):
        open_source(str(tmp_path / "x" / "a.png"), input_name="x").bind(_two_inputs())
    with pytest.raises(
        ValueError, match="2 inputs.*subfolder named after each input"
    ):  # not a bad sample per file
        open_source(str(tmp_path / "y")).bind(_two_inputs())
    other = [
        InputSpec("x", (None, 3, 6, 7), np.dtype(np.float32)),
        InputSpec("z", (None, 5), np.dtype(np.float32)),
    ]
    with pytest.raises(ValueError, match=r"subfolder for input\(s\) \['x'\] but none for \['z'\]"):
        open_source(str(tmp_path)).bind(other)
    np.save(tmp_path / "x" / "d.npy", np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="both images and .npy/.npz"):
        open_source(str(tmp_path)).bind(_two_inputs())


# ------------------------------------------------------------------- memory constant in the rows of
# files
def _npy_folder(folder, rows, files=4, width=4):
    """``files`` .npy files of ``rows`` rows in all, made sparse and cheap with open_memmap."""
    folder.mkdir()
    per = rows // files
    for i in range(files):
        m = np.lib.format.open_memmap(
            folder / f"part{i}.npy", mode="w+", dtype=np.float32, shape=(per, width)
        )
        m[-1] = i + 1  # the last row of each file: known values
        m.flush()
        del m
    return folder


def _traced(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_npy_files_memory_is_constant_in_the_number_of_rows(tmp_path):
    """Reading FILES (a folder of .npy): binding, the length and reading the last rows cost the
    same Python memory for 20 thousand and 2 million rows (a (file, row) list would take
    ~200 MB for 2M rows)."""
    spec = [InputSpec("x", (None, 4), np.dtype(np.float32))]

    def peak(rows):
        src = open_source(str(_npy_folder(tmp_path / f"d{rows}", rows)))

        def work():
            src.bind(spec)
            last = list(
                batches(src, 8, start=len(src) - 12)
            )  # the tail, across the last file's end
            return len(src), last

        (n, last), p = _traced(work)
        assert n == rows and [b.names[0] for b in last] == [
            f"part3.npy[{rows // 4 - 12}]",
            f"part3.npy[{rows // 4 - 4}]",
        ]
        np.testing.assert_array_equal(last[-1].inputs["x"][-1], [4, 4, 4, 4])
        return p

    small, large = peak(20_000), peak(2_000_000)
    assert large < small + 64 * 1024, (small, large)


def test_npy_files_rss_is_constant_in_the_number_of_rows(tmp_path):
    """The same through a real `trtcal calibrate` process: peak RSS of a run over 2M rows of files
    (max 64 samples used) is within a few MB of the run over 20k rows."""
    import subprocess
    import sys

    from trtcal.pipeline.demo import build_model

    pytest.importorskip("onnxruntime")
    model = str(tmp_path / "m.onnx")
    from calib_models import save_graph

    save_graph(
        model,
        [__import__("onnx").helper.make_node("Relu", ["x"], ["y"])],
        [("x", ["N", 4])],
        [("y", ["N", 4])],
    )
    del build_model
    code = (
        "import resource, sys\nfrom trtcal.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)"
    )
    env = dict(
        os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(__file__)), "python")
    )

    def rss(rows):
        data = _npy_folder(tmp_path / f"r{rows}", rows)
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "calibrate",
                model,
                "--data",
                str(data),
                "--method",
                "minmax",
                "--max-samples",
                "64",
                "-q",
                "--checkpoint",
                str(tmp_path / f"ck{rows}.npz"),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        return int(r.stderr.strip().splitlines()[-1])  # KiB on Linux

    small, large = rss(20_000), rss(2_000_000)
    assert large < small + 16 * 1024, (small, large)  # KiB


# ------------------------------------------------------------------- values converted only when
# they survive
@pytest.mark.parametrize(
    "data,dtype,ok",
    [
        (np.array([0, 100, 127], np.uint8), np.int8, True),
        (np.array([0, 200], np.uint8), np.int8, False),
        (np.array([-1, 5], np.int16), np.uint8, False),
        (np.array([2**31 - 1], np.int64), np.int32, True),
        (np.array([2**31], np.int64), np.int32, False),
        (np.array([-(2**31) - 1], np.int64), np.int32, False),
        (np.array([0, 1], np.int64), np.bool_, True),
        (np.array([2], np.int64), np.bool_, False),
        (np.array([65504.0, -1.5], np.float32), np.float16, True),
        (np.array([70000.0], np.float32), np.float16, False),
        (
            np.array([np.inf, 1.0], np.float32),
            np.float16,
            True,
        ),  # already infinite: not an overflow of the cast
        (np.array([1e300], np.float64), np.float32, False),
        (np.array([1.5], np.float64), np.float32, True),
    ],
)
def test_dtype_conversion_refuses_values_that_change(data, dtype, ok):
    from trtcal.pipeline.data import check_sample

    spec = [InputSpec("x", (None, data.size), np.dtype(dtype))]
    if ok:
        out = check_sample({"x": data}, spec, "s.npy[3]", batched=False)["x"]
        assert out.dtype == dtype
        np.testing.assert_array_equal(out.astype(np.float64), data.astype(np.float64))
    else:
        with pytest.raises(BadSampleError, match=r"'s\.npy\[3\]'.*(does not fit|overflows)"):
            check_sample({"x": data}, spec, "s.npy[3]", batched=False)


# ------------------------------------------------------------------- folders: symlinks followed,
# skips said
def test_symlinked_subfolder_is_followed_and_cycles_end(tmp_path, rng):
    root, other = tmp_path / "imgs", tmp_path / "elsewhere"
    root.mkdir()
    other.mkdir()
    _png(root / "a.png", rng.integers(0, 255, (8, 10, 3), dtype=np.uint8))
    _png(other / "b.png", rng.integers(0, 255, (8, 10, 3), dtype=np.uint8))
    os.symlink(other, root / "linked")
    os.symlink(root, other / "loop")  # a cycle: each real folder is read once
    src = open_source(str(root))
    src.bind(SPEC)
    assert [n for n, _ in src.items(0)] == ["a.png", os.path.join("linked", "b.png")]


def test_files_left_out_of_a_folder_are_said(tmp_path, rng):
    root = tmp_path / "imgs"
    root.mkdir()
    _png(root / "a.png", rng.integers(0, 255, (8, 10, 3), dtype=np.uint8))
    (root / "notes.txt").write_text("x")
    (root / "b.gif").write_bytes(b"GIF89a")
    src = open_source(str(root))
    src.bind(SPEC)
    (note,) = src.notes
    assert (
        "2 file(s) that are not images are not read" in note and ".gif" in note and ".txt" in note
    )
