"""Where the TensorRT plugin library (``libtrtcal_plugins.so``) is.

The library holds the IPluginV3 plugin ``SiLU`` (version "1", namespace "trtcal"): FP32,
FP16, BF16 and INT8 (exact table) SiLU with dynamic shapes. It is built with trtcal when
TensorRT headers are found at build time and is loaded by
:func:`trtcal.tensorrt.plugins.load_plugins`, ``IPluginRegistry::loadLibrary`` or
``trtexec --staticPlugins=<path>`` / ``--dynamicPlugins=<path>``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PLUGIN_NAME = "SiLU"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "trtcal"

_LIBRARY_NAMES = {"linux": "libtrtcal_plugins.so", "win32": "trtcal_plugins.dll"}


class PluginLibraryNotFoundError(FileNotFoundError):
    """trtcal was built without TensorRT headers, so it has no plugin library."""


def plugin_library_path() -> str:
    """Absolute path of ``libtrtcal_plugins.so``.

    ``TRTCAL_PLUGIN_LIBRARY`` (a path) overrides the copy installed next to the package.

    Raises
    ------
    PluginLibraryNotFoundError
        When the library was not built, with how to build it.
    """
    override = os.environ.get("TRTCAL_PLUGIN_LIBRARY")
    if override:
        if not Path(override).is_file():
            raise PluginLibraryNotFoundError(
                f"trtcal: TRTCAL_PLUGIN_LIBRARY={override!r} is not a file"
            )
        return str(Path(override).resolve())
    name = _LIBRARY_NAMES.get(sys.platform, "libtrtcal_plugins.so")
    path = Path(__file__).resolve().parent.parent / name  # installed beside trtcal/__init__.py
    if path.is_file():
        return str(path)
    raise PluginLibraryNotFoundError(
        f"trtcal: the TensorRT plugin library {name} is not installed (expected at {path}). It is "
        "built only when TensorRT headers (NvInferRuntime.h) are found at build time: set "
        "TensorRT_ROOT to a TensorRT 10 or 11 installation (or an NVIDIA/TensorRT OSS checkout, "
        "whose include/ is enough) and reinstall, e.g. `TensorRT_ROOT=/opt/tensorrt pip install "
        "--force-reinstall --no-build-isolation .`"
    )
