"""The extension's boundary: enum codes come from trtcal._C, and python/trtcal/_C.pyi describes it.

The NumPy-only install keeps a fallback table of each enum (the CPU path); when the extension is
built, the tables must equal its enums. The stub must name exactly what the extension defines,
with the same parameter names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import trtcal
from trtcal.core import _arrays
from trtcal.core import range_spec as range_search

STUB = Path(trtcal.__file__).with_name("_C.pyi")
_MODULE_ATTRS = {"__doc__", "__file__", "__loader__", "__name__", "__package__", "__spec__"}


def _extension():
    try:
        from trtcal import _C
    except ImportError:
        pytest.skip("trtcal was installed without the CUDA extension (no nvcc at build time)")
    return _C


def test_fallback_tables_are_complete_and_distinct():
    """The CPU tables (used without _C) give every dtype and GPU method its own code."""
    codes = _arrays._CPU_DTYPE_CODES
    assert set(codes) == {"float32", "float16", "bfloat16", "int8"}
    assert sorted(codes.values()) == list(range(len(codes)))
    methods = range_search._CPU_RANGE_METHOD
    assert sorted(methods.values()) == list(range(len(methods)))
    assert set(range_search._GPU_METHOD.values()) | {methods["percentile"]} == set(methods.values())
    assert set(range_search._THREADS) == set(methods.values())


def test_fallback_tables_equal_the_extension_enums():
    ext = _extension()
    assert {k: int(v) for k, v in ext.DType.__members__.items()} == _arrays._CPU_DTYPE_CODES
    assert {
        k: int(v) for k, v in ext.RangeMethod.__members__.items()
    } == range_search._CPU_RANGE_METHOD
    assert _arrays.DTYPE_CODES == _arrays._CPU_DTYPE_CODES
    assert range_search._RANGE_METHOD == range_search._CPU_RANGE_METHOD
    assert [k for k, _ in sorted(ext.NonFinite.__members__.items(), key=lambda kv: int(kv[1]))] == [
        "nan",
        "posinf",
        "neginf",
    ]


def _stub() -> tuple[dict[str, list[str]], dict[str, dict[str, list[str] | None]]]:
    """(function -> parameter names, class -> {member -> parameter names or None (attribute)})."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))

    def params(f: ast.FunctionDef) -> list[str]:
        a = f.args
        return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg != "self"]

    funcs: dict[str, list[str]] = {}
    classes: dict[str, dict[str, list[str] | None]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs[node.name] = params(node)
        elif isinstance(node, ast.ClassDef):
            members: dict[str, list[str] | None] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    is_property = any(
                        isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                    )
                    members[item.name] = None if is_property else params(item)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members[item.target.id] = None
            classes[node.name] = members
    return funcs, classes


def _doc_params(obj) -> list[str]:
    """Parameter names of a pybind11 function, from the signature line of its docstring."""
    line = (obj.__doc__ or "").strip().splitlines()[0]
    m = re.match(r"^[\w.]+\((.*)\)\s*->", line)
    assert m, f"no signature in {line!r}"
    names, depth, cur = [], 0, ""
    for ch in m.group(1) + ",":
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            name = cur.strip().split(":")[0].split("=")[0].strip()
            if name and name not in ("self", "*", "/"):
                names.append(name)
            cur = ""
        else:
            cur += ch
    return names


def test_stub_parses_and_names_the_range_search_plan_keywords():
    funcs, classes = _stub()
    init = classes["RangeSearchPlan"]["__init__"]
    assert init is not None and len(init) == 19 and init[0] == "device"
    assert {"DType", "RangeMethod", "NonFinite", "DeviceBuffer", "HistogramState"} <= set(classes)
    assert "range_search_once" in funcs
    once = funcs["range_search_once"]
    assert once is not None and len(once) == 25 and once[0] == "device" and once[-1] == "with_curve"
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    fn = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "range_search_once"
    )
    assert not fn.args.args and len(fn.args.kwonlyargs) == 25  # keyword-only, as bound


@pytest.mark.gpu
def test_range_search_once_is_keyword_only():
    ext = _extension()
    with pytest.raises(TypeError):
        ext.range_search_once(0, 0)  # positional arguments are refused


@pytest.mark.gpu
def test_stub_matches_the_extension():
    ext = _extension()
    funcs, classes = _stub()
    built = {n for n in dir(ext) if n not in _MODULE_ATTRS}
    assert built == set(funcs) | set(classes), (
        f"only in _C: {sorted(built - set(funcs) - set(classes))}; "
        f"only in the stub: {sorted(set(funcs) | set(classes) - built)}"
    )
    for name, stub_params in funcs.items():
        assert _doc_params(getattr(ext, name)) == stub_params, name
    for name, members in classes.items():
        cls = getattr(ext, name)
        if issubclass(cls, BaseException):
            continue
        public = {n for n in dir(cls) if not n.startswith("_")}
        assert public == {n for n in members if not n.startswith("_")}, name
        for member, stub_params in members.items():
            if stub_params is None or name in ("DType", "RangeMethod", "NonFinite"):
                continue
            assert _doc_params(getattr(cls, member)) == stub_params, f"{name}.{member}"
