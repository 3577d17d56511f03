"""trtcal.tasks: layouts, head splitting, detection matching, task metrics (float64 oracles)."""

import math

import numpy as np
import pytest

from trtcal import tasks as tk
from trtcal.evaluation.metrics import ErrorStats, sqnr_db, topk_agreement

# ------------------------------------------------------------ oracles (plain Python)


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _dets(boxes, scores, thr, iou=0.5):
    """One image: boxes [A, 4] cxcywh, scores [A, C] -> [(box xyxy, score, class)] after NMS."""
    cand = []
    for a in range(len(boxes)):
        c = int(np.argmax(scores[a]))
        s = float(scores[a, c])
        if s >= thr:
            cx, cy, w, h = (float(v) for v in boxes[a])
            cand.append(((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), s, c, a))
    cand.sort(key=lambda t: (-t[1], t[3]))
    keep = []
    for d in cand:
        if all(not (k[2] == d[2] and _iou(k[0], d[0]) > iou) for k in keep):
            keep.append(d)
    return keep


def _kept(ref, test, iou=0.5):
    used = [False] * len(test)
    kept = 0
    for r in sorted(ref, key=lambda t: -t[1]):
        best, bj = -1.0, -1
        for j, t in enumerate(test):
            if used[j] or t[2] != r[2]:
                continue
            v = _iou(r[0], t[0])
            if v > best:
                best, bj = v, j
        if bj >= 0 and best > iou:
            used[bj] = True
            kept += 1
    return kept


def _yolo(rng, n, classes, anchors, objects=4):
    """A YOLOv8-style output [n, 4+C, A]: a few confident objects per image among noise."""
    out = np.zeros((n, 4 + classes, anchors), np.float32)
    out[:, 0:2] = rng.uniform(0, 320, (n, 2, anchors))
    out[:, 2:4] = rng.uniform(4, 80, (n, 2, anchors))
    out[:, 4:] = rng.uniform(0, 0.2, (n, classes, anchors))
    for i in range(n):
        for a in rng.choice(anchors, objects, replace=False):
            out[i, 4 + rng.integers(classes), a] = rng.uniform(0.3, 0.99)
    return out


# ------------------------------------------------------------ slices and layouts


def test_output_slices_syntax():
    hs = tk.parse_output_slices("output0:1:0-4=boxes,4-=scores; maps=mask@0.3")
    assert [h.kind for h in hs] == ["boxes", "scores", "mask"]
    assert (hs[0].axis, hs[0].start, hs[0].stop) == (1, 0, 4) and hs[1].stop is None
    assert hs[2].axis is None and hs[2].threshold == 0.3 and hs[2].output == "maps"
    a = np.arange(2 * 22 * 7).reshape(2, 22, 7)
    assert hs[1].take(a).shape == (2, 18, 7) and hs[0].rows(a).shape == (2, 7, 4)
    for bad, what in (
        ("out:1:4-2=boxes", "slice"),
        ("out:x:0-4=boxes", "axis"),
        ("out:1:0-4=wheels", "kind"),
        ("out", "cannot read"),
        ("out=mask@high", "threshold"),
    ):
        with pytest.raises(ValueError, match=what):
            tk.parse_output_slices(bad)
    with pytest.raises(ValueError, match="does not fit"):
        tk.Head("o", "boxes", 1, 0, 30).take(a)


def test_layouts_are_detected(rng):
    v8 = _yolo(rng, 3, 7, 211)
    spec = tk.infer_task({"output0": v8})
    assert spec.task == "detect" and [h.kind for h in spec.heads] == ["boxes", "scores"]
    assert "YOLOv8" in spec.how
    v5 = np.concatenate([v8[:, :4], rng.uniform(0, 1, (3, 1, 211)), v8[:, 4:]], axis=1).transpose(
        0, 2, 1
    )
    spec = tk.infer_task({"out": v5})
    assert spec.task == "detect" and [h.kind for h in spec.heads] == [
        "boxes",
        "objectness",
        "scores",
    ]
    logits = rng.standard_normal((5, 11))
    assert tk.infer_task({"l": logits}).heads[0].kind == "logits"
    e = np.exp(rng.standard_normal((5, 9, 13)))
    spec = tk.infer_task({"p": e / e.sum(-1, keepdims=True)})
    assert spec.task == "classify" and spec.heads[0].axis == 2
    spec = tk.infer_task({"m": rng.uniform(0, 1, (2, 1, 17, 19))})
    assert spec.task == "segment" and spec.heads[0].kind == "mask"
    assert tk.infer_task({"v": rng.standard_normal((2, 3, 5, 5))}).task == "generic"
    # declared: task and slices; a declared detector without boxes is refused
    spec = tk.resolve_task({"o": v8}, "auto", "o:1:0-4=boxes,4-=scores")
    assert spec.task == "detect" and spec.how.startswith("declared")
    with pytest.raises(ValueError, match="boxes head"):
        tk.resolve_task({"v": rng.standard_normal((2, 3, 5, 5))}, "detect")
    with pytest.raises(ValueError, match="does not have"):
        tk.resolve_task({"o": v8}, "auto", "nope=mask")
    with pytest.raises(ValueError, match="task"):
        tk.resolve_task({"o": v8}, "track")


