"""Registering trtcal's plugin library with TensorRT's plugin registry."""

from __future__ import annotations

from typing import Any, Dict

from ...core.plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, plugin_library_path

_LOADED: Dict[str, Any] = {}


def load_plugins() -> Any:
    """Loads ``libtrtcal_plugins.so`` into TensorRT's global plugin registry (once).

    After this, ``trt.OnnxParser`` maps ``SiLU`` nodes (see :func:`trtcal.onnx.fuse_silu`) to
    the plugin and engines that contain it deserialize.

    Returns
    -------
    The registry's library handle.

    Raises
    ------
    ImportError
        When the ``tensorrt`` Python module is not installed.
    trtcal.core.plugin.PluginLibraryNotFoundError
        When trtcal was built without TensorRT headers.
    RuntimeError
        When TensorRT refuses the library or the creator is missing afterwards.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError(
            "trtcal: load_plugins needs the tensorrt Python module (pip install tensorrt, or the "
            "wheel shipped with your TensorRT installation)"
        ) from exc
    path = plugin_library_path()
    if path in _LOADED:
        return _LOADED[path]
    registry = trt.get_plugin_registry()
    handle = registry.load_library(path)
    if handle is None:
        raise RuntimeError(
            f"trtcal: TensorRT could not load the plugin library {path} (see its log)"
        )
    creator = registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    if creator is None:
        raise RuntimeError(
            f"trtcal: {path} loaded but TensorRT has no creator {PLUGIN_NAMESPACE}::{PLUGIN_NAME} "
            f"version {PLUGIN_VERSION}"
        )
    _LOADED[path] = handle
    return handle
