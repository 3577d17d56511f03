"""SiLU kernels against the float64 reference: every dtype, odd sizes, misaligned views,
exact INT8 tables (bit for bit against an independent computation), and the Q/DQ boundaries."""

import math

import numpy as np
import pytest

import trtcal
from trtcal.core._backend import extension
from trtcal.reference import silu as ref

FLOATS = ["float32", "float16", "bfloat16"]
MANT = {"float32": 23, "float16": 10, "bfloat16": 7}
MIN_EXP = {"float32": -126, "float16": -14, "bfloat16": -126}
# Results below 1e-36 in magnitude are compared absolutely (exp(x) is subnormal for x < -87).
FLOOR = {"float32": 1e-36, "float16": 0.0, "bfloat16": 1e-36}
ULPS = {"float32": 4.0, "float16": 1.0, "bfloat16": 1.0}


def np_dtype(name):
    return ref.numpy_dtype(name)


def heavy_tailed(rng, n, dtype):
    """Student-t, Laplace, outliers and special values, cast to ``dtype``."""
    x = np.concatenate(
        [
            rng.standard_t(2, size=n) * 4,
            rng.laplace(0, 3, size=n),
            rng.standard_normal(n) * 1e3,
        ]
    )
    rng.shuffle(x)
    x = x[:n]
    specials = np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            -1.2785,
            -88.8,
            -104.0,
            88.0,
            1e-40,
            -1e-40,
            60000.0,
            -60000.0,
            3e38,
            -3e38,
        ]
    )
    k = min(n, specials.size)
    x[rng.choice(n, size=k, replace=False)] = specials[:k]
    with np.errstate(over="ignore"):
        return x.astype(np.float32).astype(np_dtype(dtype))


def all_16bit(dtype):
    return np.arange(65536, dtype=np.uint16).view(np_dtype(dtype))


def assert_silu_close(got, x, dtype):
    """Within ULPS[dtype] units in the last place of the float64 reference."""
    got = np.asarray(got).astype(np.float64).ravel()
    want = ref.silu(np.asarray(x).astype(np.float64)).ravel()
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), "NaN positions differ"
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), "infinite results differ"
    fin = ~nan & ~inf
    g, w = got[fin], want[fin]
    exponent = np.maximum(np.frexp(w)[1] - 1, MIN_EXP[dtype])
    tol = np.maximum(ULPS[dtype] * np.ldexp(1.0, exponent - MANT[dtype]), FLOOR[dtype])
    bad = np.flatnonzero(np.abs(g - w) > tol)
    if bad.size:
        i = bad[0]
        xs = np.asarray(x).astype(np.float64).ravel()[fin]
        pytest.fail(
            f"{bad.size} of {g.size} {dtype} values off: x={xs[i]!r} got {g[i]!r} want {w[i]!r}"
        )


def random_scales(rng, k):
    return [float(np.float32(10 ** rng.uniform(-4, 1))) for _ in range(k)]


# ---- reference and host path (CPU) --------------------------------------------------


def test_reference_special_values():
    y = ref.silu(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1000.0, 1000.0]))
    assert np.isnan(y[0]) and y[1] == np.inf
    assert y[2] == 0 and np.signbit(y[2])
    assert y[3] == 0 and not np.signbit(y[3]) and np.signbit(y[4])
    assert y[5] == 0 and y[6] == 1000.0


def test_reference_matches_definition(rng):
    x = rng.uniform(-30, 30, size=10001)
    np.testing.assert_allclose(ref.silu(x), x / (1 + np.exp(-x)), rtol=1e-14, atol=1e-300)
    x = rng.uniform(-700, -30, size=1001)  # where x * exp(x) is the stable form
    np.testing.assert_allclose(ref.silu(x), x * np.exp(x) / (1 + np.exp(x)), rtol=1e-14)