# ------------------------------------------------------------ detection


def test_detections_and_matching_equal_the_plain_oracle(rng):
    ref = _yolo(rng, 5, 6, 97, objects=9)
    test = ref.copy()
    test[:, :4] += rng.normal(0, 3, test[:, :4].shape).astype(np.float32)  # boxes move a little
    test[:, 4:] += rng.normal(0, 0.08, test[:, 4:].shape).astype(np.float32)  # scores too
    np.clip(test[:, 4:], 0, 1, out=test[:, 4:])
    spec = tk.infer_task({"o": ref})
    st = tk.TaskStats(spec).update({"o": ref}, {"o": test})
    n_ref = n_kept = n_test = 0
    for i in range(5):
        r = _dets(ref[i, :4].T, ref[i, 4:].T, 0.25)
        t = _dets(test[i, :4].T, test[i, 4:].T, 0.25)
        n_ref, n_test, n_kept = n_ref + len(r), n_test + len(t), n_kept + _kept(r, t)
    d = st.det["o"]
    assert (d.reference, d.kept, d.quantized) == (n_ref, n_kept, n_test)
    assert 0 < n_kept <= n_ref
    assert st.metric == pytest.approx(n_kept / n_ref)
    # heads split: the boxes' SQNR and the scores' are separate, each the float64 definition
    assert st.heads[spec.heads[0].name].sqnr_db == pytest.approx(
        sqnr_db(ref[:, :4], test[:, :4]), rel=1e-12
    )
    assert st.heads[spec.heads[1].name].sqnr_db == pytest.approx(
        sqnr_db(ref[:, 4:], test[:, 4:]), rel=1e-12
    )


def test_identical_outputs_keep_every_detection(rng):
    ref = _yolo(rng, 3, 4, 61)
    st = tk.TaskStats(tk.infer_task({"o": ref})).update({"o": ref}, {"o": ref.copy()})
    assert st.det["o"].kept == st.det["o"].reference > 0 and st.metric == 1.0


def test_box_iou_and_nms_basics():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [100, 100, 110, 110]], float)
    iou = tk.box_iou(a, a)
    assert iou[0, 1] == pytest.approx(25 / 175) and iou[0, 2] == 0 and np.allclose(np.diag(iou), 1)
    b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]], float)
    keep = tk.nms(b, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]))
    assert list(keep) == [
        0,
        2,
    ]  # the second overlaps the first (same class); the third is another class


# ------------------------------------------------------------ ranking by the worst head


def test_the_worst_head_decides_not_the_whole_output(rng):
    """Boxes in pixels dominate the whole output's SQNR; breaking the scores must still lose."""
    ref = _yolo(rng, 4, 5, 151, objects=6)
    boxes_noisy = ref.copy()
    boxes_noisy[:, :4] *= 1 + rng.normal(0, 0.01, boxes_noisy[:, :4].shape).astype(
        np.float32
    )  # 1% box noise
    scores_broken = ref.copy()
    scores_broken[:, 4:] = np.roll(
        ref[:, 4:], 1, axis=1
    )  # every class score moves to the next class
    spec = tk.infer_task({"o": ref})
    a = tk.TaskStats(spec).update({"o": ref}, {"o": boxes_noisy})
    b = tk.TaskStats(spec).update({"o": ref}, {"o": scores_broken})
    # the whole output prefers the broken scores (their error is tiny next to box pixels) ...
    assert sqnr_db(ref, scores_broken) > sqnr_db(ref, boxes_noisy)
    # ... the task ranking does not
    assert tk.ranked({"boxes_noisy": a, "scores_broken": b}) == ["boxes_noisy", "scores_broken"]
    assert b.worst_sqnr < a.worst_sqnr and b.metric == 0.0 < a.metric


# ------------------------------------------------------------ classifier and masks


