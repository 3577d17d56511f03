"""The calibration report: a summary table and, per tensor, the |x| histogram (log counts)
with each method's threshold marked. Markdown (PNGs in ``<name>_files/``) or a self-contained
HTML page (PNGs inlined), chosen by the file extension."""

from __future__ import annotations

import base64
import html
import io
import os
import re
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from .. import _files

_COLOURS = {"minmax": "#d62728", "entropy": "#1f77b4", "percentile": "#2ca02c", "mse": "#9467bd"}


def _fmt(v: Optional[float]) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.5g}"


def _slug(name: str, i: int) -> str:
    return f"{i:04d}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]


def plot_png(hist: Any, amax: Mapping[str, float]) -> bytes:
    """PNG bytes: the histogram as steps with log counts, one vertical line per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 2.6), dpi=90)
    try:
        if hist.status == "ok":
            counts, edges = hist.counts, hist.edges
            last = int(np.flatnonzero(counts)[-1]) + 1 if counts.any() else counts.size
            top = max([edges[last]] + [v for v in amax.values() if np.isfinite(v)]) * 1.05
            keep = int(min(counts.size, np.searchsorted(edges, top) + 1))
            ax.stairs(np.maximum(counts[:keep], 0), edges[: keep + 1], fill=True, color="#999999", alpha=0.7)
            ax.set_yscale("log")
            for m, v in amax.items():
                ax.axvline(v, color=_COLOURS.get(m, "black"), lw=1.2, label=f"{m} {v:.4g}")
            ax.legend(fontsize=7, loc="upper right")
            ax.set_xlim(0, top)
        else:
            ax.text(0.5, 0.5, f"no histogram: {hist.status}", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(hist.name, fontsize=8)
        ax.set_xlabel("|x|", fontsize=8)
        ax.set_ylabel("count", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _rows(result: Any) -> List[Dict[str, Any]]:
    methods = list(result.amax)
    rows = []
    for name, h in result.histograms.items():
        row = {"tensor": name, "values": h.total, "min": h.min, "max": h.max, "nonfinite": h.nonfinite}
        for m in methods:
            row[m] = result.amax[m].get(name)
            row[m + ":clipped"] = getattr(result, "clipped", {}).get(m, {}).get(name, 0.0)
        rows.append(row)
    return rows


def write(path: str, result: Any, plots: bool = True) -> List[str]:
    """Writes the report (Markdown, or HTML for .html/.htm). Returns the paths written."""
    is_html = path.lower().endswith((".html", ".htm"))
    methods = list(result.amax)
    rows = _rows(result)
    base = os.path.splitext(path)[0]
    files_dir = base + "_files"
    written = [path]
    images: Dict[str, str] = {}
    have_mpl = True
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            have_mpl = False
    if plots and have_mpl:
        if not is_html:
            os.makedirs(files_dir, exist_ok=True)
        for i, (name, h) in enumerate(result.histograms.items()):
            png = plot_png(h, {m: result.amax[m][name] for m in methods if name in result.amax[m]})
            if is_html:
                images[name] = "data:image/png;base64," + base64.b64encode(png).decode()
            else:
                p = os.path.join(files_dir, _slug(name, i) + ".png")
                _files.atomic_write(p, png)
                written.append(p)
                images[name] = os.path.relpath(p, os.path.dirname(os.path.abspath(path)) or ".").replace(os.sep, "/")
    prov = result.provenance
    header = ["tensor", "values", "min", "max"] + methods + ["NaN/Inf"]
    table = [[r["tensor"], str(r["values"]), _fmt(r["min"]), _fmt(r["max"])]
             + [_fmt(r[m]) + _clip_text(r[m + ":clipped"]) for m in methods] + [str(r["nonfinite"])] for r in rows]
    facts = [("model", prov.get("model")), ("samples", prov.get("samples")), ("batches", prov.get("batches")),
             ("skipped", prov.get("skipped")), ("batch size", prov.get("batch_size")),
             ("runner", prov.get("runner", {}).get("runner")), ("methods", ", ".join(methods)),
             ("flavor", prov.get("flavor") or "default"), ("TensorRT", prov.get("tensorrt_version"))]
    if "preprocess" in prov:
        facts.append(("preprocessing", prov["preprocess"]))
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    page = _html(facts, header, table, images, result) if is_html else _markdown(facts, header, table, images, result)
    _files.atomic_write(path, page)
    return written


_CLIP_LEGEND = "(p% clipped): the share of the tensor's values at or beyond the threshold, which saturate to +-127."


def _clip_text(fraction: float) -> str:
    """What a threshold saturates, when it is more than 0.1% of the values."""
    return f" ({fraction:.1%} clipped)" if fraction > 0.001 else ""


def _markdown(facts, header, table, images, result) -> str:
    out = ["# trtcal calibration report", ""]
    out += [f"- **{k}**: {v}" for k, v in facts]
    out += [""]
    if result.next_steps:
        out += ["## Next: TensorRT", "", "```"] + result.next_steps + ["```", ""]
    if result.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    if result.skipped:
        out += ["## Skipped samples", ""] + [f"- `{s}`: {r}" for s, r in result.skipped[:200]] + [""]
    out += ["## Thresholds (amax)", "", _CLIP_LEGEND, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table]
    out += [""]
    if images:
        out += ["## Histograms", ""]
        for name, src in images.items():
            out += [f"### `{name}`", "", f"![{name}]({src})", ""]
    return "\n".join(out)


def _html(facts, header, table, images, result) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>trtcal calibration report</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}td{text-align:right}"
           "td:first-child{text-align:left;font-family:monospace}</style></head><body>",
           "<h1>trtcal calibration report</h1><ul>"]
    out += [f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in facts]
    out.append("</ul>")
    if result.next_steps:
        out.append("<h2>Next: TensorRT</h2><pre>" + e("\n".join(result.next_steps)) + "</pre>")
    if result.notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in result.notes) + "</ul>")
    if result.skipped:
        out.append("<h2>Skipped samples</h2><ul>" + "".join(f"<li><code>{e(s)}</code>: {e(r)}</li>"
                                                            for s, r in result.skipped[:200]) + "</ul>")
    out.append(f"<h2>Thresholds (amax)</h2><p>{e(_CLIP_LEGEND)}</p><table><tr>"
               + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
    out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table]
    out.append("</table>")
    if images:
        out.append("<h2>Histograms</h2>")
        for name, src in images.items():
            out.append(f"<h3><code>{e(name)}</code></h3><img alt='{e(name)}' src='{src}'>")
    out.append("</body></html>")
    return "\n".join(out)
