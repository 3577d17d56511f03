"""The public module paths of trtcal, and the layer each lives in.

The package is laid out in layers (``core`` -> ``formats`` -> ``pipeline`` -> ``evaluation`` ->
``api`` -> ``cli``; docs/architecture.md), but users write the short paths the README shows:
``trtcal.onnx.quantize``, ``trtcal.torch.collect``, ``trtcal.tensorrt.EntropyCalibrator2``.
:data:`PUBLIC_PATHS` maps each short path to its module. :class:`PublicPathFinder` makes
``import trtcal.onnx`` (and any submodule below it, such as ``trtcal.onnx.placement``) load the
layered module itself, once, so both spellings name the same module object (same classes, same
state). ``trtcal.<short>`` attribute access loads them lazily (PEP 562, in ``trtcal/__init__``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Optional, Sequence

PUBLIC_PATHS = {
    "onnx": "formats.onnx",
    "tensorrt": "formats.tensorrt",
    "torch": "pipeline.torch",
    "distributed": "pipeline.distributed",
    "fp8": "core.fp8",
    "reference": "core.reference",
    "tasks": "evaluation.tasks",
    "precision_choice": "evaluation.precision_choice",
}


def layered_name(fullname: str, package: str = "trtcal") -> Optional[str]:
    """``trtcal.onnx.placement`` -> ``trtcal.formats.onnx.placement``; None when not a short
    path."""
    head, _, rest = fullname[len(package) + 1 :].partition(".")
    if not fullname.startswith(package + ".") or head not in PUBLIC_PATHS:
        return None
    return f"{package}.{PUBLIC_PATHS[head]}" + (f".{rest}" if rest else "")


class _SameModule(importlib.abc.Loader):
    """Hands the import system the already-loaded layered module instead of a second copy."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = (
            self._spec
        )  # the import system set the short path's spec; keep the real one


class PublicPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]] = None,
        target: Optional[ModuleType] = None,
    ) -> Optional[importlib.machinery.ModuleSpec]:
        real = layered_name(fullname)
        if real is None:
            return None
        spec = importlib.util.find_spec(real)
        is_package = spec is not None and spec.submodule_search_locations is not None
        return importlib.util.spec_from_loader(fullname, _SameModule(real), is_package=is_package)


def install() -> None:
    if not any(isinstance(f, PublicPathFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, PublicPathFinder())
