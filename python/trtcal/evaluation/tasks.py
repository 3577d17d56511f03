"""What a model is for, and how to tell whether its quantized version still does it.

A :class:`TaskSpec` says what a model's outputs hold, as :class:`Head` slices of them: box
coordinates, class scores, objectness, classifier logits or probabilities, a segmentation map,
or plain values. It is detected from the outputs of the FP32 model on the first evaluation
batch (:func:`infer_task`) for the common layouts, or declared (``task=`` and
``output_slices=``, the CLI's ``--task`` and ``--output-slices``, syntax in
:func:`parse_output_slices`):

* ``[N, C]`` (C >= 2) and ``[N, T, C]`` whose rows are probabilities (sum 1): a classifier
  (per position for sequences), class axis last;
* ``[N, 4+C, A]`` with A > 4+C (YOLOv8 style: boxes cx, cy, w, h in pixels, then C class scores,
  anchors last);
* ``[N, A, 5+C]`` with A > 5+C (YOLOv5 style: boxes, objectness, C class scores);
* ``[N, 1, H, W]`` with values in [0, 1]: a probability map (segmentation, mask at 0.5);
* anything else: generic values.

:class:`TaskStats` streams over batches (``update(ref, test)``, exact ``merge``, a JSON
``state``) and measures, per output and per head, SQNR and cosine (float64 sums), top-1 and
top-5 agreement for classifier heads, **detections kept** for detectors and **mask IoU** for
segmentation. Detection agreement: each image's reference detections (class = arg-max score,
score = max class score, times objectness when there is one, kept at ``score_threshold``)
after class-wise greedy NMS (IoU 0.5), and the same for the quantized model; every reference
detection, highest score first, is matched greedily to the unmatched quantized detection of the
same class with the highest IoU, and is kept when that IoU exceeds ``iou_threshold`` (0.5).
Mask agreement: the IoU of the thresholded maps, summed over the whole stream.

Ranking (:attr:`TaskStats.key`): the task metric of the **worst** output or head first
(detections kept, top-1 agreement or mask IoU; for generic outputs the SQNR), then the worst
head's SQNR, then the worst cosine: never a sum in which one head drowns the others. Choosing
(:func:`better`, :func:`best_of`: auto and analyze) lets 1 dB of the worst head's SQNR outweigh
a difference of one unit (one sample, one detection) of the task metric, since a held-out set
of 16 samples can hardly tell those apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .metrics import ErrorStats

__all__ = [
    "Head",
    "TaskSpec",
    "TaskStats",
    "TASKS",
    "KINDS",
    "parse_output_slices",
    "infer_task",
    "resolve_task",
    "detections",
    "match_detections",
    "box_iou",
    "nms",
    "better",
    "best_of",
    "ranked",
]

TASKS = ("auto", "detect", "classify", "segment", "generic")
KINDS = ("boxes", "scores", "objectness", "logits", "probs", "mask", "values")
METRIC_NAMES = {
    "detect": "detections kept",
    "classify": "top-1 agreement",
    "segment": "mask IoU",
    "generic": "SQNR dB",
}
DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_IOU = 0.5
DEFAULT_MASK_THRESHOLD = 0.5
_MAX_CANDIDATES = 1000  # per image, before NMS (highest scores)


@dataclass(frozen=True)
class Head:
    """A slice ``[start, stop)`` of model output ``output`` along ``axis`` holding one kind of
    value (``stop`` None: to the end; ``axis`` None: the whole output)."""

    output: str
    kind: str
    axis: Optional[int] = None
    start: int = 0
    stop: Optional[int] = None
    threshold: Optional[float] = None  # masks: the probability (or logit) threshold
    sigmoid: bool = False  # scores/objectness: logits (a sigmoid gives the scores)

    @property
    def name(self) -> str:
        if self.axis is None:
            return f"{self.output}:{self.kind}"
        stop = "" if self.stop is None else str(self.stop)
        return f"{self.output}[{self.axis}:{self.start}-{stop}]:{self.kind}"

    def take(self, a: np.ndarray) -> np.ndarray:
        if self.axis is None:
            return a
        if not -a.ndim <= self.axis < a.ndim:
            raise ValueError(f"trtcal: head {self.name}: output '{self.output}' has {a.ndim} axes")
        n = a.shape[self.axis]
        stop = n if self.stop is None else self.stop
        if not 0 <= self.start < stop <= n:
            raise ValueError(
                f"trtcal: head {self.name}: slice {self.start}-{stop} does not fit "
                f"axis {self.axis} "
                f"of output '{self.output}' (size {n})"
            )
        idx = [slice(None)] * a.ndim
        idx[self.axis] = slice(self.start, stop)
        return a[tuple(idx)]

    def rows(self, a: np.ndarray) -> np.ndarray:
        """The head as [N, anchors, values]: its axis moved last (boxes, scores of detectors)."""
        h = self.take(a)
        axis = -1 if self.axis is None else self.axis
        h = np.moveaxis(h, axis, -1)
        return h.reshape(h.shape[0], -1, h.shape[-1])


@dataclass
class TaskSpec:
    """The task and the heads of a model's outputs; ``how``: detected or declared."""

    task: str
    heads: List[Head]
    how: str = "declared"
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_IOU

    @property
    def metric(self) -> str:
        return METRIC_NAMES[self.task]

    def describe(self) -> str:
        return f"{self.task} ({self.how}): " + ", ".join(h.name for h in self.heads)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "task": self.task,
            "how": self.how,
            "metric": self.metric,
            "heads": [h.name for h in self.heads],
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
        }


