"""Distributed calibration: sharding, collector files, and merging across Gloo processes on the
CPU, compared for exact equality with one process that saw all the data."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from trtcal import HistogramCollector, MinMaxCollector
from trtcal import distributed as D

try:
    import torch  # noqa: F401
    import torch.distributed as _tdist

    HAVE_TORCH = _tdist.is_available()
except ImportError:
    HAVE_TORCH = False

needs_torch = pytest.mark.skipif(
    not HAVE_TORCH, reason="needs PyTorch with torch.distributed (pip install torch)"
)

STATE_KEYS = ("exponent", "amax", "min", "max", "finite", "nan", "posinf", "neginf")


# --------------------------------------------------------------------------------------------
# data and collectors shared by the single-process oracle and the ranks
# --------------------------------------------------------------------------------------------
def make_dataset(seed: int, n: int):
    """n samples of several tensors: heavy tails, outliers, scales spread over many powers of
    two (so shards end on different range exponents), all-zero and non-finite samples."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        scale = float(np.exp2(rng.integers(-12, 13)))
        a = (rng.standard_t(3, size=(3, 7, 13)) * scale).astype(np.float32)
        b = rng.laplace(0, 1, size=(3, 97)).astype(np.float32)
        if rng.random() < 0.1:
            b[0, rng.integers(97)] = rng.choice([-1, 1]) * np.float32(rng.uniform(1e3, 1e6))
        c = (
            np.zeros((3, 11), np.float32)
            if rng.random() < 0.7
            else rng.standard_cauchy((3, 11)).astype(np.float32)
        )
        d = (rng.standard_normal((3, 5)) * scale).astype(np.float32)
        if rng.random() < 0.2:
            d.flat[rng.integers(d.size)] = rng.choice([np.nan, np.inf, -np.inf])
        out.append({"a": a, "b": b, "c": c, "d": d})
    return out


def make_collectors(extra: bool = False, device=None):
    cs = {
        "a": HistogramCollector(2048, name="a", device=device),
        "b": HistogramCollector(1000, signed=True, name="b", device=device),
        "c": HistogramCollector(511, name="c", device=device),
        "d": HistogramCollector(64, signed=True, name="d", device=device),
        "a.mm": MinMaxCollector(axis=1, name="a.mm", device=device),
        "d.mm": MinMaxCollector(name="d.mm", device=device),
        "c.mm": MinMaxCollector(axis=-1, name="c.mm", device=device),
    }
    if extra:
        cs["zzz"] = HistogramCollector(128, name="zzz", device=device)
    return cs


def collect(collectors, samples, batch: int, to=None):
    """Updates in batches; ``to`` moves each batch (e.g. to a CUDA tensor)."""
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        for key in ("a", "b", "c", "d"):
            x = np.concatenate([s[key] for s in chunk])
            if to is not None:
                x = to(x)
            collectors[key].update(x)
            mm = f"{key}.mm"
            if mm in collectors:
                collectors[mm].update(x)
    return collectors


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for n in want:
        g, w = got[n].state_dict(), want[n].state_dict()
        if isinstance(want[n], HistogramCollector):
            for k in STATE_KEYS:
                assert g[k] == w[k], (n, k, g[k], w[k])
                assert type(g[k]) is type(w[k]) or {type(g[k]), type(w[k])} <= {int, float}, (n, k)
            assert np.array_equal(g["counts"], w["counts"]), n
            assert g["counts"].dtype == np.int64
        else:
            assert g["channels"] == w["channels"], n
            for k in ("nan", "posinf", "neginf"):
                assert g[k] == w[k], (n, k)
            if w["channels"] is not None:
                assert np.array_equal(g["min"], w["min"], equal_nan=True), n
                assert np.array_equal(g["max"], w["max"], equal_nan=True), n


