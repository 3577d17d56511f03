"""Loads the private CUDA extension ``trtcal._C`` when it was built and a GPU is present."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import ModuleType
from typing import Optional

_IMPORT_ERROR: Optional[BaseException] = None
try:  # the extension exists only when the package was built with nvcc
    from .. import _C as _ext  # typed by _C.pyi
except ImportError as exc:  # pragma: no cover - depends on the build
    _ext = None  # type: ignore[assignment]
    _IMPORT_ERROR = exc


def enum_codes(name: str, fallback: Mapping[str, int]) -> dict[str, int]:
    """Codes of the extension's enum ``trtcal._C.<name>`` by member name.

    Parameters
    ----------
    name : str
        The enum's name in the extension (``"DType"``, ``"RangeMethod"``).
    fallback : Mapping[str, int]
        The codes to use without the extension (the NumPy-only install); tests check that they
        equal the extension's.

    Returns
    -------
    dict[str, int]
        Member name -> integer code.
    """
    enum = getattr(_ext, name, None)
    if enum is None:
        return dict(fallback)
    return {str(k): int(v) for k, v in enum.__members__.items()}


def _free_workspaces() -> None:  # pragma: no cover - needs the CUDA build
    """Frees the extension's cached one-shot workspaces while the CUDA runtime is alive."""
    free = getattr(_ext, "free_workspaces", None)
    if free is not None:
        try:
            free()
        except Exception:  # noqa: BLE001 - never fail interpreter shutdown
            pass


if _ext is not None:  # pragma: no cover - depends on the build
    import atexit

    atexit.register(_free_workspaces)

_HOW_TO_GET_CUDA = (
    "Reinstall trtcal on a machine with the CUDA toolkit so that its kernels are compiled: "
    "put nvcc on PATH (or set CUDACXX) and run `pip install --force-reinstall --no-cache-dir "
    "trtcal` "
    "(from a checkout: `pip install .`). Set TRTCAL_CUDA_ARCHITECTURES=90 (for example) to build "
    "for one GPU generation only."
)


class CUDAUnavailableError(RuntimeError):
    """A GPU-only call was made without the CUDA build of trtcal or without a GPU."""


def extension() -> Optional[ModuleType]:
    """The compiled extension module, or None when trtcal was installed without CUDA."""
    return _ext


@functools.lru_cache(maxsize=1)
def _has_device() -> bool:
    return _ext is not None and _ext.device_count() > 0


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when trtcal's CUDA kernels were built and at least one GPU is visible."""
    return _ext is not None and _ext.device_count() > 0


def require_cuda(what: str) -> ModuleType:
    """Returns the extension or raises CUDAUnavailableError explaining how to get it."""
    if _ext is not None and _has_device():
        return _ext
    if _ext is None:
        raise CUDAUnavailableError(
            f"trtcal: {what} needs the CUDA build of trtcal, but this installation has no "
            f"compiled kernels ({_IMPORT_ERROR}). {_HOW_TO_GET_CUDA}"
        )
    if _ext.device_count() == 0:
        raise CUDAUnavailableError(
            f"trtcal: {what} needs a CUDA GPU, but none is visible (check the driver and "
            "CUDA_VISIBLE_DEVICES)."
        )
    return _ext