def _table_by_hand(s_in, s_out):
    """An independent INT8 table: Python floats, math.exp, round() (half to even)."""
    out = []
    for q in range(-128, 128):
        with np.errstate(over="ignore"):
            v = float(np.float32(q) * np.float32(s_in))
        if v == -math.inf:
            s = -0.0
        elif v == math.inf:
            s = math.inf
        elif v >= 0:
            s = v / (1 + math.exp(-v))
        else:
            t = math.exp(v)
            s = v * t / (1 + t)
        r = s / float(np.float32(s_out))
        out.append(127 if r == math.inf else max(-128, min(127, round(r))))
    return np.array(out, dtype=np.int8)


def test_int8_table_is_exact(rng):
    scales = [(a, b) for a, b in zip(random_scales(rng, 60), random_scales(rng, 60))]
    scales += [(1e-30, 1e-30), (1e30, 1.0), (1.0, 1e30), (0.0472, 0.0003), (1e-3, 10.0)]
    for s_in, s_out in scales:
        np.testing.assert_array_equal(
            ref.silu_int8_table(s_in, s_out),
            _table_by_hand(s_in, s_out),
            err_msg=f"scales {s_in}, {s_out}",
        )
    t = trtcal.silu_int8_table(0.05, 0.05)
    assert t[128] == 0 and t.dtype == np.int8 and t.size == 256


def test_int8_to_float_table(rng):
    for s_in in random_scales(rng, 10):
        v = np.float32(np.arange(-128, 128)).astype(np.float32) * np.float32(s_in)
        want32 = ref.silu(v).astype(np.float32)
        for dtype in FLOATS:
            np.testing.assert_array_equal(
                ref.silu_int8_to_float_table(s_in, dtype), want32.astype(np_dtype(dtype))
            )


def test_host_paths(rng):
    for dtype in FLOATS:
        x = heavy_tailed(rng, 1001, dtype)
        y = trtcal.silu(x)
        assert y.dtype == x.dtype and y.shape == x.shape
        assert_silu_close(y, x, dtype)
        out = np.empty_like(x)
        assert trtcal.silu(x, out) is out
    q = rng.integers(-128, 128, size=(7, 13)).astype(np.int8)
    s_in, s_out = 0.05, 0.04
    np.testing.assert_array_equal(
        trtcal.silu_int8(q, s_in, s_out), ref.silu_int8_table(s_in, s_out)[q.astype(int) + 128]
    )
    for dtype in FLOATS:
        y = trtcal.silu_int8_to_float(q, s_in, dtype)
        assert y.dtype == np_dtype(dtype)
        np.testing.assert_array_equal(
            y, ref.silu_int8_to_float_table(s_in, dtype)[q.astype(int) + 128]
        )
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 100.0, -100.0, 1.0], np.float32)
    np.testing.assert_array_equal(trtcal.silu_float_to_int8(x, 0.01), [0, 127, 0, 0, 127, 0, 73])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 1e-50, 1e39])
def test_bad_scales(bad):
    q = np.zeros(4, np.int8)
    with pytest.raises(ValueError, match="scale_in"):
        trtcal.silu_int8(q, bad, 0.1)
    with pytest.raises(ValueError, match="scale_out"):
        trtcal.silu_int8(q, 0.1, bad)
    with pytest.raises(ValueError, match="scale_out"):
        trtcal.silu_float_to_int8(np.zeros(3, np.float32), bad)
    with pytest.raises(ValueError, match="scale_in"):
        trtcal.silu_int8_table(bad, 0.1)


def test_wrong_dtypes_and_outputs():
    with pytest.raises(TypeError, match="int8"):
        trtcal.silu(np.zeros(3, np.int8))
    with pytest.raises(TypeError, match="float32"):
        trtcal.silu_int8(np.zeros(3, np.float32), 0.1, 0.1)
    with pytest.raises(TypeError, match="scale_in"):
        trtcal.silu_int8(np.zeros(3, np.int8), "x", 0.1)
    with pytest.raises(ValueError, match="dtype"):
        trtcal.silu_int8_to_float(np.zeros(3, np.int8), 0.1, "int8")
    with pytest.raises(ValueError, match="shape"):
        trtcal.silu(np.zeros(3, np.float32), np.zeros(4, np.float32))


