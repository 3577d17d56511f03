"""The calibration report, written in well under a second for hundreds of tensors.

What it holds: the run's facts, the quantized model's accuracy against FP32 when evaluation data
were given (per output: SQNR, cosine, top-1 agreement; :func:`accuracy_rows` measures them and
:func:`add_accuracy_rows` takes rows from elsewhere, e.g. per-head task metrics), the thresholds
of every method per tensor with what each saturates, and, per tensor, a small histogram of |x|
(log counts) with each method's threshold marked. The histograms are SVG drawn from NumPy
arrays (no plotting library, no figure per tensor): inline in the HTML page, and one SVG file
with every tensor for Markdown (``<name>_files/histograms.svg``). Markdown or HTML is chosen by
the file extension.
"""

from __future__ import annotations

import html
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..core import _files
from . import measure as evaluation

_COLOURS = {"minmax": "#d62728", "entropy": "#1f77b4", "percentile": "#2ca02c", "mse": "#9467bd"}
_W, _H = 260, 40  # one histogram, in SVG units (pixels)
_CLIP_LEGEND = (
    "(p% clipped): the share of the tensor's values at or beyond the threshold, which saturate to "
    "+-127."
)
# Accuracy columns shown first, in this order, when present; any other key of a row follows.
_ACCURACY_FIRST = (
    "method",
    "output",
    "head",
    "metric",
    "sqnr_db",
    "cosine",
    "top1_agreement",
    "max_abs_error",
    "worst_sample_cosine",
    "samples",
)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        return "-" if not math.isfinite(float(v)) else f"{float(v):.5g}"
    return str(v)


# -- accuracy ---------------------------------------------------------------------------------


def add_accuracy_rows(result: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """The hook for accuracy from elsewhere: appends rows to ``result.accuracy``, which
    :func:`write` shows as a table (one row each, columns = the union of the rows' keys; the
    usual ones first: method, output, head, metric, sqnr_db, cosine, top1_agreement, ...).
    Per-head task metrics (boxes vs class scores, detections kept) go in as rows with a
    ``head`` and their own keys."""
    acc = getattr(result, "accuracy", None)
    if acc is None:
        acc = []
        result.accuracy = acc
    acc.extend(dict(r) for r in rows)


def accuracy_rows(
    model: Any,
    qdq_models: Mapping[str, str],
    eval_data: Any,
    *,
    preprocess: Any = None,
    input_name: Optional[str] = None,
    batch_size: int = 16,
    max_samples: Optional[int] = None,
    task: Any = "auto",
    output_slices: Any = None,
) -> List[Dict[str, Any]]:
    """The quantized models' accuracy against the FP32 model on ``eval_data``, per output head
    (:func:`trtcal.evaluation.measure.accuracy_rows`: boxes and class scores apart, detections kept,
    top-1/top-5 agreement, mask IoU, SQNR and cosine per head), then the task metric of the worst
    head; one block of rows per method. The Q/DQ models run in ONNX Runtime.

    Parameters
    ----------
    model : the FP32 ONNX model (path or ModelProto)
    qdq_models : {method: path of its Q/DQ model}
    eval_data : what :func:`trtcal.calibrate` reads as data (held-out samples)
    task, output_slices : the task and heads (:func:`trtcal.tasks.resolve_task`; default detected)
    """

    rows: List[Dict[str, Any]] = []
    for method, path in qdq_models.items():
        for r in evaluation.accuracy_rows(
            model,
            path,
            eval_data,
            task=task,
            output_slices=output_slices,
            batch_size=batch_size,
            eval_samples=max_samples,
            preprocess=preprocess,
            input_name=input_name,
        ):
            rows.append({"method": method, **r})
    return rows


def _accuracy_table(rows: Sequence[Mapping[str, Any]]):
    keys: List[str] = [k for k in _ACCURACY_FIRST if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    return keys, [[_fmt(r.get(k)) for k in keys] for r in rows]


# -- histograms as SVG ------------------------------------------------------------------------


def _histogram_svg(
    hist: Any, amax: Mapping[str, Optional[float]], x0: float = 0.0, y0: float = 0.0
) -> str:
    """SVG elements of one histogram at (x0, y0): log10(1 + count) of |x| pooled (max) into one
    column per unit of width, and a line per method's threshold."""
    if getattr(hist, "status", "ok") != "ok" or not np.asarray(hist.counts).any():
        return (
            f"<text x='{x0 + 4:.0f}' y='{y0 + _H / 2:.0f}' font-size='10' fill='#666'>"
            f"no histogram: {html.escape(str(getattr(hist, 'status', 'empty')))}</text>"
        )
    counts = np.asarray(hist.counts, dtype=np.float64)
    edges = np.asarray(hist.edges, dtype=np.float64)
    last = int(np.flatnonzero(counts)[-1]) + 1
    finite = [float(v) for v in amax.values() if v is not None and math.isfinite(v)]
    top = max([float(edges[last])] + finite) * 1.05
    keep = min(int(counts.size), int(np.searchsorted(edges, top)) + 1)
    c = counts[:keep]
    col = np.minimum((edges[:keep] / top * _W).astype(np.int64), _W - 1)
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    pooled = np.log10(1.0 + np.maximum.reduceat(c, starts))
    ys = y0 + _H - 2 - pooled / max(pooled.max(), 1e-12) * (_H - 4)
    xs = x0 + col[starts]
    pts = np.empty(2 * xs.size + 2)
    pts[0:-2:2], pts[1:-2:2] = xs, ys
    pts[-2:] = (x0 + col[starts[-1]] + 1, ys[-1])
    coords = " ".join(f"{v:.1f}" for v in pts)
    out = [
        f"<rect x='{x0}' y='{y0}' width='{_W}' height='{_H}' fill='#fafafa' stroke='#ddd'/>",
        f"<polyline points='{coords}' fill='none' stroke='#777' stroke-width='1'/>",
    ]
    for m, v in amax.items():
        if v is not None and math.isfinite(v):
            x = x0 + min(float(v) / top, 1.0) * _W
            out.append(
                f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{y0}' y2='{y0 + _H}' "
                f"stroke='{_COLOURS.get(m, '#000')}' "
                f"stroke-width='1.5'><title>{html.escape(m)} {float(v):.5g}</title></line>"
            )
    return "".join(out)


def histogram_svg(hist: Any, amax: Mapping[str, Optional[float]]) -> str:
    """One tensor's histogram with its thresholds, as an inline ``<svg>`` element."""
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' viewBox='0 0 {_W} "
        f"{_H}'>" + _histogram_svg(hist, amax) + "</svg>"
    )


def histograms_svg(histograms: Mapping[str, Any], amax: Mapping[str, Mapping[str, float]]) -> str:
    """Every tensor's histogram in one SVG document (for the Markdown report): a row per
    tensor with its name, and a legend of the methods' colours."""
    label_w, row_h = 330, _H + 6
    methods = list(amax)
    parts = []
    for i, (name, h) in enumerate(histograms.items()):
        y = 24 + i * row_h
        parts.append(
            f"<text x='4' y='{y + _H / 2 + 4:.0f}' font-size='11' font-family='monospace'>"
            f"{html.escape(name[:48])}</text>"
        )
        parts.append(_histogram_svg(h, {m: amax[m].get(name) for m in methods}, label_w, y))
    legend = "".join(
        f"<text x='{label_w + 70 * k}' y='14' font-size='11' "
        f"fill='{_COLOURS.get(m, '#000')}'>{m}</text>"
        for k, m in enumerate(methods)
    )
    height = 24 + len(histograms) * row_h
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + _W + 10}' height='{height}'>"
        "<text x='4' y='14' font-size='11'>|x| histograms (log counts) and "
        f"thresholds:</text>{legend}" + "".join(parts) + "</svg>"
    )


