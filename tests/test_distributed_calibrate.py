"""`trtcal calibrate --distributed` end to end on the CPU: two Gloo ranks (spawned, and under
torchrun) write the same table and cache, byte for byte, as one process; a failing rank stops
both with its name; resume redoes only what is missing; shards merged by `trtcal merge`."""

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

from nan_model import write_log_relu_model  # noqa: E402

import trtcal  # noqa: E402
from trtcal import calibrate  # noqa: E402
from trtcal import distributed as D  # noqa: E402
from trtcal.pipeline import checkpoint as ckpt  # noqa: E402
from trtcal.pipeline.demo import build_model  # noqa: E402

try:
    import torch.distributed as _tdist

    HAVE_TORCH = _tdist.is_available()
except ImportError:
    HAVE_TORCH = False

pytestmark = pytest.mark.skipif(
    not HAVE_TORCH, reason="needs PyTorch with torch.distributed (pip install torch)"
)

QUIET = dict(progress=False, log=lambda s: None)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHOD = "all" if hasattr(trtcal, "compute_amax") else "minmax"


def _outputs(d: str, tag: str):
    return dict(out_table=os.path.join(d, f"{tag}.json"), out_cache=os.path.join(d, f"{tag}.cache"))


def _hist_dump(res) -> dict:
    return {
        n: [h.counts.tolist(), h.range, h.amax, h.min, h.max, h.nan, h.posinf, h.neginf]
        for n, h in res.histograms.items()
    }