@pytest.mark.skipif(
    extension() is None, reason="needs trtcal's compiled extension (built with nvcc)"
)
def test_cpp_tables_match_reference(rng):
    """The tables the kernels use are built in C++: bit-identical to NumPy's (no GPU needed)."""
    ext = extension()
    scales = list(zip(random_scales(rng, 200), random_scales(rng, 200)))
    scales += [(1e-30, 1e-30), (1e30, 1.0), (1.0, 1e30), (3.4e38, 1.0)]
    for s_in, s_out in scales:
        np.testing.assert_array_equal(
            ext.silu_int8_table(s_in, s_out),
            ref.silu_int8_table(s_in, s_out),
            err_msg=f"scales {s_in}, {s_out}",
        )
        for code, dtype in enumerate(FLOATS):
            want = ref.silu_int8_to_float_table(s_in, dtype)
            np.testing.assert_array_equal(
                ext.silu_int8_to_float_table(s_in, code),
                want.view(np.uint32 if dtype == "float32" else np.uint16),
            )
    with pytest.raises(ValueError, match="scale_in"):
        ext.silu_int8_table(0.0, 1.0)


# ---- device (GPU) -------------------------------------------------------------------


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch with CUDA for device arrays")
    return torch


def to_dev(torch, a, pad=0, offset=0):
    """A device copy of ``a`` placed ``offset`` elements into a larger buffer (misaligned views)."""
    a = np.ascontiguousarray(a)
    flat = a.reshape(-1)
    if a.dtype.name == "bfloat16":
        t = torch.from_numpy(flat.view(np.int16).copy()).view(torch.bfloat16)
    else:
        t = torch.from_numpy(flat.copy())
    buf = torch.empty(flat.size + pad, dtype=t.dtype, device="cuda")
    view = buf[offset : offset + flat.size]
    view.copy_(t.cuda())
    return view.view(a.shape)


def to_host(torch, t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np_dtype("bfloat16"))
    return t.numpy()