def parse_output_slices(text: Optional[str]) -> List[Head]:
    """Parses ``--output-slices``.

    Syntax: ``OUTPUT:AXIS:START-STOP=KIND[@THRESHOLD],START-STOP=KIND,...`` for slices of one
    output along one axis, or ``OUTPUT=KIND[@THRESHOLD]`` for a whole output; several outputs
    separated by ``;``. ``STOP`` may be empty (to the end). Kinds: boxes, scores, objectness,
    logits, probs, mask, values. Examples: ``output0:1:0-4=boxes,4-=scores`` (YOLOv8),
    ``output:2:0-4=boxes,4-5=objectness,5-=scores`` (YOLOv5), ``sigmoid_0.tmp_0=mask@0.3``.
    """
    heads: List[Head] = []
    if not text:
        return heads
    for part in (p.strip() for p in str(text).split(";")):
        if not part:
            continue
        name, sep, rest = part.partition(":")
        if "=" in name and not sep:  # OUTPUT=KIND
            name, _, kind = part.rpartition("=")
            k, thr = _kind(kind, part)
            heads.append(Head(name.strip(), k, None, threshold=thr))
            continue
        axis_text, sep2, slices = rest.partition(":")
        if not sep or not sep2 or not name:
            raise ValueError(
                f"trtcal: --output-slices: cannot read {part!r}; "
                "expected OUTPUT:AXIS:START-STOP=KIND,... "
                "or OUTPUT=KIND (e.g. output0:1:0-4=boxes,4-=scores)"
            )
        try:
            axis = int(axis_text)
        except ValueError:
            raise ValueError(
                f"trtcal: --output-slices: axis {axis_text!r} of {part!r} is not an integer"
            ) from None
        for item in slices.split(","):
            rng, eq, kind = item.partition("=")
            lo, dash, hi = rng.partition("-")
            try:
                start, stop = int(lo), (int(hi) if hi.strip() else None)
            except ValueError:
                start = stop = -1
            if not eq or not dash or start < 0 or (stop is not None and stop <= start):
                raise ValueError(
                    f"trtcal: --output-slices: cannot read slice {item!r} of {part!r}; expected "
                    "START-STOP=KIND with 0 <= START < STOP (STOP may be empty)"
                )
            k, thr = _kind(kind, part)
            heads.append(Head(name.strip(), k, axis, start, stop, thr))
    return heads


