"""Distributed calibration on N GPUs (torch.distributed, NCCL): speed-up over one GPU and exactness.

Launch with torchrun (any number of GPUs; needs PyTorch with CUDA and trtcal's CUDA build):

    torchrun --standalone --nproc-per-node 2 benchmarks/bench_distributed.py [--samples 16384]
    [--batch 256]

A model where inference dominates (torchvision's ResNet-50 with random weights, or a built-in
ResNet-style network without torchvision) runs over synthetic images; a forward hook feeds
every Conv2d / Linear output to a GPU :class:`trtcal.HistogramCollector` (2048 bins).

1. One GPU: rank 0 calibrates over ALL samples while the other ranks wait.
2. N GPUs: every rank calibrates over its shard (``shard_range(..., align=batch)``: whole
   batches, so each rank forms exactly the batches of the one-GPU run and the activations are
   identical), then ``all_reduce_collectors`` merges the states.

Rank 0 checks that the merged state equals the one-GPU state exactly (counts, range exponent,
amax, min, max, non-finite counts, for every tensor) and prints one JSON line: samples/s of
both runs, the speed-up, the merge time, and a SHA-256 of the state (the table's input).
Input batch ``b`` is drawn from a generator seeded with ``b``, on the GPU, so every rank can
make its own shard without reading the others'. Exits 1 when the states differ.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
try:  # an installed trtcal (with its CUDA build) first; the source tree only as a fallback
    import trtcal  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import trtcal  # noqa: E402
from trtcal.distributed import all_reduce_collectors, shard_range  # noqa: E402

STATE_KEYS = ("exponent", "amax", "min", "max", "finite", "nan", "posinf", "neginf")


def build_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "resnet50":
        try:
            import torchvision

            return torchvision.models.resnet50(weights=None)
        except ImportError:
            name = "convnet"
    if name != "convnet":
        raise SystemExit(f"unknown model {name!r}")
    nn = torch.nn

    def block(c_in, c_out, stride):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        )

    layers = [nn.Conv2d(3, 64, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [block(c, c_out, stride), block(c_out, c_out, 1)]
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000)]
    return nn.Sequential(*layers)


class Hooks:
    """Conv2d / Linear outputs -> one GPU histogram collector per module."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.where = "cpu" if device.type == "cpu" else f"cuda:{device.index}"
        self.collectors = {}
        self.enabled = True
        for qname, m in model.named_modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                self.collectors[qname] = None
                m.register_forward_hook(self._hook(qname))
        self.reset()

    def _hook(self, qname):
        def hook(mod, args, out):
            if self.enabled:
                stream = torch.cuda.current_stream() if self.device.type == "cuda" else None
                self.collectors[qname].update(out.detach(), stream=stream)

        return hook

    def reset(self) -> None:
        for n in self.collectors:
            self.collectors[n] = trtcal.HistogramCollector(2048, device=self.where, name=n)