def empty_dev(torch, shape, dtype, pad=0, offset=0):
    td = getattr(torch, dtype)
    n = int(np.prod(shape))
    return torch.empty(n + pad, dtype=td, device="cuda")[offset : offset + n].view(shape)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    "shape", [(0,), (1,), (7,), (31,), (3, 5, 7), (65537,), (1000003,), (2, 64, 81, 81)]
)
def test_silu_device(torch, rng, dtype, shape):
    n = int(np.prod(shape))
    x = heavy_tailed(rng, n, dtype).reshape(shape)
    y = trtcal.silu(to_dev(torch, x))
    torch.cuda.synchronize()
    assert y.shape == shape
    assert_silu_close(to_host(torch, y), x, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_silu_every_16bit_input(torch, dtype):
    x = all_16bit(dtype)
    y = trtcal.silu(to_dev(torch, x))
    torch.cuda.synchronize()
    assert_silu_close(to_host(torch, y), x, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("offsets", [(1, 1), (1, 3), (3, 0), (0, 5), (7, 7)])
def test_silu_misaligned(torch, rng, dtype, offsets):
    n = 4099 + int(rng.integers(0, 64))
    x = heavy_tailed(rng, n, dtype)
    xd = to_dev(torch, x, pad=16, offset=offsets[0])
    out = empty_dev(torch, (n,), dtype, pad=16, offset=offsets[1])
    assert trtcal.silu(xd, out) is out
    torch.cuda.synchronize()
    assert_silu_close(to_host(torch, out), x, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
def test_silu_in_place_layouts_and_streams(torch, rng, dtype):
    x = heavy_tailed(rng, 37 * 53, dtype).reshape(37, 53)
    xd = to_dev(torch, x)
    assert trtcal.silu(xd, xd) is xd  # in place
    torch.cuda.synchronize()
    assert_silu_close(to_host(torch, xd), x, dtype)
    # a transposed (dense, permuted) input: the output is allocated with the same layout
    xt = to_dev(torch, x).t()
    yt = trtcal.silu(xt)
    assert yt.stride() == xt.stride()
    torch.cuda.synchronize()
    assert_silu_close(to_host(torch, yt), x.T, dtype)
    with pytest.raises(ValueError, match="layout"):
        trtcal.silu(xt, empty_dev(torch, xt.shape, dtype))
    with pytest.raises(ValueError, match="contiguous"):
        trtcal.silu(to_dev(torch, x)[:, ::2])
    # an explicit side stream
    side = torch.cuda.Stream()
    xd = to_dev(torch, x)
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        y = trtcal.silu(xd)  # the current stream is picked up
    y2 = trtcal.silu(xd, stream=side)
    side.synchronize()
    assert_silu_close(to_host(torch, y), x, dtype)
    assert_silu_close(to_host(torch, y2), x, dtype)


@pytest.mark.gpu
def test_silu_int8_every_code_bit_exact(torch, rng):
    codes = np.arange(-128, 128, dtype=np.int8)
    for s_in, s_out in zip(random_scales(rng, 8), random_scales(rng, 8)):
        for offsets in [(0, 0), (1, 3), (5, 2)]:
            q = np.tile(codes, 7)[: 256 * 7 - offsets[0]]
            out = empty_dev(torch, q.shape, "int8", pad=16, offset=offsets[1])
            y = trtcal.silu_int8(to_dev(torch, q, pad=16, offset=offsets[0]), s_in, s_out, out)
            torch.cuda.synchronize()
            np.testing.assert_array_equal(
                to_host(torch, y),
                ref.silu_int8(q, s_in, s_out),
                err_msg=f"scales {s_in}, {s_out}, offsets {offsets}",
            )


@pytest.mark.gpu
@pytest.mark.parametrize("n", [1, 15, 17, 4097, 1000003])
def test_silu_int8_sizes(torch, rng, n):
    q = rng.integers(-128, 128, size=n).astype(np.int8)
    s_in, s_out = random_scales(rng, 2)
    y = trtcal.silu_int8(to_dev(torch, q, pad=16, offset=int(rng.integers(0, 16))), s_in, s_out)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(to_host(torch, y), ref.silu_int8(q, s_in, s_out))
    qd = to_dev(torch, q)
    trtcal.silu_int8(qd, s_in, s_out, qd)  # in place
    torch.cuda.synchronize()
    np.testing.assert_array_equal(to_host(torch, qd), ref.silu_int8(q, s_in, s_out))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("offsets", [(0, 0), (1, 1), (3, 2)])
def test_silu_int8_to_float_bit_exact(torch, rng, dtype, offsets):
    q = np.concatenate([np.arange(-128, 128), rng.integers(-128, 128, size=100003)]).astype(np.int8)
    s_in = random_scales(rng, 1)[0]
    out = empty_dev(torch, q.shape, dtype, pad=16, offset=offsets[1])
    y = trtcal.silu_int8_to_float(to_dev(torch, q, pad=16, offset=offsets[0]), s_in, out=out)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(to_host(torch, y), ref.silu_int8_to_float(q, s_in, dtype))
    y = trtcal.silu_int8_to_float(to_dev(torch, q[:1001]), s_in, dtype)
    assert y.dtype == getattr(torch, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("offsets", [(0, 0), (1, 3)])
def test_silu_float_to_int8(torch, rng, dtype, offsets):
    n = 300007
    x = heavy_tailed(rng, n, dtype)
    s_out = random_scales(rng, 1)[0]
    out = empty_dev(torch, (n,), "int8", pad=16, offset=offsets[1])
    y = trtcal.silu_float_to_int8(to_dev(torch, x, pad=16, offset=offsets[0]), s_out, out)
    torch.cuda.synchronize()
    got = to_host(torch, y).astype(np.int32)
    want = ref.silu_float_to_int8(x, s_out).astype(np.int32)
    diff = np.flatnonzero(got != want)
    if diff.size:
        # only float32 near-ties may round to the neighbouring code
        t = ref.silu(x.astype(np.float64)[diff]) / np.float64(np.float32(s_out))
        assert np.all(np.abs(got[diff] - want[diff]) == 1)
        assert np.all(np.abs(np.abs(t - np.floor(t)) - 0.5) < 1e-4 * np.maximum(1, np.abs(t)))


@pytest.mark.gpu
def test_device_argument_errors(torch):
    xd = to_dev(torch, np.zeros(8, np.float32))
    with pytest.raises(TypeError):
        trtcal.silu(xd, empty_dev(torch, (8,), "float16"))
    with pytest.raises(ValueError, match="shape"):
        trtcal.silu(xd, empty_dev(torch, (9,), "float32"))
    with pytest.raises(TypeError, match="device"):
        trtcal.silu(xd, np.zeros(8, np.float32))


# -- FP8 (E4M3FN) table SiLU ----------------------------------------------------------------


def _fp8_brute(scale_in, scale_out):
    """Every E4M3 code through ml_dtypes: dequantize (one float32 product), SiLU in float64,
    divide, round to E4M3 (ml_dtypes converts without saturation: +-448 past it)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    f8 = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)
    v = f8.astype(np.float32) * np.float32(scale_in)
    s = ref.silu(v) / np.float64(np.float32(scale_out))
    sat = np.abs(s) >= 464
    out = s.astype(ml_dtypes.float8_e4m3fn).view(np.uint8).copy()
    out[sat] = np.where(s[sat] > 0, 0x7E, 0xFE)
    out[np.isnan(f8.astype(np.float32))] = 0x7F
    return out


def test_silu_fp8_table_matches_ml_dtypes(rng):
    for _ in range(40):
        si, so = 10 ** rng.uniform(-4, 1), 10 ** rng.uniform(-4, 1)
        np.testing.assert_array_equal(ref.silu_fp8_table(si, so), _fp8_brute(si, so))
    t = ref.silu_fp8_table(0.01, 0.01)
    assert t[0x00] == 0x00 and t[0x80] == 0x80 and t[0x7F] == 0x7F and t[0xFF] == 0x7F  # 0, -0, NaN


def test_silu_fp8_numpy_api(rng):
    from trtcal.core.silu import silu_fp8, silu_fp8_table

    q = rng.integers(0, 256, (3, 17), dtype=np.uint8)
    y = silu_fp8(q, 0.02, 0.03)
    np.testing.assert_array_equal(y.view(np.uint8), silu_fp8_table(0.02, 0.03)[q])
    with pytest.raises(ValueError, match="scale_in"):
        silu_fp8(q, 0.0, 0.03)


@pytest.mark.gpu
def test_silu_fp8_gpu_equals_reference(rng, torch):
    from trtcal.core.silu import silu_fp8

    ext = extension()
    for _ in range(5):
        si, so = (
            float(np.float32(10 ** rng.uniform(-3, 0))),
            float(np.float32(10 ** rng.uniform(-3, 0))),
        )
        np.testing.assert_array_equal(
            np.asarray(ext.silu_fp8_table(si, so)), ref.silu_fp8_table(si, so)
        )
        codes = np.concatenate(
            [np.arange(256, dtype=np.uint8), rng.integers(0, 256, 100_003, dtype=np.uint8)]
        )
        x = torch.from_numpy(codes.view(np.int8).copy()).cuda()
        y = silu_fp8(x, si, so)
        torch.cuda.synchronize()
        np.testing.assert_array_equal(
            y.cpu().numpy().view(np.uint8), ref.silu_fp8_table(si, so)[codes]
        )