# -- the report -------------------------------------------------------------------------------


def _rows(result: Any) -> List[Dict[str, Any]]:
    methods = list(result.amax)
    rows = []
    for name, h in result.histograms.items():
        row = {
            "tensor": name,
            "values": h.total,
            "min": h.min,
            "max": h.max,
            "nonfinite": h.nonfinite,
        }
        for m in methods:
            row[m] = result.amax[m].get(name)
            row[m + ":clipped"] = getattr(result, "clipped", {}).get(m, {}).get(name, 0.0)
        rows.append(row)
    return rows


def _clip_text(fraction: float) -> str:
    """What a threshold saturates, when it is more than 0.1% of the values."""
    return f" ({fraction:.1%} clipped)" if fraction > 0.001 else ""


def write(
    path: str,
    result: Any,
    plots: bool = True,
    accuracy: Optional[Sequence[Mapping[str, Any]]] = None,
) -> List[str]:
    """Writes the report (Markdown, or HTML for .html/.htm). Returns the paths written.

    ``accuracy``: rows for the accuracy table (see :func:`add_accuracy_rows`); by default
    ``result.accuracy`` when the run measured it. ``plots=False`` leaves the histograms out.
    """
    is_html = path.lower().endswith((".html", ".htm"))
    methods = list(result.amax)
    rows = _rows(result)
    acc = list(accuracy) if accuracy is not None else list(getattr(result, "accuracy", None) or [])
    prov = result.provenance
    header = ["tensor", "values", "min", "max"] + methods + ["NaN/Inf"]
    table = [
        [r["tensor"], str(r["values"]), _fmt(r["min"]), _fmt(r["max"])]
        + [_fmt(r[m]) + _clip_text(r[m + ":clipped"]) for m in methods]
        + [str(r["nonfinite"])]
        for r in rows
    ]
    facts = [
        ("model", prov.get("model")),
        ("samples", prov.get("samples")),
        ("batches", prov.get("batches")),
        ("skipped", prov.get("skipped")),
        ("batch size", prov.get("batch_size")),
        ("runner", prov.get("runner", {}).get("runner")),
        ("methods", ", ".join(methods)),
        ("flavor", prov.get("flavor") or "default"),
        ("TensorRT", prov.get("tensorrt_version")),
    ]
    if "preprocess" in prov:
        facts.append(("preprocessing", prov["preprocess"]))
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    written = [path]
    if is_html:
        text = _html(facts, header, table, acc, result, plots)
    else:
        svg_rel = None
        if plots and result.histograms:
            files_dir = os.path.splitext(path)[0] + "_files"
            os.makedirs(files_dir, exist_ok=True)
            svg = os.path.join(files_dir, "histograms.svg")
            _files.atomic_write(svg, histograms_svg(result.histograms, result.amax))
            written.append(svg)
            svg_rel = os.path.relpath(svg, os.path.dirname(os.path.abspath(path))).replace(
                os.sep, "/"
            )
        text = _markdown(facts, header, table, acc, result, svg_rel)
    _files.atomic_write(path, text)
    return written


