#!/usr/bin/env python3
"""Structure checks that ruff and mypy do not make (run by pre-commit and .ci/run).

1. Layers: a module of python/trtcal/<layer>/ imports (at module level or inside a function)
   only its own layer and those below it: core < formats < pipeline < evaluation < api < cli
   (docs/architecture.md).
2. No import cycle among modules at module level.
3. A function-local import of trtcal is only for a module that needs an optional dependency
   (onnx, onnxruntime, torch, tensorrt, cupy) at import time.
4. No function in python/trtcal is longer than 150 lines.

Exit status 1 with one line per violation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent / "python"
LAYERS = ("core", "formats", "pipeline", "evaluation", "api", "cli")
MAX_LINES = 150
# modules that import an optional dependency at module level (a local import of them is allowed)
OPTIONAL = ("trtcal.formats.onnx", "trtcal.pipeline.torch")


def modules() -> Dict[str, Tuple[Path, bool]]:
    out = {}
    for p in sorted((ROOT / "trtcal").rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def imported(
    mods: Dict[str, Tuple[Path, bool]], mod: str, is_pkg: bool, node: ast.ImportFrom
) -> List[str]:
    pkg = mod if is_pkg else mod.rsplit(".", 1)[0]
    if node.level:
        base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
        src = ".".join(base + ([node.module] if node.module else []))
    else:
        src = node.module or ""
    if not (src == "trtcal" or src.startswith("trtcal.")):
        return []
    out = []
    for a in node.names:
        full = f"{src}.{a.name}"
        if full != "trtcal._C":
            out.append(full if full in mods else src)
    return out


def layer(mod: str) -> int:
    parts = mod.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else -1


def main() -> int:
    mods = modules()
    problems: List[str] = []
    top: Dict[str, Set[str]] = {}
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT.parent)
        local_nodes = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
                if length > MAX_LINES:
                    problems.append(
                        f"{rel}:{fn.lineno}: function {fn.name} is {length} lines (at most "
                        f"{MAX_LINES})"
                    )
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom):
                        local_nodes.add(id(node))
                        for dep in imported(mods, mod, is_pkg, node):
                            if not dep.startswith(OPTIONAL):
                                problems.append(
                                    f"{rel}:{node.lineno}: function-local import of {dep}, which "
                                    "needs "
                                    "no optional dependency: import it at module level"
                                )
        deps: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for dep in imported(mods, mod, is_pkg, node):
                    if layer(mod) >= 0 and layer(dep) > layer(mod):
                        problems.append(
                            f"{rel}:{node.lineno}: {mod} ({LAYERS[layer(mod)]}) imports {dep} "
                            f"({LAYERS[layer(dep)]}), a layer above it"
                        )
                    if id(node) not in local_nodes and dep != mod:
                        deps.add(dep)
        top[mod] = deps
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(top)]
    for p in problems:
        print(p)
    return 1 if problems else 0


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    sys.exit(main())