def _kind(text: str, part: str) -> Tuple[str, Optional[float]]:
    kind, at, thr = text.strip().partition("@")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(
            f"trtcal: --output-slices: unknown kind {kind!r} in {part!r}; kinds: {', '.join(KINDS)}"
        )
    if not at:
        return kind, None
    try:
        return kind, float(thr)
    except ValueError:
        raise ValueError(
            f"trtcal: --output-slices: threshold {thr!r} in {part!r} is not a number"
        ) from None


def _is_prob(a: np.ndarray) -> bool:
    return a.size > 0 and float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def _output_heads(name: str, a: np.ndarray) -> Tuple[str, List[Head], str]:
    """(task, heads, layout) of one output, from its reference values (first batch)."""
    a = np.asarray(a)
    if a.dtype.kind != "f" or a.ndim < 2:
        return "generic", [Head(name, "values")], "values"
    if a.ndim == 2 and a.shape[1] >= 2:
        return (
            "classify",
            [Head(name, "probs" if _softmax_rows(a) else "logits", 1)],
            "[N, C] classifier",
        )
    if a.ndim == 3:
        n, d1, d2 = a.shape
        if d2 >= 2 and _softmax_rows(a):
            return "classify", [Head(name, "probs", 2)], "[N, T, C] per-position classifier"
        if 5 <= d1 < d2 and _is_prob(a[:, 4:]) and float(np.abs(a[:, :4]).max()) > 1.5:
            return (
                "detect",
                [Head(name, "boxes", 1, 0, 4), Head(name, "scores", 1, 4, None)],
                "[N, 4+C, A] (YOLOv8 style)",
            )
        if 6 <= d2 < d1 and _is_prob(a[:, :, 4:]) and float(np.abs(a[:, :, :4]).max()) > 1.5:
            return (
                "detect",
                [
                    Head(name, "boxes", 2, 0, 4),
                    Head(name, "objectness", 2, 4, 5),
                    Head(name, "scores", 2, 5, None),
                ],
                "[N, A, 5+C] (YOLOv5 style)",
            )
    if a.ndim == 4 and a.shape[1] == 1 and _is_prob(a):
        return (
            "segment",
            [Head(name, "mask", None, threshold=DEFAULT_MASK_THRESHOLD)],
            "[N, 1, H, W] probability map",
        )
    return "generic", [Head(name, "values")], "values"


def _softmax_rows(a: np.ndarray) -> bool:
    if not _is_prob(a):
        return False
    s = a.astype(np.float64).sum(axis=-1)
    return bool(np.allclose(s, 1.0, atol=1e-3))


_TASK_ORDER = ("detect", "segment", "classify", "generic")


def infer_task(reference: Mapping[str, np.ndarray]) -> TaskSpec:
    """The task and heads detected from the FP32 outputs of one batch ({output: array})."""
    heads: List[Head] = []
    tasks, layouts = [], []
    for name, a in reference.items():
        t, hs, layout = _output_heads(name, a)
        tasks.append(t)
        heads.extend(hs)
        layouts.append(f"{name}: {layout}")
    task = next(t for t in _TASK_ORDER if t in tasks) if tasks else "generic"
    return TaskSpec(task, heads, how="detected from " + "; ".join(layouts))