def test_classifier_top1_top5(rng):
    ref = rng.standard_normal((41, 17))
    test = ref + rng.normal(0, 0.8, ref.shape)
    st = tk.TaskStats(tk.infer_task({"l": ref})).update({"l": ref}, {"l": test})
    top1 = np.mean(ref.argmax(1) == test.argmax(1))
    top5 = np.mean([ref[i].argmax() in np.argsort(-test[i])[:5] for i in range(41)])
    assert st.metric == top1
    row = st.head_rows()[0]
    assert row["top1_agreement"] == top1 and row["top5_agreement"] == pytest.approx(top5)
    assert topk_agreement(ref, test, 5) == pytest.approx(top5)
    assert topk_agreement(ref, test, 17) == 1.0


def test_mask_iou_streams(rng):
    ref = rng.uniform(0, 1, (7, 1, 13, 11))
    test = np.clip(ref + rng.normal(0, 0.1, ref.shape), 0, 1)
    spec = tk.resolve_task({"m": ref}, "auto", "m=mask@0.3")
    st = tk.TaskStats(spec)
    for a, b in ((0, 2), (2, 3), (3, 7)):
        st.update({"m": ref[a:b]}, {"m": test[a:b]})
    r, t = ref > 0.3, test > 0.3
    assert st.metric == pytest.approx(np.sum(r & t) / np.sum(r | t), rel=1e-12)
    assert st.head_rows()[0]["mask_pixel_agreement"] == pytest.approx(np.mean(r == t))


# ------------------------------------------------------------ streaming, merge, state


def test_stream_merge_and_state_equal_one_batch(rng):
    ref = _yolo(rng, 9, 3, 83, objects=5)
    test = ref + rng.normal(0, 0.02, ref.shape).astype(np.float32) * np.abs(ref)
    spec = tk.infer_task({"o": ref})
    whole = tk.TaskStats(spec).update({"o": ref}, {"o": test})
    a = tk.TaskStats(spec).update({"o": ref[:4]}, {"o": test[:4]})
    b = (
        tk.TaskStats(spec)
        .update({"o": ref[4:5]}, {"o": test[4:5]})
        .update({"o": ref[5:]}, {"o": test[5:]})
    )
    merged = a.merge(b)
    back = tk.TaskStats.from_state(spec, merged.state())
    for s in (merged, back):
        assert s.det["o"] == whole.det["o"]
        assert s.key[0] == whole.key[0]
        assert s.key[1] == pytest.approx(whole.key[1], rel=1e-12) and s.key[2] == pytest.approx(
            whole.key[2], rel=1e-12
        )


def test_errorstats_merge_and_top5(rng):
    ref = rng.standard_normal((23, 9))
    test = ref + rng.laplace(0, 0.5, ref.shape)
    whole = ErrorStats("l", classes_axis=1).update(ref, test)
    part = (
        ErrorStats("l", classes_axis=1)
        .update(ref[:10], test[:10])
        .merge(ErrorStats("l", classes_axis=1).update(ref[10:], test[10:]))
    )
    assert part.sqnr_db == pytest.approx(whole.sqnr_db, rel=1e-12) and part.top1 == whole.top1
    assert (
        part.top5 == pytest.approx(topk_agreement(ref, test, 5))
        and part.worst_cosine == whole.worst_cosine
    )
    assert (
        ErrorStats("l", classes_axis=1).update(ref[:, :4], test[:, :4]).top5 is None
    )  # 5 classes or fewer
    assert math.isinf(ErrorStats("z").update(ref, ref).sqnr_db)


def test_choosing_rule_one_unit_against_one_db():
    from types import SimpleNamespace as NS

    def st(metric, sqnr, unit=0.1, task="detect"):
        return NS(
            spec=NS(task=task), metric=metric, worst_sqnr=sqnr, unit=unit, key=(metric, sqnr, 1.0)
        )

    assert tk.better(st(1.0, 5.0), st(0.8, 20.0))  # more than one unit: the metric decides
    assert tk.better(st(1.0, 7.6), st(0.9, 8.2))  # one detection is not traded for 0.6 dB
    assert not tk.better(st(0.9, 8.2), st(1.0, 7.6))
    assert tk.better(st(0.9, 9.0), st(1.0, 7.6))  # ... but for 1 dB or more it is
    assert tk.better(st(0.9, 8.2, 0.1), st(0.9, 8.0), 0.1) and not tk.better(
        st(0.9, 8.05), st(0.9, 8.0), 0.1
    )
    assert tk.better(st(3.0, 3.0, 0, "generic"), st(2.0, 2.0, 0, "generic"), 0.5)
    assert not tk.better(st(0.9, 9.0), st(1.0, 7.6), tolerant=False)  # compare's exact order
    stats = {"p": st(1.0, 7.6), "m": st(0.9, 8.2), "x": st(0.9, 9.0)}
    assert tk.best_of(stats) == "x" and tk.ranked(stats) == ["p", "x", "m"]
