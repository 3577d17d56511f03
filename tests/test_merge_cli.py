"""`trtcal merge` of shard checkpoints: all N shards of one run merge to the one-process result;
a missing or unfinished shard, a whole run mixed with shards, the same shard twice and shards of
different runs (model settings, preprocessing, N) are refused naming the files, unless
--allow-partial (missing / unfinished only, with a warning); files that are not trtcal's are named
as such; merged state files merge again. Real checkpoints from trtcal.calibrate(shard=...), CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from calib_models import QUIET, cnn_model, heavy_tailed_images  # noqa: E402

from trtcal import calibrate  # noqa: E402
from trtcal import distributed as D  # noqa: E402
from trtcal.pipeline import checkpoint as ckpt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 96  # samples: 12 batches of 8, 4 per shard of 3


def _merge(*args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "trtcal", "merge", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


def _shards(d, data, n, tag="ck", batch_size=8, **kw):
    """Runs the n shards of one calibration of d/cnn.onnx; returns their checkpoints' names."""
    for r in range(n):
        calibrate(
            os.path.join(d, "cnn.onnx"),
            data,
            method="minmax",
            batch_size=batch_size,
            shard=(r, n),
            checkpoint=os.path.join(d, f"{tag}.npz"),
            **QUIET,
            **kw,
        )
    return [f"{tag}.rank{r}-of-{n}.npz" for r in range(n)]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A folder with cnn.onnx, x.npy, its 3 shard checkpoints ck.rank{0,1,2}-of-3.npz, and the
    one-process run: whole.npz (checkpoint) and one.json (minmax table)."""
    d = tmp_path_factory.mktemp("merge")
    cnn_model(d / "cnn.onnx")
    np.save(d / "x.npy", heavy_tailed_images(np.random.default_rng(11), N))
    _shards(str(d), str(d / "x.npy"), 3)
    calibrate(
        str(d / "cnn.onnx"),
        str(d / "x.npy"),
        method="minmax",
        batch_size=8,
        checkpoint=str(d / "whole.npz"),
        out_table=str(d / "one.json"),
        **QUIET,
    )
    return d


def _one_error(res):
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("trtcal: error: ") and "trtcal: trtcal:" not in res.stderr, (
        res.stderr
    )
    return res.stderr


SHARDS = [f"ck.rank{r}-of-3.npz" for r in range(3)]


def test_three_shards_merge_to_the_one_process_table_and_states_merge_again(job):
    res = _merge(
        *SHARDS, "--method", "minmax", "--out-table", "m.json", "--out-state", "m.npz", cwd=job
    )
    assert res.returncode == 0, res.stderr
    assert (
        "warning" not in res.stderr
        and "3 of 3 shards" in res.stderr
        and f"{N} samples" in res.stderr
    )
    got, want = json.loads((job / "m.json").read_text()), json.loads((job / "one.json").read_text())
    assert got["tensors"] == want["tensors"] and len(want["tensors"]) > 3
    assert got["provenance"]["num_samples"] == N and "partial" not in got["provenance"]["extra"]
    # the merged state file merges again, alone, to the same table and the same state
    again = _merge(
        "m.npz", "--method", "minmax", "--out-table", "m2.json", "--out-state", "m2.npz", cwd=job
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((job / "m2.json").read_text())["tensors"] == want["tensors"]
    a, ia = D.load_states(str(job / "m.npz"))
    b, ib = D.load_states(str(job / "m2.npz"))
    assert {n: c.state_dict()["counts"].tolist() for n, c in a.items()} == {
        n: c.state_dict()["counts"].tolist() for n, c in b.items()
    }
    assert ia["meta"]["ranks"] == ib["meta"]["ranks"] == [0, 1, 2] and ib["meta"]["samples"] == N
    # a whole run's checkpoint merges alone too
    whole = _merge("whole.npz", "--method", "minmax", "--out-table", "w.json", cwd=job)
    assert whole.returncode == 0, whole.stderr
    assert json.loads((job / "w.json").read_text())["tensors"] == want["tensors"]


def test_missing_shard_is_refused_unless_allow_partial(job):
    err = _one_error(_merge(*SHARDS[:2], "--out-table", "p.json", cwd=job))
    assert (
        "shard 2 of 3" in err
        and "ck.rank2-of-3.npz" in err
        and "missing" in err
        and "--allow-partial" in err
    )
    assert not (job / "p.json").exists()
    res = _merge(
        *SHARDS[:2], "--method", "minmax", "--out-table", "p.json", "--allow-partial", cwd=job
    )
    assert res.returncode == 0, res.stderr
    assert "trtcal: warning: shard 2 of 3" in res.stderr and "64 samples" in res.stderr
    prov = json.loads((job / "p.json").read_text())["provenance"]
    assert prov["num_samples"] == 64 and prov["extra"]["partial"]["missing_shards"] == [2]


def test_partial_merged_state_completes_with_the_missing_shard(job):
    res = _merge(*SHARDS[:2], "--out-state", "s01.npz", "--allow-partial", cwd=job)
    assert res.returncode == 0, res.stderr
    err = _one_error(_merge("s01.npz", "--out-state", "x.npz", cwd=job))
    assert "shard 2 of 3" in err
    assert "twice" in _one_error(_merge("s01.npz", SHARDS[1], "--out-state", "x.npz", cwd=job))
    full = _merge("s01.npz", SHARDS[2], "--method", "minmax", "--out-table", "s.json", cwd=job)
    assert full.returncode == 0, full.stderr
    assert (
        json.loads((job / "s.json").read_text())["tensors"]
        == json.loads((job / "one.json").read_text())["tensors"]
    )


def test_unfinished_shard_is_refused_unless_allow_partial(job):
    state = ckpt.load(
        str(job / SHARDS[2])
    )  # the same shard as if interrupted: progress.complete false
    ckpt.save(
        str(job / "cut.rank2-of-3.npz"),
        config=state["config"],
        stats_state=state["stats_state"],
        progress=dict(state["progress"], complete=False),
    )
    err = _one_error(_merge(*SHARDS[:2], "cut.rank2-of-3.npz", "--out-state", "u.npz", cwd=job))
    assert "cut.rank2-of-3.npz" in err and "did not finish" in err and "--allow-partial" in err
    res = _merge(
        *SHARDS[:2], "cut.rank2-of-3.npz", "--out-state", "u.npz", "--allow-partial", cwd=job
    )
    assert res.returncode == 0 and "trtcal: warning: cut.rank2-of-3.npz" in res.stderr, res.stderr
    _, info = D.load_states(str(job / "u.npz"))
    assert info["meta"]["complete"] is False
    assert "did not finish" in _one_error(_merge("u.npz", "--out-state", "u2.npz", cwd=job))


def test_whole_run_with_a_shard_is_refused(job):
    err = _one_error(_merge("whole.npz", SHARDS[0], "--out-state", "w.npz", cwd=job))
    assert "whole.npz" in err and SHARDS[0] in err and "twice" in err
    assert not (job / "w.npz").exists()


def test_same_shard_twice_is_refused(job):
    shutil.copy(job / SHARDS[0], job / "copy.npz")
    err = _one_error(_merge(*SHARDS, "copy.npz", "--out-state", "d.npz", cwd=job))
    assert "shard 0 of 3" in err and "copy.npz" in err and SHARDS[0] in err and "twice" in err
    assert "given twice" in _one_error(
        _merge(SHARDS[0], SHARDS[0], "--out-state", "d.npz", cwd=job)
    )


def test_shards_of_different_runs_are_refused(job, tmp_path):
    d = str(tmp_path)
    shutil.copy(job / "cnn.onnx", tmp_path / "cnn.onnx")
    shutil.copy(job / "x.npy", tmp_path / "x.npy")
    two = _shards(d, os.path.join(d, "x.npy"), 2, tag="two")
    err = _one_error(
        _merge(
            os.path.join(job, SHARDS[0]),
            os.path.join(job, SHARDS[1]),
            os.path.join(d, two[1]),
            "--out-state",
            "z.npz",
            cwd=tmp_path,
        )
    )
    assert "two.rank1-of-2.npz" in err and "number of shards: 3" in err
    _shards(d, os.path.join(d, "x.npy"), 3, tag="b16", batch_size=16)
    _shards(d, os.path.join(d, "x.npy"), 3, tag="bins", bins=1024)
    for other, what in (("b16.rank2-of-3.npz", "batch_size"), ("bins.rank2-of-3.npz", "bins")):
        err = _one_error(
            _merge(
                os.path.join(job, SHARDS[0]),
                os.path.join(job, SHARDS[1]),
                os.path.join(d, other),
                "--out-state",
                "z.npz",
                cwd=tmp_path,
            )
        )
        assert (
            other in err
            and SHARDS[0] in err
            and f"{what}:" in err
            and "not shards of the same run" in err
        )
    np.save(tmp_path / "y.npy", np.load(tmp_path / "x.npy")[:88])  # other data: other size
    _shards(d, os.path.join(d, "y.npy"), 3, tag="y")
    err = _one_error(
        _merge(
            os.path.join(job, SHARDS[0]),
            os.path.join(job, SHARDS[1]),
            "y.rank2-of-3.npz",
            "--out-state",
            "z.npz",
            cwd=tmp_path,
        )
    )
    assert "y.rank2-of-3.npz" in err and "data." in err


def test_shards_with_different_preprocessing_are_refused(tmp_path):
    from PIL import Image

    from trtcal.pipeline.data import Preprocess

    rng = np.random.default_rng(3)
    os.makedirs(tmp_path / "img")
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(
            tmp_path / "img" / f"{i:02d}.png"
        )
    cnn_model(tmp_path / "cnn.onnx")
    d = str(tmp_path)
    a = _shards(
        d,
        os.path.join(d, "img"),
        3,
        tag="a",
        batch_size=4,
        preprocess=Preprocess(resize=14, crop=12),
    )
    b = _shards(
        d,
        os.path.join(d, "img"),
        3,
        tag="b",
        batch_size=4,
        preprocess=Preprocess(resize=13, crop=12),
    )
    err = _one_error(_merge(a[0], a[1], b[2], "--out-state", "z.npz", cwd=tmp_path))
    assert (
        "b.rank2-of-3.npz" in err
        and "a.rank0-of-3.npz" in err
        and "data.preprocess.resize: 14" in err
    )
    assert _merge(*a, "--out-state", "ok.npz", cwd=tmp_path).returncode == 0


def test_the_same_data_in_another_folder_merges_with_a_note(job, tmp_path):
    os.makedirs(tmp_path / "elsewhere")
    shutil.copy(job / "x.npy", tmp_path / "elsewhere" / "x.npy")
    calibrate(
        str(job / "cnn.onnx"),
        str(tmp_path / "elsewhere" / "x.npy"),
        method="minmax",
        batch_size=8,
        shard=(2, 3),
        checkpoint=str(tmp_path / "ck.npz"),
        **QUIET,
    )
    res = _merge(
        job / SHARDS[0],
        job / SHARDS[1],
        tmp_path / SHARDS[2],
        "--method",
        "minmax",
        "--out-table",
        "e.json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "trtcal: warning: the shards read their data from different places" in res.stderr
    assert (
        json.loads((tmp_path / "e.json").read_text())["tensors"]
        == json.loads((job / "one.json").read_text())["tensors"]
    )


def test_state_file_without_a_run_is_not_mixed_with_checkpoints(job):
    cs, _ = D.load_states(str(job / SHARDS[2]))
    D.save_states(str(job / "own.npz"), cs)
    err = _one_error(_merge(*SHARDS[:2], "own.npz", "--out-state", "o.npz", cwd=job))
    assert "own.npz" in err and "does not record which run" in err


def test_files_that_are_not_trtcal_states_are_named(job, tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3), np.float32))
    np.savez(tmp_path / "b.npz", a=np.zeros(3))
    (tmp_path / "t.json").write_text(json.dumps({"tensors": {"x": 1.0}}))
    (tmp_path / "c.cache").write_text("TRT-100300-EntropyCalibration2\nx: 3c000000\n")
    (tmp_path / "e.npz").write_bytes(b"")
    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04 not really a zip")
    for name, why in (
        ("a.npy", "NumPy .npy array of shape (2, 3), float32"),
        ("b.npz", "holds 'a'"),
        ("t.json", "JSON file"),
        ("c.cache", "TensorRT calibration cache"),
        ("e.npz", "empty"),
        ("z.npz", "zip"),
    ):
        err = _one_error(_merge(job / SHARDS[0], name, "--out-state", "o.npz", cwd=tmp_path))
        assert f"{name} is not a trtcal checkpoint or state file (" in err and why in err, err
        assert "context manager" not in err and "pickled" not in err
    err = _one_error(_merge("missing.npz", cwd=tmp_path))
    assert "missing.npz" in err