def resolve_task(
    reference: Mapping[str, np.ndarray],
    task: Any = "auto",
    output_slices: Any = None,
    score_threshold: Optional[float] = None,
) -> TaskSpec:
    """The TaskSpec for ``task`` ('auto', 'detect', 'classify', 'segment', 'generic', or a
    TaskSpec) and declared ``output_slices`` (text or Heads), checked against the reference
    outputs of one batch; outputs that no declared head covers are detected."""
    if isinstance(task, TaskSpec):
        spec = task
    else:
        task = (task or "auto").lower()
        if task not in TASKS:
            raise ValueError(
                f"trtcal: task (--task) must be one of {', '.join(TASKS)}, got {task!r}"
            )
        declared = (
            parse_output_slices(output_slices)
            if isinstance(output_slices, (str, type(None)))
            else list(output_slices)
        )
        for h in declared:
            if h.output not in reference:
                raise ValueError(
                    f"trtcal: --output-slices names output {h.output!r}, "
                    "which the model does not have "
                    f"(outputs: {', '.join(reference)})"
                )
        rest = {k: v for k, v in reference.items() if k not in {h.output for h in declared}}
        found = infer_task(rest)
        heads = declared + found.heads
        if task == "auto":
            kinds = {h.kind for h in declared}
            t = (
                "detect"
                if "boxes" in kinds
                else "segment"
                if "mask" in kinds
                else "classify"
                if kinds & {"logits", "probs"}
                else found.task
                if rest
                else "generic"
            )
            t = found.task if declared and t == "generic" and rest else t
            how = ("declared" + ("; " + found.how if rest else "")) if declared else found.how
        else:
            t, how = (
                task,
                "declared" + (" (heads: output slices)" if declared else "; heads " + found.how),
            )
            heads = _coerce(t, heads, reference)
        spec = TaskSpec(t, heads, how=how)
    if score_threshold is not None:
        spec = replace(spec, score_threshold=float(score_threshold))
    fitted: List[Head] = []
    for h in spec.heads:
        v = h.take(np.asarray(reference[h.output]))  # every slice fits
        if h.kind in ("scores", "objectness") and not _is_prob(v):
            h = replace(h, sigmoid=True)  # logits: decided once, from the reference
        fitted.append(h)
    spec = replace(spec, heads=fitted)
    if spec.task == "detect" and not any(h.kind == "boxes" for h in spec.heads):
        raise ValueError(
            "trtcal: task 'detect' needs a boxes head and a scores head: "
            "the output layout is not one "
            "trtcal recognises ([N, 4+C, A] or [N, A, 5+C]); declare them with --output-slices, "
            "e.g. output0:1:0-4=boxes,4-=scores"
        )
    return spec


def _coerce(task: str, heads: List[Head], reference: Mapping[str, np.ndarray]) -> List[Head]:
    """Declared task, detected heads: make whole-output heads of the declared kind."""
    out = []
    for h in heads:
        if h.axis is None and h.kind == "values":
            a = np.asarray(reference[h.output])
            if task == "classify" and a.ndim >= 2:
                h = Head(h.output, "logits", a.ndim - 1)
            elif task == "segment":
                h = Head(
                    h.output, "mask", None, threshold=DEFAULT_MASK_THRESHOLD if _is_prob(a) else 0.0
                )
        out.append(h)
    return out


# ----------------------------------------------------------------------------- detection


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of boxes given as x1, y1, x2, y2 (float64)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = DEFAULT_IOU
) -> np.ndarray:
    """Indices kept by class-wise greedy non-maximum suppression, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep: List[int] = []
    suppressed = np.zeros(len(order), bool)
    ious = box_iou(boxes[order], boxes[order])
    same = classes[order][:, None] == classes[order][None, :]
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        suppressed |= (ious[i] > iou) & same[i]
    return np.asarray(keep, dtype=np.int64)


def _xyxy(b: np.ndarray) -> np.ndarray:
    b = b.astype(np.float64)
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], axis=-1)


def detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    objectness: Optional[np.ndarray] = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou: float = DEFAULT_IOU,
    sigmoid: Tuple[bool, bool] = (False, False),
) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: (boxes x1y1x2y2, scores, classes) after the score threshold and class-wise NMS.

    ``boxes`` [N, A, 4] as cx, cy, w, h; ``scores`` [N, A, C]; ``objectness`` [N, A, 1]
    multiplies them (YOLOv5); ``sigmoid``: (scores, objectness) are logits."""
    s = scores.astype(np.float64)
    if sigmoid[0]:
        s = 1.0 / (1.0 + np.exp(-s))
    if objectness is not None:
        o = objectness.astype(np.float64)
        if sigmoid[1]:
            o = 1.0 / (1.0 + np.exp(-o))
        s = s * o
    cls = np.argmax(s, axis=-1)
    best = np.take_along_axis(s, cls[..., None], axis=-1)[..., 0]
    out = []
    for i in range(s.shape[0]):
        idx = np.nonzero(best[i] >= score_threshold)[0]
        if idx.size > _MAX_CANDIDATES:
            idx = idx[np.argsort(-best[i, idx], kind="stable")[:_MAX_CANDIDATES]]
        b = _xyxy(boxes[i, idx])
        k = nms(b, best[i, idx], cls[i, idx], iou)
        out.append((b[k], best[i, idx][k], cls[i, idx][k]))
    return out