def _accuracy_note(acc: Sequence[Mapping[str, Any]]) -> str:
    if acc:
        return "The quantized model's outputs against the FP32 model's on the evaluation data."
    return (
        "Not measured: no evaluation data. `trtcal compare model.onnx --data calib/ --eval-data "
        "heldout/` "
        "measures every method's Q/DQ model against FP32 (SQNR, cosine, top-1 agreement)."
    )


def _markdown(facts, header, table, acc, result, svg_rel) -> str:
    out = ["# trtcal calibration report", ""]
    out += [f"- **{k}**: {v}" for k, v in facts]
    out += ["", "## Accuracy against FP32", "", _accuracy_note(acc), ""]
    if acc:
        keys, vals = _accuracy_table(acc)
        out += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in vals] + [""]
    if result.next_steps:
        out += ["## Next: TensorRT", "", "```"] + result.next_steps + ["```", ""]
    if result.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    if result.skipped:
        out += (
            ["## Skipped samples", ""] + [f"- `{s}`: {r}" for s, r in result.skipped[:200]] + [""]
        )
    out += [
        "## Thresholds (amax)",
        "",
        _CLIP_LEGEND,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table]
    out += [""]
    if svg_rel:
        out += [
            "## Histograms",
            "",
            f"![|x| histograms and thresholds of every tensor]({svg_rel})",
            "",
        ]
    return "\n".join(out)


def _html(facts, header, table, acc, result, plots: bool) -> str:
    e = html.escape
    methods = list(result.amax)
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>trtcal calibration report</title>",
        "<style>body{font-family:sans-serif;max-width:1300px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}td{text-align:right}"
        "td:first-child{text-align:left;font-family:monospace}td "
        "svg{display:block}</style></head><body>",
        "<h1>trtcal calibration report</h1><ul>",
    ]
    out += [f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in facts]
    out.append("</ul>")
    out.append(f"<h2>Accuracy against FP32</h2><p>{e(_accuracy_note(acc))}</p>")
    if acc:
        keys, vals = _accuracy_table(acc)
        out.append(
            "<table><tr>"
            + "".join(f"<th>{e(k)}</th>" for k in keys)
            + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in vals)
            + "</table>"
        )
    if result.next_steps:
        out.append("<h2>Next: TensorRT</h2><pre>" + e("\n".join(result.next_steps)) + "</pre>")
    if result.notes:
        out.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in result.notes) + "</ul>"
        )
    if result.skipped:
        out.append(
            "<h2>Skipped samples</h2><ul>"
            + "".join(f"<li><code>{e(s)}</code>: {e(r)}</li>" for s, r in result.skipped[:200])
            + "</ul>"
        )
    legend = " ".join(
        f"<span style='color:{_COLOURS.get(m, '#000')}'>&#9646; {e(m)}</span>" for m in methods
    )
    out.append(
        f"<h2>Thresholds (amax)</h2><p>{e(_CLIP_LEGEND)}"
        + (f" Histograms: |x|, log counts; lines: {legend}." if plots else "")
        + "</p><table><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in header)
        + ("<th>histogram</th>" if plots else "")
        + "</tr>"
    )
    names = list(result.histograms)
    for name, row in zip(names, table):
        cells = "".join(f"<td>{e(c)}</td>" for c in row)
        if plots:
            h = result.histograms[name]
            cells += (
                "<td>" + histogram_svg(h, {m: result.amax[m].get(name) for m in methods}) + "</td>"
            )
        out.append("<tr>" + cells + "</tr>")
    out.append("</table></body></html>")
    return "\n".join(out)