def batch_input(b: int, n: int, size: int, device: torch.device, seed: int) -> torch.Tensor:
    g = torch.Generator(device=device.type if device.type == "cpu" else device)
    g.manual_seed(seed * 1_000_003 + b)
    return torch.randn((n, 3, size, size), generator=g, device=device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_batches(model, hooks, batches, args, device) -> float:
    """Seconds to calibrate over ``batches`` (global batch indices), states read back at the end."""
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            n = min(args.batch, args.samples - b * args.batch)
            model(batch_input(b, n, args.size, device, args.seed))
    for c in hooks.collectors.values():
        c.state_dict()  # waits for the collectors' streams
    sync(device)
    return time.perf_counter() - t0


def digest(collectors) -> str:
    h = hashlib.sha256()
    for n in sorted(collectors):
        s = collectors[n].state_dict()
        h.update(json.dumps([n] + [s[k] for k in STATE_KEYS]).encode())
        h.update(np.ascontiguousarray(s["counts"], dtype=np.int64).tobytes())
    return h.hexdigest()


def differences(a, b):
    out = []
    for n in sorted(a):
        sa, sb = a[n].state_dict(), b[n].state_dict()
        bad = [k for k in STATE_KEYS if sa[k] != sb[k]]
        if not np.array_equal(sa["counts"], sb["counts"]):
            bad.append("counts")
        if bad:
            out.append(f"{n}: {', '.join(bad)}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50", choices=["resnet50", "convnet"])
    p.add_argument("--samples", type=int, default=16384)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument(
        "--warmup", type=int, default=3, help="batches run before timing (not collected)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the JSON line to this file (rank 0)")
    p.add_argument(
        "--cpu", action="store_true", help="smoke test: Gloo and CPU collectors (no GPU needed)"
    )
    args = p.parse_args()

    local = int(os.environ.get("LOCAL_RANK", 0))
    timeout = datetime.timedelta(minutes=30)  # the other ranks wait while rank 0 runs alone
    if args.cpu:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=timeout)
    else:
        if not trtcal.cuda_available():
            raise SystemExit("trtcal was built without CUDA: build it with nvcc first")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = (
            True  # the same kernels for the same batch on every GPU
        )
    rank, world = dist.get_rank(), dist.get_world_size()

    model = build_model(args.model).to(device).eval()
    hooks = Hooks(model, device)
    n_batches = -(-args.samples // args.batch)

    # warm-up (cuDNN, allocator, trtcal kernels), not collected
    hooks.enabled = False
    with torch.inference_mode():
        for b in range(args.warmup):
            model(batch_input(b, args.batch, args.size, device, args.seed + 1))
    sync(device)
    t_infer = None
    if rank == 0:  # inference alone, for the share of time inference takes
        t_infer = run_batches(model, hooks, range(min(8, n_batches)), args, device) / min(
            8, n_batches
        )
    hooks.enabled = True
    with torch.inference_mode():  # the collector path once (kernels loaded, buffers made)
        model(batch_input(0, 2, args.size, device, args.seed + 1))
    hooks.reset()
    dist.barrier()

    # 1. one GPU over everything
    t_one, single = None, None
    if rank == 0:
        t_one = run_batches(model, hooks, range(n_batches), args, device)
        single = dict(hooks.collectors)
        hooks.reset()
    dist.barrier()

    # 2. every GPU over its shard, then the merge
    lo, hi = shard_range(args.samples, rank, world, align=args.batch)
    mine = range(lo // args.batch, -(-hi // args.batch)) if hi > lo else range(0)
    dist.barrier()
    t0 = time.perf_counter()
    t_local = run_batches(model, hooks, mine, args, device)
    t1 = time.perf_counter()
    all_reduce_collectors(hooks.collectors)
    t_merge = time.perf_counter() - t1
    t_all = torch.tensor(
        [time.perf_counter() - t0, t_local, t_merge], dtype=torch.float64, device=device
    )
    dist.all_reduce(t_all, op=dist.ReduceOp.MAX)
    t_n, t_local_max, t_merge_max = (float(v) for v in t_all.cpu())

    status = 0
    if rank == 0:
        diff = differences(single, hooks.collectors)
        d1, dn = digest(single), digest(hooks.collectors)
        result = {
            "bench": "distributed",
            "gpus": world,
            "device": "cpu" if args.cpu else torch.cuda.get_device_name(device),
            "model": type(model).__name__ if args.model == "resnet50" else args.model,
            "samples": args.samples,
            "batch": args.batch,
            "image": args.size,
            "tensors": len(hooks.collectors),
            "inference_only_ms_per_batch": round(t_infer * 1e3, 3),
            "one_gpu_ms_per_batch": round(t_one * 1e3 / n_batches, 3),
            "inference_share": round(t_infer * n_batches / t_one, 3),
            "one_gpu_samples_per_s": round(args.samples / t_one, 1),
            "n_gpu_samples_per_s": round(args.samples / t_n, 1),
            "speedup": round(t_one / t_n, 3),
            "n_gpu_slowest_rank_s": round(t_local_max, 4),
            "merge_ms": round(t_merge_max * 1e3, 3),
            "exact": not diff and d1 == dn,
            "state_sha256_one_gpu": d1,
            "state_sha256_n_gpu": dn,
            "differences": diff[:10],
            "torch": torch.__version__,
        }
        line = json.dumps(result)
        print(line, flush=True)
        if args.out:
            with open(args.out, "w") as f:
                f.write(line + "\n")
        status = 0 if result["exact"] else 1
    dist.barrier()
    dist.destroy_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