def _worker(rank: int, world: int, d: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{d}/init", rank=rank, world_size=world)
    try:
        model, logm = os.path.join(d, "cnn.onnx"), os.path.join(d, "log.onnx")
        for case, batch in (("uneven", 8), ("one_batch", 8)):
            x = np.load(os.path.join(d, f"{case}.npy"))
            res = calibrate(
                model,
                x,
                method=METHOD,
                batch_size=batch,
                distributed=True,
                checkpoint=os.path.join(d, f"{case}.ckpt.npz"),
                **_outputs(d, f"{case}.dist"),
                **QUIET,
            )
            with open(os.path.join(d, f"{case}.rank{rank}.json"), "w") as f:
                json.dump(
                    {
                        "hists": _hist_dump(res),
                        "samples": res.samples,
                        "batches": res.batches,
                        "amax": res.amax,
                        "tables": sorted(res.tables),
                        "files": sorted(res.files),
                    },
                    f,
                )
        # a bad sample on the last rank: every rank stops, naming it
        x = np.load(os.path.join(d, "bad.npy"))
        ck = os.path.join(d, "bad.ckpt.npz")
        try:
            calibrate(
                logm,
                x,
                method="minmax",
                batch_size=4,
                distributed=True,
                checkpoint=ck,
                checkpoint_every=1,
                **QUIET,
            )
        except D.RankFailedError as exc:
            with open(os.path.join(d, f"bad.rank{rank}.txt"), "w") as f:
                f.write(str(exc))
        mine = D.rank_path(ck, rank, world)
        shutil.copyfile(mine, mine + ".after-failure")
        # resume, skipping the bad sample: only the failed rank has work left
        res = calibrate(
            logm,
            x,
            method="minmax",
            batch_size=4,
            distributed=True,
            checkpoint=ck,
            resume=True,
            skip_bad=True,
            **_outputs(d, "bad.dist"),
            **QUIET,
        )
        with open(os.path.join(d, f"bad.rank{rank}.json"), "w") as f:
            json.dump({"hists": _hist_dump(res), "samples": res.samples, "skipped": res.skipped}, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    import torch.multiprocessing as mp

    d = tmp_path_factory.mktemp("distcal")
    fixed = os.environ.get("TRTCAL_TEST_SEED")
    seed = int(fixed) if fixed else int(np.random.SeedSequence().entropy % (2**32))
    print(f"spawned fixture: rng seed {seed} (TRTCAL_TEST_SEED={seed} replays it)")
    rng = np.random.default_rng(seed)
    build_model(str(d / "cnn.onnx"), seed=3, size=12, width=6)
    write_log_relu_model(str(d / "log.onnx"))
    for case, n in (("uneven", 37), ("one_batch", 5)):
        x = rng.standard_t(3, size=(n, 3, 12, 12)).astype(np.float32)
        x.reshape(-1)[rng.integers(0, x.size, size=3)] *= 40
        np.save(d / f"{case}.npy", x)
    x = rng.uniform(0.5, 3.0, size=(17, 4)).astype(np.float32)
    x[13, 1] = -1.0  # rank 1's shard (positions 8..16 with batches of 4 over 2 ranks)
    np.save(d / "bad.npy", x)
    mp.spawn(_worker, args=(2, str(d)), nprocs=2, join=True)
    return d


@pytest.mark.parametrize("case,batch", [("uneven", 8), ("one_batch", 8)])
def test_two_ranks_write_the_table_of_one_process(spawned, case, batch):
    d = str(spawned)
    x = np.load(os.path.join(d, f"{case}.npy"))
    one = calibrate(
        os.path.join(d, "cnn.onnx"),
        x,
        method=METHOD,
        batch_size=batch,
        **_outputs(d, f"{case}.one"),
        **QUIET,
    )
    for r in range(2):  # every rank holds the final statistics and thresholds
        got = json.load(open(os.path.join(d, f"{case}.rank{r}.json")))
        assert got["hists"] == json.loads(json.dumps(_hist_dump(one)))
        assert got["amax"] == json.loads(json.dumps(one.amax))
        assert (got["samples"], got["batches"]) == (one.samples, one.batches)
        assert got["tables"] == sorted(one.tables)
        assert bool(got["files"]) == (r == 0)  # only rank 0 writes
    for ext in ("json", "cache"):
        paths = [os.path.join(d, f"{case}.{tag}.{ext}") for tag in ("one", "dist")]
        if METHOD == "all":
            paths = [p.replace(f".{ext}", f".entropy.{ext}") for p in paths]
        a, b = (open(p, "rb").read() for p in paths)
        assert a == b, ext  # byte for byte
    for r in range(2):  # per-rank checkpoints, complete
        c = ckpt.load(os.path.join(d, f"{case}.ckpt.rank{r}-of-2.npz"))
        assert c["progress"]["complete"]


def test_failing_rank_stops_both_and_resume_finishes_exactly(spawned):
    d = str(spawned)
    for r in range(2):
        msg = open(os.path.join(d, f"bad.rank{r}.txt")).read()
        assert "calibration failed on rank 1: rank 1 on " in msg, msg
        assert "arrays[13]" in msg and "activation 'l'" in msg
    c0 = ckpt.load(os.path.join(d, "bad.ckpt.rank0-of-2.npz.after-failure"))["progress"]
    c1 = ckpt.load(os.path.join(d, "bad.ckpt.rank1-of-2.npz.after-failure"))["progress"]
    assert c0["complete"] and c0["samples"] == 8  # the healthy rank finished its shard
    assert (
        not c1["complete"] and c1["samples"] == 4
    )  # the failed rank kept the batch before the bad one
    x = np.load(os.path.join(d, "bad.npy"))
    clean = calibrate(
        os.path.join(d, "log.onnx"),
        np.delete(x, 13, axis=0),
        method="minmax",
        batch_size=4,
        **QUIET,
    )
    for r in range(2):
        got = json.load(open(os.path.join(d, f"bad.rank{r}.json")))
        assert got["samples"] == 16 and got["skipped"] == [
            ["arrays[13]", "NaN or Inf in activation 'l'"]
        ]
        # the skipped row changes later batches' composition, not the statistics
        assert got["hists"] == json.loads(json.dumps(_hist_dump(clean)))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _trtcal(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "trtcal", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        check=False,
    )


def test_torchrun_cli_matches_one_process(tmp_path, rng):
    build_model(str(tmp_path / "cnn.onnx"), seed=5, size=12, width=6)
    x = rng.laplace(0, 1, size=(29, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    common = ["cnn.onnx", "--data", "x.npy", "--method", METHOD, "--batch-size", "4", "-q"]
    one = _trtcal(
        "calibrate", *common, "--out-table", "one.json", "--out-cache", "one.cache", cwd=tmp_path
    )
    assert one.returncode == 0, one.stderr
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "trtcal",
            "calibrate",
            *common,
            "--distributed",
            "--out-table",
            "dist.json",
            "--out-cache",
            "dist.cache",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    names = ["one", "dist"]
    for ext in ("json", "cache"):
        files = [
            tmp_path / (f"{n}.entropy.{ext}" if METHOD == "all" else f"{n}.{ext}") for n in names
        ]
        assert files[0].read_bytes() == files[1].read_bytes(), ext
    assert sorted(p.name for p in tmp_path.glob("cnn.trtcal-ckpt.rank*")) == [
        "cnn.trtcal-ckpt.rank0-of-2.npz",
        "cnn.trtcal-ckpt.rank1-of-2.npz",
    ]


def test_shards_on_separate_machines_merge_to_the_table_of_one_process(tmp_path, rng):
    build_model(str(tmp_path / "cnn.onnx"), seed=7, size=12, width=6)
    x = rng.standard_t(2, size=(23, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    common = ["cnn.onnx", "--data", "x.npy", "--method", "minmax", "--batch-size", "4", "-q"]
    for r in range(3):
        res = _trtcal(
            "calibrate", *common, "--shard", f"{r}/3", "--checkpoint", "ck.npz", cwd=tmp_path
        )
        assert res.returncode == 0, res.stderr
    one = _trtcal(
        "calibrate", *common, "--out-table", "one.json", "--out-cache", "one.cache", cwd=tmp_path
    )
    assert one.returncode == 0, one.stderr
    shards = [f"ck.rank{r}-of-3.npz" for r in range(3)]
    m = _trtcal(
        "merge",
        *shards,
        "--method",
        "minmax",
        "--out-cache",
        "merged.cache",
        "--out-table",
        "merged.json",
        cwd=tmp_path,
    )
    assert m.returncode == 0, m.stderr
    assert (tmp_path / "merged.cache").read_bytes() == (tmp_path / "one.cache").read_bytes()
    got = json.loads((tmp_path / "merged.json").read_text())
    want = json.loads((tmp_path / "one.json").read_text())
    assert got["tensors"] == want["tensors"] and len(want["tensors"]) > 3
    assert got["provenance"]["num_samples"] == 23 and got["provenance"]["method"] == "minmax"
    dup = _trtcal("merge", shards[0], shards[0], "--out-state", "m.npz", cwd=tmp_path)
    assert dup.returncode == 1 and "twice" in dup.stderr
