"""`trtcal calibrate` from the command line: the demo, a model with data, and its messages."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from trtcal.cli import main  # noqa: E402
from trtcal.pipeline import outputs  # noqa: E402
from trtcal.pipeline.demo import build_model  # noqa: E402


def _json(out):
    return json.loads(out[out.index("{") :])  # after the rng fixture's seed line


def test_demo_writes_outputs_and_next_steps(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["calibrate", "--out-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "preprocessing: resize 36" in err and "center-crop 32" in err
    assert (out / "demo_cnn.onnx").exists() and (out / "checkpoint.npz").exists()
    assert "block/relu" in (out / "report.md").read_text()
    svg = (out / "report_files" / "histograms.svg").read_text()  # the report's one figure
    assert svg.startswith("<svg") and "block/relu" in svg
    for m in outputs.METHODS:
        assert (out / f"calibration.{m}.cache").read_text().startswith("TRT-")
        assert json.loads((out / f"calibration.{m}.json").read_text())["provenance"]["method"] == m
        assert (out / f"demo_cnn.qdq.{m}.onnx").stat().st_size > 0
    assert "trtexec --onnx=" in err and "--calib=" in err
    assert not [n for n in os.listdir(out) if ".trtcal-tmp-" in n or n.endswith(".trtcal-lock")]


def test_model_with_npy_data_prints_thresholds(tmp_path, capsys, rng, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = str(tmp_path / "m.onnx")
    build_model(model, size=10, width=4)
    np.save(tmp_path / "x.npy", rng.laplace(size=(7, 3, 10, 10)).astype(np.float32))
    assert (
        main(
            [
                "calibrate",
                model,
                "--data",
                str(tmp_path / "x.npy"),
                "--method",
                "minmax",
                "-q",
                "--batch-size",
                "3",
            ]
        )
        == 0
    )
    amax = _json(capsys.readouterr().out)["minmax"]
    assert set(amax) >= {"images", "conv1", "relu1", "logits"}
    assert os.path.exists(
        tmp_path / "m.trtcal-ckpt.npz"
    )  # default checkpoint: <model>.trtcal-ckpt.npz in the current directory
    # resume of a finished run gives the same answer without running again
    assert (
        main(
            [
                "calibrate",
                model,
                "--data",
                str(tmp_path / "x.npy"),
                "--method",
                "minmax",
                "-q",
                "--batch-size",
                "3",
                "--resume",
            ]
        )
        == 0
    )
    assert _json(capsys.readouterr().out)["minmax"] == amax


def test_cli_errors_are_one_line(tmp_path, capsys, rng, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default checkpoint goes to the current directory
    model = str(tmp_path / "m.onnx")
    build_model(model, size=10, width=4)
    assert main(["calibrate", model]) == 1
    assert "--data" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 11, 10), np.float32))
    assert main(["calibrate", model, "--data", str(tmp_path / "bad.npy"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "input 'images' expects" in err and "(3, 10, 10)" in err and "(3, 11, 10)" in err


def _model_and_data(tmp_path, rng):
    model = str(tmp_path / "m.onnx")
    build_model(model, size=10, width=4)
    np.save(tmp_path / "x.npy", rng.laplace(size=(7, 3, 10, 10)).astype(np.float32))
    return model, str(tmp_path / "x.npy")


@pytest.mark.parametrize(
    "flag,target",
    [
        ("--out-qdq", "model"),
        ("--out-table", "data"),
        ("--out-cache", "data"),
        ("--report", "model"),
    ],
)
def test_cli_refuses_an_output_that_is_an_input(tmp_path, capsys, rng, flag, target):
    model, data = _model_and_data(tmp_path, rng)
    before = {p: open(p, "rb").read() for p in (model, data)}
    path = model if target == "model" else data
    rc = main(["calibrate", model, "--data", data, "-q", flag, path])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and f"is the {target} {path}" in err
    assert {p: open(p, "rb").read() for p in (model, data)} == before
    assert not os.path.exists(tmp_path / "m.trtcal-ckpt.npz")  # refused before anything ran


def test_cli_refuses_two_outputs_on_one_path(tmp_path, capsys, rng):
    model, data = _model_and_data(tmp_path, rng)
    same = str(tmp_path / "out.json")
    assert (
        main(["calibrate", model, "--data", data, "-q", "--out-table", same, "--out-cache", same])
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "--out-cache and --out-table are the same file" in err
        or "out_cache and out_table are the same" in err
    )
    assert not os.path.exists(same)


def test_cli_sigterm_exit_status_and_error_lines(tmp_path, capsys, rng, monkeypatch):
    """Expected errors are one line and exit 1; a stop by a signal exits 128 + its number."""
    import trtcal.cli.calibrate as cal
    from trtcal.pipeline.signals import Stopped

    model, data = _model_and_data(tmp_path, rng)

    def stopped(*a, **k):
        raise Stopped(15)

    monkeypatch.setattr(cal, "calibrate", stopped)
    assert main(["calibrate", model, "--data", data, "-q"]) == 143
    assert capsys.readouterr().err == "trtcal: interrupted (SIGTERM)\n"
