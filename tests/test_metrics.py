"""Accuracy metrics of quantized tensors (NumPy): definitions, streaming = all at once, edge
cases."""

import math

import numpy as np
import pytest

from trtcal.evaluation.metrics import (
    ErrorStats,
    cosine_similarity,
    max_abs_error,
    sqnr_db,
    top1_agreement,
)


def _noisy(rng, shape, noise=0.05):
    ref = rng.standard_t(3, size=shape)
    return ref, ref + noise * rng.laplace(size=shape)


def test_definitions_in_float64(rng):
    ref, test = _noisy(rng, (7, 13, 5))
    r, t = ref.ravel(), test.ravel()
    assert cosine_similarity(ref, test) == pytest.approx(
        r @ t / np.sqrt((r @ r) * (t @ t)), rel=1e-12
    )
    assert sqnr_db(ref, test) == pytest.approx(
        10 * np.log10((r @ r) / ((r - t) @ (r - t))), rel=1e-12
    )
    assert max_abs_error(ref, test) == np.max(np.abs(r - t))
    # float32 inputs are summed in float64
    assert sqnr_db(ref.astype(np.float32), test.astype(np.float32)) == pytest.approx(
        sqnr_db(
            ref.astype(np.float32).astype(np.float64), test.astype(np.float32).astype(np.float64)
        ),
        rel=1e-12,
    )


def test_edge_cases():
    z = np.zeros((3, 4))
    o = np.ones((3, 4))
    assert cosine_similarity(z, z) == 1.0 and cosine_similarity(z, o) == 0.0
    assert sqnr_db(o, o) == math.inf and sqnr_db(z, o) == -math.inf
    assert cosine_similarity(o, -o) == -1.0
    with pytest.raises(ValueError, match="'act'.*shape"):
        sqnr_db(o, np.ones((4, 3)), name="act")
    bad = o.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="'t'.*quantized holds NaN"):
        cosine_similarity(o, bad, name="t")
    with pytest.raises(ValueError, match="empty"):
        max_abs_error(np.zeros(0), np.zeros(0))


def test_top1(rng):
    ref = rng.standard_normal((29, 11))
    test = ref.copy()
    test[:5] = rng.standard_normal((5, 11))  # some rows change
    expect = np.mean(ref.argmax(1) == test.argmax(1))
    assert top1_agreement(ref, test) == expect
    assert top1_agreement(ref.T, test.T, axis=0) == expect


def test_streaming_equals_concatenated(rng):
    ref, test = _noisy(rng, (37, 3, 5), noise=0.3)
    s = ErrorStats("x", classes_axis=None)
    for a, b in ((0, 8), (8, 9), (9, 37)):  # odd splits, a batch of one
        s.update(ref[a:b], test[a:b])
    assert s.cosine == pytest.approx(cosine_similarity(ref, test), rel=1e-12)
    assert s.sqnr_db == pytest.approx(sqnr_db(ref, test), rel=1e-12)
    assert s.max_abs == max_abs_error(ref, test)
    assert s.samples == 37 and s.values == ref.size
    per_sample = min(cosine_similarity(ref[i], test[i]) for i in range(37))
    assert s.worst_cosine == pytest.approx(per_sample, rel=1e-12)
    assert s.top1 is None
    back = ErrorStats.from_state(s.state(), "x")
    assert back.to_dict() == s.to_dict()


def test_streaming_top1(rng):
    ref, test = _noisy(rng, (41, 9), noise=0.8)
    s = ErrorStats("logits", classes_axis=1)
    s.update(ref[:20], test[:20]).update(ref[20:], test[20:])
    assert s.top1 == top1_agreement(ref, test)
    assert s.to_dict()["top1_agreement"] == s.top1