def match_detections(
    ref: Tuple[np.ndarray, np.ndarray, np.ndarray],
    test: Tuple[np.ndarray, np.ndarray, np.ndarray],
    iou_threshold: float = DEFAULT_IOU,
) -> int:
    """How many reference detections (boxes, scores, classes) have a quantized detection of the
    same class with IoU > ``iou_threshold``: greedy, reference detections by descending score,
    each takes the unmatched quantized detection of its class with the highest IoU."""
    rb, rs, rc = ref
    tb, _, tc = test
    if len(rb) == 0 or len(tb) == 0:
        return 0
    ious = box_iou(rb, tb)
    ious[rc[:, None] != tc[None, :]] = -1.0
    used = np.zeros(len(tb), bool)
    kept = 0
    for i in np.argsort(-rs, kind="stable"):
        row = np.where(used, -1.0, ious[i])
        j = int(np.argmax(row))
        if row[j] > iou_threshold:
            used[j] = True
            kept += 1
    return kept


# ----------------------------------------------------------------------------- streaming stats


@dataclass
class _Det:
    reference: int = 0
    kept: int = 0
    quantized: int = 0

    @property
    def fraction(self) -> float:
        return self.kept / self.reference if self.reference else 1.0


@dataclass
class _Mask:
    inter: int = 0
    union: int = 0
    agree: int = 0
    pixels: int = 0

    @property
    def iou(self) -> float:
        return self.inter / self.union if self.union else 1.0