# --------------------------------------------------------------------------------------------
# sharding (no torch needed)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 1001])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("align", [1, 4, 16])
def test_shards_cover_every_sample_once(n, world, align):
    shards = [D.shard_indices(n, r, world, align) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))  # contiguous, in rank order
    sizes = [len(s) for s in shards]
    for s in shards[:-1]:
        if len(s):
            assert s.start % align == 0 and (s.stop % align == 0 or s.stop == n)
    blocks = [-(-k // align) for k in sizes]
    assert max(blocks) - min(blocks) <= 1


def test_shard_iterable_is_strided_and_complete():
    items = list(range(23))
    parts = [list(D.shard_iterable(iter(items), r, 4)) for r in range(4)]
    assert sorted(x for p in parts for x in p) == items
    assert parts[1] == [1, 5, 9, 13, 17, 21]


def test_shard_arguments_are_checked():
    with pytest.raises(ValueError, match="rank"):
        D.shard_indices(10, 2, 2)
    with pytest.raises(ValueError, match="world_size"):
        D.shard_indices(10, 0, 0)
    with pytest.raises(ValueError, match="align"):
        D.shard_indices(10, 0, 1, align=0)
    assert D.rank_path("/x/ckpt.npz", 1, 4) == "/x/ckpt.rank1-of-4.npz"


@pytest.mark.parametrize("world", [2, 3, 5])
def test_merging_shards_equals_one_pass(rng, world):
    data = make_dataset(int(rng.integers(2**31)), 37)
    want = collect(make_collectors(), data, 5)
    parts = [
        collect(make_collectors(), [data[i] for i in D.shard_indices(len(data), r, world)], 3)
        for r in range(world)
    ]
    order = rng.permutation(world)
    got = D.merge_collectors([parts[i] for i in order])
    assert_same(got, want)


# --------------------------------------------------------------------------------------------
# collector files and `trtcal merge`
# --------------------------------------------------------------------------------------------
def test_states_file_round_trip_is_exact(rng, tmp_path):
    cs = collect(make_collectors(), make_dataset(int(rng.integers(2**31)), 9), 4)
    cs["empty.h"] = HistogramCollector(100, name="empty.h")
    cs["empty.mm"] = MinMaxCollector(axis=0, name="empty.mm")
    path = D.save_states(str(tmp_path / "s.npz"), cs, meta={"rank": 3})
    got, info = D.load_states(path)
    assert info == {"format": D.STATES_FORMAT, "meta": {"rank": 3}}
    assert_same(got, cs)
    with np.load(path, allow_pickle=False) as z:  # no pickles inside
        assert set(z.files) == {"meta", "counts"}


def test_load_states_reads_calibrate_checkpoints(rng, tmp_path):
    from trtcal.pipeline import checkpoint as ckpt
    from trtcal.pipeline.collect import ActivationStats

    assert D.CHECKPOINT_FORMAT == ckpt.FORMAT
    data = make_dataset(int(rng.integers(2**31)), 6)
    stats = ActivationStats(["a", "c"], bins=2048)
    for s in data:
        stats.add({"a": s["a"], "c": s["c"]})
    ckpt.save(
        str(tmp_path / "ckpt.npz"),
        config={"bins": 2048},
        stats_state=stats.state_dict(),
        progress={"cursor": 6, "samples": 6, "batches": 6, "complete": True},
    )
    got, info = D.load_states(str(tmp_path / "ckpt.npz"))
    assert info["format"] == ckpt.FORMAT and info["progress"]["complete"] is True
    assert_same(got, stats.collectors)


def test_load_states_rejects_other_files(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a trtcal collector-state file"):
        D.load_states(str(p))
    (tmp_path / "t.txt").write_text("TRT-100300-EntropyCalibration2\n")
    with pytest.raises(ValueError, match="not a trtcal"):
        D.load_states(str(tmp_path / "t.txt"))
    with pytest.raises(FileNotFoundError):
        D.load_states(str(tmp_path / "missing.npz"))


def _cli(*args, cwd=None):
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.path.join(here, "python") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "trtcal", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_merge_command_combines_files_exactly(rng, tmp_path):
    data = make_dataset(int(rng.integers(2**31)), 29)
    want = collect(make_collectors(), data, 7)
    paths = []
    for r in range(3):
        part = collect(make_collectors(), [data[i] for i in D.shard_indices(len(data), r, 3)], 2)
        paths.append(D.save_states(str(tmp_path / f"part{r}.npz"), part))
    out = tmp_path / "merged.npz"
    res = _cli("merge", *paths, "--out-state", str(out))
    assert res.returncode == 0, res.stderr
    got, _ = D.load_states(str(out))
    assert_same(got, want)


def test_merge_command_names_the_file_that_differs(rng, tmp_path):
    data = make_dataset(int(rng.integers(2**31)), 4)
    a = D.save_states(str(tmp_path / "a.npz"), collect(make_collectors(), data, 2))
    b = D.save_states(str(tmp_path / "b.npz"), collect(make_collectors(extra=True), data, 2))
    res = _cli("merge", a, b, "--out-state", str(tmp_path / "m.npz"))
    assert res.returncode == 1
    assert "b.npz" in res.stderr and "zzz" in res.stderr
    assert not (tmp_path / "m.npz").exists()


# --------------------------------------------------------------------------------------------
# Gloo process groups on the CPU
# --------------------------------------------------------------------------------------------
N_SAMPLES = 41


def _partitions(world: int):
    """{case: one list of sample indices per rank}: even, uneven, empty ranks, strided."""
    n = N_SAMPLES
    cases = {
        "even": [list(D.shard_indices(n, r, world)) for r in range(world)],
        "aligned": [list(D.shard_indices(n, r, world, align=4)) for r in range(world)],
        "uneven": [list(range(3))]
        + [[3 + i for i in D.shard_indices(n - 3, r, world - 1)] for r in range(world - 1)],
        "last_empty": [list(D.shard_indices(n, r, world - 1)) for r in range(world - 1)] + [[]],
        "first_empty": [[]] + [list(D.shard_indices(n, r, world - 1)) for r in range(world - 1)],
        "strided": [list(D.shard_iterable(range(n), r, world)) for r in range(world)],
        "all_on_one": [list(range(n)) if r == world // 2 else [] for r in range(world)],
    }
    return cases


def _worker(rank: int, world: int, init_file: str, seed: int, outdir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        data = make_dataset(seed, N_SAMPLES)
        for case, parts in _partitions(world).items():
            cs = collect(make_collectors(), [data[i] for i in parts[rank]], 3 + rank)
            D.all_reduce_collectors(cs)
            D.save_states(os.path.join(outdir, f"{case}.rank{rank}.npz"), cs)
        # differing tensors: rank 1 has one more
        try:
            D.all_reduce_collectors(make_collectors(extra=rank == 1))
        except ValueError as exc:
            _note(outdir, f"mismatch.rank{rank}", str(exc))
        # a rank that fails: every rank hears about it; files written before stay
        ckpt = D.rank_path(os.path.join(outdir, "ckpt.npz"), rank, world)
        try:
            with D.RankGuard("calibration"):
                D.save_states(ckpt, make_collectors())
                if rank == world - 1:
                    raise ValueError("bad sample 'img_0042.jpg': NaN or Inf in activation 'conv1'")
        except D.RankFailedError as exc:
            _note(
                outdir,
                f"failure.rank{rank}",
                f"{exc}|{sorted(exc.failures)}|{type(exc.__cause__).__name__}",
            )
        # a clean guard raises nothing
        with D.RankGuard("calibration"):
            pass
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _note(outdir: str, name: str, text: str) -> None:
    with open(os.path.join(outdir, name + ".txt"), "w") as f:
        f.write(text)


def _spawn(world: int, tmp_path, seed: int) -> None:
    import torch.multiprocessing as mp

    mp.spawn(
        _worker, args=(world, str(tmp_path / "init"), seed, str(tmp_path)), nprocs=world, join=True
    )


@pytest.fixture(scope="module", params=[2, 3], ids=["world2", "world3"])
def gloo_run(request, tmp_path_factory):
    if not HAVE_TORCH:
        pytest.skip("needs PyTorch with torch.distributed (pip install torch)")
    world = request.param
    seed = int(np.random.SeedSequence().entropy % (2**31))
    print(f"gloo run seed {seed}")
    tmp = tmp_path_factory.mktemp(f"gloo{world}")
    _spawn(world, tmp, seed)
    return world, seed, tmp


@needs_torch
@pytest.mark.parametrize(
    "case", ["even", "aligned", "uneven", "last_empty", "first_empty", "strided", "all_on_one"]
)
def test_gloo_merge_equals_one_process(gloo_run, case):
    world, seed, tmp = gloo_run
    data = make_dataset(seed, N_SAMPLES)
    want = collect(make_collectors(), data, 8)
    parts = _partitions(world)[case]
    assert sorted(i for p in parts for i in p) == list(range(N_SAMPLES))
    for r in range(world):  # every rank holds the final state
        got, _ = D.load_states(str(tmp / f"{case}.rank{r}.npz"))
        assert_same(got, want)


@needs_torch
def test_gloo_mismatched_tensors_name_the_rank(gloo_run):
    world, _, tmp = gloo_run
    for r in range(world):
        msg = (tmp / f"mismatch.rank{r}.txt").read_text()
        assert "rank 1 has extra 'zzz'" in msg, msg


@needs_torch
def test_gloo_failing_rank_stops_every_rank(gloo_run):
    world, _, tmp = gloo_run
    bad = world - 1
    for r in range(world):
        msg = (tmp / f"failure.rank{r}.txt").read_text()
        assert f"failed on rank {bad}: rank {bad} on " in msg, msg
        assert "img_0042.jpg" in msg and f"|[{bad}]|" in msg
        assert msg.endswith("ValueError" if r == bad else "NoneType")
        assert (tmp / f"ckpt.rank{r}-of-{world}.npz").exists()  # checkpoints intact


@needs_torch
def test_without_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="init_process_group"):
        D.all_reduce_collectors(make_collectors())
