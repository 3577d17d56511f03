"""Distributed merge over NCCL with GPU collectors (needs 2+ GPUs and trtcal's CUDA build):
every rank ends with the state one GPU collects over all the data, exactly."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_distributed import (
    N_SAMPLES,
    _partitions,
    assert_same,
    collect,
    make_collectors,
    make_dataset,
)

from trtcal import distributed as D

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not (
            torch.cuda.is_available()
            and torch.cuda.device_count() >= 2
            and torch.distributed.is_nccl_available()
        ),
        reason="needs 2 CUDA GPUs visible to PyTorch with NCCL",
    ),
]


def _worker(rank: int, world: int, init_file: str, seed: int, outdir: str) -> None:
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        device_id=torch.device("cuda", rank),
    )
    try:
        data = make_dataset(seed, N_SAMPLES)
        to = lambda x: torch.from_numpy(x).cuda()  # noqa: E731
        if rank == 0:  # one GPU over all the data
            D.save_states(
                os.path.join(outdir, "single.npz"),
                collect(make_collectors(device="cuda:0"), data, 5, to),
            )
        for case, parts in _partitions(world).items():
            cs = collect(
                make_collectors(device=f"cuda:{rank}"), [data[i] for i in parts[rank]], 3 + rank, to
            )
            D.all_reduce_collectors(cs)
            D.save_states(os.path.join(outdir, f"{case}.rank{rank}.npz"), cs)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def nccl_run(tmp_path_factory):
    import torch.multiprocessing as mp

    world = min(torch.cuda.device_count(), 4)
    seed = int(np.random.SeedSequence().entropy % (2**31))
    print(f"nccl run seed {seed}")
    tmp = tmp_path_factory.mktemp("nccl")
    mp.spawn(_worker, args=(world, str(tmp / "init"), seed, str(tmp)), nprocs=world, join=True)
    return world, seed, tmp


@pytest.mark.parametrize(
    "case", ["even", "aligned", "uneven", "last_empty", "first_empty", "strided", "all_on_one"]
)
def test_nccl_merge_equals_one_gpu_and_the_cpu_reference(nccl_run, case):
    world, seed, tmp = nccl_run
    single, _ = D.load_states(str(tmp / "single.npz"))
    cpu = collect(make_collectors(), make_dataset(seed, N_SAMPLES), 8)
    assert_same(single, cpu)
    for r in range(world):
        got, _ = D.load_states(str(tmp / f"{case}.rank{r}.npz"))
        assert_same(got, single)
