"""Reading ONNX files safely: every external-data file a model names must lie inside the
model's folder (symlinks resolved), and a file that is no ONNX model is a one-line ValueError.
Every ONNX reader of trtcal (the runners, the Q/DQ writer, the FP8 converter, migrate) goes
through :func:`load_onnx`."""

from __future__ import annotations

import os
from typing import Any, List, Union

ModelLike = Union[str, "os.PathLike[str]", Any]


def load_onnx(model: ModelLike):
    """An ONNX file (its external data checked to lie inside the model's folder, then loaded) or
    an ``onnx.ModelProto`` as it is. A file that is no ONNX model, or whose external data points
    outside its folder (``..``, an absolute path, a symlink leading out), is a ValueError naming
    it."""
    import onnx

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isdir(path):
            raise ValueError(f"trtcal: the model {path} is a folder, not an ONNX file")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"trtcal: model not found: {path}")
        try:
            proto = onnx.load(path, load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends: not ONNX
            raise ValueError(
                f"trtcal: {path} is not an ONNX model ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'unreadable'})"
            ) from None
        if not proto.HasField("graph") or not (proto.graph.node or proto.graph.input):
            raise ValueError(
                f"trtcal: {path} is not an ONNX model (it parses to a model with no graph: "
                f"{'an empty file' if os.path.getsize(path) == 0 else 'another kind of file'})"
            )
        files = external_data_files(path, proto)
        if files:
            from onnx.external_data_helper import load_external_data_for_model

            try:
                load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"trtcal: cannot read the external data of the model {path}: {exc}"
                ) from None
        return proto
    if isinstance(model, onnx.ModelProto):
        return model
    raise TypeError(
        f"trtcal: model must be an ONNX file path or onnx.ModelProto, not {type(model).__name__}"
    )


def external_data_files(path: str, proto: Any = None) -> List[str]:
    """The external-data files an ONNX file names, each checked to be a file inside the model's
    folder once every symlink is resolved (ValueError naming the model and the location
    otherwise)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    if proto is None:
        try:
            proto = onnx.load(path, load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - not ONNX: the loader says so
            raise ValueError(
                f"trtcal: {path} is not an ONNX model ({type(exc).__name__})"
            ) from None
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    out: List[str] = []
    for t in _get_all_tensors(proto):
        if not uses_external_data(t):
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        target = os.path.realpath(os.path.join(folder, location))
        if not location or os.path.isabs(location) or not target.startswith(folder + os.sep):
            raise ValueError(
                f"trtcal: the model {path} keeps tensor '{t.name}' in {location!r}, outside the "
                "model's folder; external data must lie inside it (refused for safety)"
            )
        if not os.path.isfile(target):
            raise ValueError(
                f"trtcal: the model {path} keeps tensor '{t.name}' in {location!r}, which is "
                "missing"
            )
        if target not in out:
            out.append(target)
    return out