@dataclass
class TaskStats:
    """Streaming task metrics of one quantized model against FP32 (see the module docstring).

    ``outputs``: ErrorStats per model output; ``heads``: ErrorStats per head (classifier heads
    count top-1/top-5); ``det``: detections per detector output; ``mask``: mask counts per
    mask head.
    """

    spec: TaskSpec
    outputs: Dict[str, ErrorStats] = field(default_factory=dict)
    heads: Dict[str, ErrorStats] = field(default_factory=dict)
    det: Dict[str, _Det] = field(default_factory=dict)
    mask: Dict[str, _Mask] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for h in self.spec.heads:
            self.outputs.setdefault(h.output, ErrorStats(h.output))
            axis = h.axis if h.kind in ("logits", "probs") else None
            self.heads.setdefault(h.name, ErrorStats(h.name, classes_axis=axis))
            if (
                axis is not None and h.start == 0 and h.stop is None
            ):  # the whole output is the classifier's
                self.outputs[h.output].classes_axis = axis
            if h.kind == "mask":
                self.mask.setdefault(h.name, _Mask())
        for o in self._det_outputs():
            self.det.setdefault(o, _Det())

    def _det_outputs(self) -> List[str]:
        if self.spec.task != "detect":
            return []
        return list(dict.fromkeys(h.output for h in self.spec.heads if h.kind == "boxes"))

    def _find(self, output: str, kind: str) -> Optional[Head]:
        return next((h for h in self.spec.heads if h.output == output and h.kind == kind), None)

    def update(self, ref: Mapping[str, Any], test: Mapping[str, Any]) -> "TaskStats":
        """Adds one batch: {output: array} of the FP32 and of the quantized model."""
        for o, s in self.outputs.items():
            s.update(ref[o], test[o])
        for h in self.spec.heads:
            r, t = h.take(np.asarray(ref[h.output])), h.take(np.asarray(test[h.output]))
            self.heads[h.name].update(r, t)
            if h.kind == "mask":
                thr = DEFAULT_MASK_THRESHOLD if h.threshold is None else h.threshold
                rm, tm = r > thr, t > thr
                m = self.mask[h.name]
                m.inter += int(np.sum(rm & tm))
                m.union += int(np.sum(rm | tm))
                m.agree += int(np.sum(rm == tm))
                m.pixels += int(rm.size)
        for o in self.det:
            bh, sh, oh = (
                self._find(o, "boxes"),
                self._find(o, "scores"),
                self._find(o, "objectness"),
            )
            if bh is None or sh is None:
                continue
            r, t = np.asarray(ref[o]), np.asarray(test[o])
            kw: Dict[str, Any] = {
                "score_threshold": self.spec.score_threshold,
                "iou": self.spec.iou_threshold,
                "sigmoid": (sh.sigmoid, bool(oh and oh.sigmoid)),
            }
            rd = detections(bh.rows(r), sh.rows(r), oh.rows(r) if oh else None, **kw)
            td = detections(bh.rows(t), sh.rows(t), oh.rows(t) if oh else None, **kw)
            d = self.det[o]
            for a, b in zip(rd, td):
                d.reference += len(a[0])
                d.quantized += len(b[0])
                d.kept += match_detections(a, b, self.spec.iou_threshold)
        return self

    def merge(self, other: "TaskStats") -> "TaskStats":
        """Adds another stream of the same spec (exact)."""
        for k, s in other.outputs.items():
            self.outputs[k].merge(s)
        for k, s in other.heads.items():
            self.heads[k].merge(s)
        for k, d in other.det.items():
            mine = self.det[k]
            mine.reference, mine.kept, mine.quantized = (
                mine.reference + d.reference,
                mine.kept + d.kept,
                mine.quantized + d.quantized,
            )
        for k, m in other.mask.items():
            mine_m = self.mask[k]
            for f in ("inter", "union", "agree", "pixels"):
                setattr(mine_m, f, getattr(mine_m, f) + getattr(m, f))
        return self

    # ---- the numbers
    @property
    def worst_sqnr(self) -> float:
        return min((s.sqnr_db for s in self.heads.values()), default=math.inf)

    @property
    def worst_cosine(self) -> float:
        return min((s.cosine for s in self.heads.values()), default=1.0)

    @property
    def metric(self) -> float:
        """The task metric of the worst output/head: detections kept (fraction), top-1
        agreement, mask IoU, or (generic) the worst head's SQNR in dB."""
        t = self.spec.task
        if t == "detect" and self.det:
            return min(d.fraction for d in self.det.values())
        if t == "classify":
            tops = [s.top1 for s in self.heads.values() if s.top1 is not None]
            if tops:
                return min(tops)
        if t == "segment" and self.mask:
            return min(m.iou for m in self.mask.values())
        return self.worst_sqnr

    @property
    def unit(self) -> float:
        """The task metric's resolution: one classified row, one reference detection, 0.2% of
        mask IoU; 0 for generic outputs."""
        t = self.spec.task
        if t == "detect" and self.det:
            return max(1.0 / d.reference if d.reference else 0.0 for d in self.det.values())
        if t == "classify":
            rows = [s.top1_rows for s in self.heads.values() if s.top1_rows]
            return 1.0 / min(rows) if rows else 0.0
        if t == "segment" and self.mask:
            return MASK_IOU_UNIT
        return 0.0

    @property
    def key(self) -> Tuple[float, float, float]:
        """Ranking key, larger is better: (task metric, worst head SQNR, worst head cosine)."""
        return (self.metric, self.worst_sqnr, self.worst_cosine)

    def head_rows(self) -> List[Dict[str, Any]]:
        """One dict per head (and per detector output: detections), for tables and reports."""
        rows: List[Dict[str, Any]] = []
        for h in self.spec.heads:
            s = self.heads[h.name]
            row: Dict[str, Any] = {
                "head": h.name,
                "output": h.output,
                "kind": h.kind,
                "sqnr_db": s.sqnr_db,
                "cosine": s.cosine,
                "max_abs_error": s.max_abs,
            }
            if s.top1 is not None:
                row["top1_agreement"] = s.top1
                row["top5_agreement"] = s.top5
            if h.name in self.mask:
                m = self.mask[h.name]
                row["mask_iou"] = m.iou
                row["mask_pixel_agreement"] = m.agree / m.pixels if m.pixels else None
            rows.append(row)
        for o, d in self.det.items():
            rows.append(
                {
                    "head": f"{o}:detections",
                    "output": o,
                    "kind": "detections",
                    "detections_reference": d.reference,
                    "detections_kept": d.kept,
                    "detections_quantized": d.quantized,
                    "detections_kept_fraction": d.fraction,
                }
            )
        return rows

    def summary(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "task": self.spec.task,
            "metric_name": self.spec.metric,
            "metric": self.metric,
            "worst_head_sqnr_db": self.worst_sqnr,
            "worst_head_cosine": self.worst_cosine,
        }
        for o, d in self.det.items():
            out.setdefault("detections", {})[o] = {
                "reference": d.reference,
                "kept": d.kept,
                "quantized": d.quantized,
            }
        return out

    def describe_metric(self) -> str:
        """The task metric as text: '37/41 detections kept', 'top-1 100.0%', 'mask IoU 0.912',
        '21.30 dB'."""
        t = self.spec.task
        if t == "detect" and self.det:
            d = min(self.det.values(), key=lambda x: x.fraction)
            return f"{d.kept}/{d.reference} detections kept"
        if t == "classify" and any(s.top1 is not None for s in self.heads.values()):
            return f"top-1 {100 * self.metric:.1f}%"
        if t == "segment" and self.mask:
            return f"mask IoU {self.metric:.4f}"
        return f"{self.metric:.2f} dB"

    def state(self) -> Dict[str, Any]:
        """The raw sums (JSON), for caches; :meth:`from_state` with the same spec restores them."""
        return {
            "outputs": {k: s.state() for k, s in self.outputs.items()},
            "heads": {k: s.state() for k, s in self.heads.items()},
            "det": {k: [d.reference, d.kept, d.quantized] for k, d in self.det.items()},
            "mask": {k: [m.inter, m.union, m.agree, m.pixels] for k, m in self.mask.items()},
        }

    @classmethod
    def from_state(cls, spec: TaskSpec, state: Mapping[str, Any]) -> "TaskStats":
        s = cls(spec)
        for k, v in state.get("outputs", {}).items():
            s.outputs[k] = ErrorStats.from_state(v, k)
        for k, v in state.get("heads", {}).items():
            h = s.heads.get(k)
            s.heads[k] = ErrorStats.from_state(v, k)
            if h is not None:
                s.heads[k].classes_axis = h.classes_axis
        for k, v in state.get("det", {}).items():
            s.det[k] = _Det(*v)
        for k, v in state.get("mask", {}).items():
            s.mask[k] = _Mask(*v)
        return s


