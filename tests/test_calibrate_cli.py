"""`trtcal calibrate` from the command line: the demo, a model with data, and its messages."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from trtcal.calibration import outputs  # noqa: E402
from trtcal.calibration.demo import build_model  # noqa: E402
from trtcal.cli import main  # noqa: E402


def _json(out):
    return json.loads(out[out.index("{"):])  # after the rng fixture's seed line


def test_demo_writes_outputs_and_next_steps(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["calibrate", "--out-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "preprocessing: resize 36" in err and "center-crop 32" in err
    assert (out / "demo_cnn.onnx").exists() and (out / "checkpoint.npz").exists()
    if os.path.exists(out / "report.md"):  # written when matplotlib is installed
        assert "block/relu" in (out / "report.md").read_text()
    api = outputs.available()
    if api["compute_amax"] and api["CalibrationTable"]:
        assert (out / "calibration.entropy.cache").exists()
        assert "trtexec --onnx=" in err and "--calib=" in err


def test_model_with_npy_data_prints_thresholds(tmp_path, capsys, rng, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = str(tmp_path / "m.onnx")
    build_model(model, size=10, width=4)
    np.save(tmp_path / "x.npy", rng.laplace(size=(7, 3, 10, 10)).astype(np.float32))
    assert main(["calibrate", model, "--data", str(tmp_path / "x.npy"), "--method", "minmax", "-q",
                 "--batch-size", "3"]) == 0
    amax = _json(capsys.readouterr().out)["minmax"]
    assert set(amax) >= {"images", "conv1", "relu1", "logits"}
    assert os.path.exists(tmp_path / "m.trtcal-ckpt.npz")  # default checkpoint: <model>.trtcal-ckpt.npz in the current directory
    # resume of a finished run gives the same answer without running again
    assert main(["calibrate", model, "--data", str(tmp_path / "x.npy"), "--method", "minmax", "-q",
                 "--batch-size", "3", "--resume"]) == 0
    assert _json(capsys.readouterr().out)["minmax"] == amax


def test_cli_errors_are_one_line(tmp_path, capsys, rng):
    model = str(tmp_path / "m.onnx")
    build_model(model, size=10, width=4)
    assert main(["calibrate", model]) == 1
    assert "--data" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 11, 10), np.float32))
    assert main(["calibrate", model, "--data", str(tmp_path / "bad.npy"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "input 'images' expects" in err and "(3, 10, 10)" in err and "(3, 11, 10)" in err
