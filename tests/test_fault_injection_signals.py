"""Signals at random points of a real `python -m trtcal calibrate`, each followed by `--resume`:
the table and cache must equal an uninterrupted run's byte for byte, and nothing may be left
behind. SIGTERM and SIGHUP save the checkpoint as SIGINT does; checkpoints also come by time."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from calib_models import QUIET, cnn_model  # noqa: E402
from calib_models import heavy_tailed_images as _data  # noqa: E402

from trtcal import calibrate  # noqa: E402
from trtcal.core import _files  # noqa: E402
from trtcal.pipeline import checkpoint as ckpt  # noqa: E402

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
N = 240  # samples: 120 batches of 2, a checkpoint after each


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A model, data, and the outputs of an uninterrupted run (the reference bytes)."""
    d = tmp_path_factory.mktemp("signals")
    model = cnn_model(d / "cnn.onnx")
    np.save(d / "x.npy", _data(np.random.default_rng(11), N))
    ref = d / "ref"
    res = _cli(model, d / "x.npy", ref)
    assert res.returncode == 0, res.stderr
    return model, d / "x.npy", {f: (ref / f).read_bytes() for f in ("t.json", "t.cache")}


def _args(model, data, out, *extra):
    # the output paths are the same in every run (they are in the provenance): the folder differs
    return [
        sys.executable,
        "-m",
        "trtcal",
        "calibrate",
        model,
        "--data",
        str(data),
        "--method",
        "minmax",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "1",
        "--checkpoint",
        str(out / "ck.npz"),
        "--out-table",
        "t.json",
        "--out-cache",
        "t.cache",
        *extra,
    ]


def _cli(model, data, out, *extra):
    out.mkdir(exist_ok=True)
    return subprocess.run(
        _args(model, data, out, "-q", *extra), capture_output=True, text=True, env=ENV, cwd=out
    )


def _interrupt(model, data, out, sig, delay):
    """Starts a run, waits for its first checkpoint (or its end), then ``delay`` seconds more,
    and sends ``sig``. Returns (returncode, stderr)."""
    out.mkdir()
    p = subprocess.Popen(
        _args(model, data, out, "-q"), stderr=subprocess.PIPE, text=True, env=ENV, cwd=out
    )
    t0 = time.monotonic()
    while not (out / "ck.npz").exists() and p.poll() is None and time.monotonic() - t0 < 60:
        time.sleep(0.005)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
    ids=lambda s: signal.Signals(s).name,
)
@pytest.mark.parametrize("draw", range(2))
def test_signal_at_a_random_point_then_resume_is_byte_identical(job, tmp_path, rng, sig, draw):
    model, data, ref = job
    out = tmp_path / "run"
    delay = float(rng.uniform(0.0, 0.6))
    rc, err = _interrupt(model, data, out, sig, delay)
    assert "Traceback" not in err, err
    if rc == 128 + sig:  # stopped by the signal: during the pass, the checkpoint was saved
        assert f"interrupted ({signal.Signals(sig).name})" in err
        state = ckpt.load(str(out / "ck.npz"))["progress"]  # -q: no message; the checkpoint itself
        assert state["complete"] or 0 < state["samples"] < N
    elif sig == signal.SIGKILL:
        assert rc in (0, -signal.SIGKILL)
    else:  # finished first, or stopped by the default action while writing the outputs
        assert rc in (0, -sig, 128 + sig), (rc, err)
    res = _cli(model, data, out, "--resume")
    assert res.returncode == 0, res.stderr
    for f, want in ref.items():
        assert (out / f).read_bytes() == want, f
    left = [n for n in os.listdir(out) if n not in ("ck.npz", "t.json", "t.cache")]
    assert left == [], (
        left
    )  # no temporary (a killed run's are removed by the next) and no lock file


def test_sigterm_saves_the_checkpoint_like_sigint(job, tmp_path):
    """With checkpoints every 1000 batches, SIGTERM (a container stop) still keeps what was done."""
    model, _, _ = job
    data = tmp_path / "long.npy"  # 2500 batches: the signal comes well inside the pass
    np.save(data, _data(np.random.default_rng(3), 5000))
    out = tmp_path / "run"
    out.mkdir()
    cmd = _args(model, data, out)  # not quiet: the messages are checked
    cmd[cmd.index("--checkpoint-every") + 1] = "1000"
    p = subprocess.Popen(
        cmd + ["--checkpoint-seconds", "0"], stderr=subprocess.PIPE, text=True, env=ENV, cwd=out
    )
    head = []
    for line in p.stderr:  # the pass starts after this line
        head.append(line)
        if line.startswith("trtcal: calibrating "):
            break
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    err = "".join(head) + err
    if p.returncode == 0:
        pytest.skip("the run finished before the signal (a very fast machine)")
    assert p.returncode == 128 + signal.SIGTERM and "interrupted (SIGTERM)" in err
    if "nothing to resume" not in err:
        assert "state saved to" in err and ckpt.load(str(out / "ck.npz"))["progress"]["samples"] > 0


def test_checkpoints_come_by_time_as_well_as_by_batches(tmp_path, rng, monkeypatch):
    model = cnn_model(tmp_path / "cnn.onnx")
    x = _data(rng, 10)
    saves = []
    real = ckpt.save
    monkeypatch.setattr(
        ckpt, "save", lambda *a, **k: (saves.append(k["progress"]["batches"]), real(*a, **k))
    )
    ck = str(tmp_path / "ck.npz")
    calibrate(
        model,
        x,
        method="minmax",
        batch_size=2,
        checkpoint=ck,
        checkpoint_every=1000,
        checkpoint_seconds=None,
        **QUIET,
    )
    assert saves == [5]  # the final one only
    saves.clear()
    calibrate(
        model,
        x,
        method="minmax",
        batch_size=2,
        checkpoint=ck,
        checkpoint_every=1000,
        checkpoint_seconds=1e-9,
        **QUIET,
    )
    assert saves == [1, 2, 3, 4, 5, 5]  # after every batch (time), then the final one


def test_a_second_signal_stops_at_once():
    from trtcal.pipeline.signals import DeferredSignals, Stopped

    with DeferredSignals() as s:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert s.hit and s.signum == signal.SIGTERM
        with pytest.raises(Stopped) as info:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.1)
        assert info.value.signum == signal.SIGHUP
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_temp_names_carry_the_pid():
    fd, name = _files.temp_path("/tmp/x.json")
    os.close(fd)
    os.unlink(name)
    assert _files.temp_tag() in os.path.basename(name) and str(os.getpid()) in _files.temp_tag()