MASK_IOU_UNIT = 0.002  # mask IoU differences up to this are ties when choosing


OVERRIDE_DB = 1.0  # worst-head SQNR that outweighs a one-unit difference of the task metric


def better(a: TaskStats, b: TaskStats, margin: float = 0.0, tolerant: bool = True) -> bool:
    """Whether ``a`` should be chosen over ``b``.

    With ``tolerant`` (how auto and analyze choose): a task metric higher by more than one unit
    (:attr:`TaskStats.unit`: one sample's top-1, one detection, 0.2% mask IoU) wins; within one
    unit, on held-out sets of a few dozen samples, the worst head's SQNR may outweigh it: the
    lower metric wins only with at least :data:`OVERRIDE_DB` (1 dB) more SQNR; equal metrics
    are decided by SQNR, which must gain more than ``margin`` dB. For generic outputs (the
    metric is that SQNR) only the margin applies. Without ``tolerant``: the exact lexicographic
    order of :attr:`TaskStats.key` (how compare ranks what it measured)."""
    if a.spec.task == "generic" or (a.metric == a.worst_sqnr and b.metric == b.worst_sqnr):
        return a.worst_sqnr > b.worst_sqnr + margin
    if not tolerant:
        return a.key > b.key
    unit = max(a.unit, b.unit) + 1e-12
    if a.metric > b.metric + unit:
        return True
    if a.metric < b.metric - unit:
        return False
    if a.metric > b.metric:
        return not b.worst_sqnr >= a.worst_sqnr + OVERRIDE_DB
    if a.metric < b.metric:
        return a.worst_sqnr >= b.worst_sqnr + max(OVERRIDE_DB, margin)
    return a.worst_sqnr > b.worst_sqnr + margin


