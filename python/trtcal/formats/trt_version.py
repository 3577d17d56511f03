"""TensorRT version strings: the one parser (cache headers, trtexec lines, the implicit-INT8
check, the runners) and the installed version."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Optional, Tuple, Union


def parse_version(version: Union[str, Tuple[int, ...]]) -> Tuple[int, int, int]:
    """``"10.16"`` / ``"8.6.1.6"`` / ``(8, 6, 1)`` -> (major, minor, patch): the one TensorRT
    version parser (cache headers, trtexec lines, the implicit-INT8 check, the runners)."""
    if isinstance(version, str):
        try:
            nums = [int(p) for p in version.strip().split(".")[:3]]
        except ValueError:
            raise ValueError(
                f"trtcal: TensorRT version '{version}' is not of the form X.Y or X.Y.Z (e.g. 10.16)"
            ) from None
    else:
        nums = [int(p) for p in tuple(version)[:3]]
    if not nums or any(n < 0 for n in nums):
        raise ValueError(f"trtcal: invalid TensorRT version {version!r}")
    nums += [0] * (3 - len(nums))
    return nums[0], nums[1], nums[2]


def parse_major(version: Union[str, Tuple[int, ...]]) -> int:
    return parse_version(version)[0]


def installed_version() -> Optional[str]:
    """'X.Y' of the installed tensorrt module, or None (none, or a broken install)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        major, minor, _ = parse_version(str(importlib.import_module("tensorrt").__version__))
    except Exception:  # noqa: BLE001 - a broken install is the same as none here
        return None
    return f"{major}.{minor}"
