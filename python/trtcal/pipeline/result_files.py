"""Writing a calibration result's files: the JSON table, the TensorRT cache and the Q/DQ model
of each method (with several methods each path gets ``.<method>``), and FP8 Q/DQ conversion."""

from __future__ import annotations

import os
from typing import Any, Callable, List, Mapping, Optional, Sequence

from .outputs import make_table, trtexec_lines, write_cache, write_json, write_qdq
from .result import CalibrationResult, primary


def make_tables(result: CalibrationResult) -> None:
    """Every method's table, no files (the ranks other than 0 of a distributed run)."""
    for m, amax in result.amax.items():
        prov = dict(result.provenance, method=m, flavor=result.flavors.get(m))
        if m != "percentile":
            prov.pop("percentile", None)
        result.tables[m] = make_table(amax, prov)


def write_result(
    result: CalibrationResult,
    model: Any,
    methods: List[str],
    paths: Any,
    trt_version: str,
    say: Callable[[str], None],
    op_types: Optional[Sequence[str]] = None,
    qdq_options: Optional[Mapping[str, Any]] = None,
    annotate: Optional[Callable[[str, Any], None]] = None,
) -> None:
    """Every method's table, and the files ``paths`` (an OutputPaths) asks for: JSON table,
    TensorRT cache, Q/DQ model; the trtexec lines of the primary method go to
    ``result.next_steps``. ``annotate(method, table)`` may add to a table before it is written."""
    out_cache, out_qdq, out_table = paths.cache, paths.qdq, paths.table
    several = len([m for m in methods if m in result.amax]) > 1
    first = primary([m for m in methods if m in result.amax] or ["minmax"])
    model_path = os.path.abspath(model) if isinstance(model, (str, os.PathLike)) else "model.onnx"
    for m, amax in result.amax.items():
        if not (out_cache or out_qdq or out_table):
            break
        prov = dict(result.provenance, method=m, flavor=result.flavors.get(m))
        if m != "percentile":
            prov.pop("percentile", None)
        table = make_table(amax, prov)
        if annotate is not None:
            annotate(m, table)
        result.tables[m] = table
        suffix = m if several else None
        if out_table:
            result.files[f"table.{m}"] = write_json(table, _named(out_table, suffix))
        if out_cache:
            p = write_cache(table, _named(out_cache, suffix), trt_version, m)
            result.files[f"cache.{m}"] = p
            if m == first:
                result.next_steps.extend(trtexec_lines(cache=os.path.abspath(p), model=model_path))
        if out_qdq:
            p, floats = write_qdq(
                model, table, _named(out_qdq, suffix), op_types, **dict(qdq_options or {})
            )
            if floats and m == first:
                note = (
                    f"trtcal: the Q/DQ model leaves {len(floats)} input(s) of quantizable ops in "
                    "float, for want "
                    f"of a range: {names_text(floats)} (calibrate them: widen "
                    "--tensors/--op-types; all-zero "
                    "tensors have no range)"
                )
                result.notes.append(note)
                say(note)
            result.files[f"qdq.{m}"] = p
            if m == first:
                result.next_steps.extend(trtexec_lines(qdq=os.path.abspath(p)))
    for k, p in result.files.items():
        say(f"trtcal: wrote {k}: {p}")


def convert_to_fp8(
    result: CalibrationResult, say: Callable[[str], None], placement_report: Optional[str] = None
) -> None:
    """quant_dtype 'fp8': each written Q/DQ model becomes FP8 where TensorRT runs the layer in
    FP8 fast (:mod:`trtcal.onnx.fp8`); the other layers go to the high-precision remainder (FP16
    by default). ``placement_report`` gets the FP8 / FP16 section with the reasons."""
    from ..formats.onnx.fp8 import convert_to_fp8 as convert  # needs the optional onnx package

    for key, path in list(result.files.items()):
        if not key.startswith("qdq."):
            continue
        _, rep = convert(
            path,
            result.amax[key[4:]],
            output=path,
            return_report=True,
            placement_report=placement_report,
        )
        say(
            f"trtcal: {path}: FP8 Q/DQ for {len(rep.fp8_nodes)} layer(s); {len(rep.float_nodes)} "
            "in the "
            f"high-precision remainder, {len(rep.int8_nodes)} INT8 (not FP8 where TensorRT has no "
            "fast FP8 kernel)"
        )
        for line in rep.lines():
            say(f"  {line}")


def with_method(path: str, method: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}.{method}{ext}"


def names_text(names: Sequence[str], shown: int = 5) -> str:
    head = ", ".join(repr(n) for n in names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _named(path: str, method: Optional[str]) -> str:
    return with_method(path, method) if method else path