def best_of(stats: Mapping[str, TaskStats]) -> str:
    """The label to choose: from the best by :attr:`TaskStats.key`, each other label (in key
    order) that is :func:`better` than the current choice replaces it."""
    order = ranked(stats)
    best = order[0]
    for k in order[1:]:
        if better(stats[k], stats[best]):
            best = k
    return best


def ranked(stats: Mapping[str, TaskStats]) -> List[str]:
    """Labels best first by :attr:`TaskStats.key` (exact: what was measured)."""
    return sorted(stats, key=lambda k: tuple(-v for v in stats[k].key))


def heads_text(stats: TaskStats) -> str:
    """'boxes 31.2 dB, scores 11.2 dB, 37/41 detections kept' (one line, per head)."""
    parts = []
    for h in stats.spec.heads:
        s = stats.heads[h.name]
        label = h.kind if sum(x.kind == h.kind for x in stats.spec.heads) == 1 else h.name
        txt = f"{label} {_db(s.sqnr_db)} dB"
        if s.top1 is not None:
            txt += f", top-1 {100 * s.top1:.1f}%"
        if h.name in stats.mask:
            txt += f", mask IoU {stats.mask[h.name].iou:.4f}"
        parts.append(txt)
    for o, d in stats.det.items():
        parts.append(
            f"{d.kept}/{d.reference} detections kept" + (f" ({o})" if len(stats.det) > 1 else "")
        )
    return "; ".join(parts)


def _db(v: float) -> str:
    return "inf" if math.isinf(v) and v > 0 else f"{v:.2f}"


def spec_for(
    reference_batch: Mapping[str, np.ndarray],
    task: Any = "auto",
    output_slices: Any = None,
    score_threshold: Optional[float] = None,
) -> TaskSpec:
    """Alias of :func:`resolve_task` (the name the evaluation code reads best with)."""
    return resolve_task(reference_batch, task, output_slices, score_threshold)


def check_task_arguments(task: Any, output_slices: Any) -> None:
    """Before any pass: the task name and the slice syntax (the outputs are checked later)."""
    if isinstance(task, TaskSpec):
        return
    if (task or "auto").lower() not in TASKS:
        raise ValueError(f"trtcal: task (--task) must be one of {', '.join(TASKS)}, got {task!r}")
    if isinstance(output_slices, (str, type(None))):
        parse_output_slices(output_slices)


def names(spec: TaskSpec) -> Sequence[str]:
    return [h.name for h in spec.heads]
