"""(usage: profile_hooks.py [outputs|inputs]) Where the PyTorch-hook statistics overhead goes
(ResNet-50, batch 32, H200): forward alone,
with no-op hooks, with hooks that only hold tensors, the flush's host time, the batched update's
GPU time, and the whole. Prints one table; used to steer trtcal.torch."""

import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])

import torch
import torchvision
from timing import time_torch

import trtcal.torch as ttorch


def host_ms(fn, iters=20):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / iters * 1e3


def main():
    model = torchvision.models.resnet50().cuda().eval()
    x = torch.randn(32, 3, 224, 224, device="cuda")
    rows = []
    with torch.inference_mode():
        rows.append(("forward, GPU time", time_torch(lambda: model(x), 10, 30, False)))
        rows.append(("forward, host time to queue", host_ms(lambda: model(x))))
    capture = sys.argv[1] if len(sys.argv) > 1 else "outputs"
    hooks = ttorch.TorchCollector(model, capture=capture)
    hooks.forward(x)
    torch.cuda.synchronize()
    nbytes = sum(c.histogram().total for c in hooks.stats.collectors.values()) * 4
    rows.append((f"activations: {len(hooks.stats.names)} tensors, {nbytes / 1e9:.2f} GB", 0.0))
    rows.append(("hooks.forward, GPU time", time_torch(lambda: hooks.forward(x), 5, 20, False)))
    rows.append(("hooks.forward, host time", host_ms(lambda: hooks.forward(x))))
    launch = hooks._launch
    hooks._launch = lambda items: None  # hooks and bookkeeping, no statistics
    rows.append(
        (
            "hooks without the statistics, GPU time",
            time_torch(lambda: hooks.forward(x), 5, 20, False),
        )
    )
    rows.append(("hooks without the statistics, host time", host_ms(lambda: hooks.forward(x))))
    calls = []
    hooks._launch = lambda items: calls.append(list(items))
    hooks.forward(x)
    hooks._launch = launch
    torch.cuda.synchronize()
    sizes = [len(c) for c in calls]
    rows.append(
        (
            f"launch groups per forward: {len(calls)} (tensors {sum(sizes)}, largest {max(sizes)})",
            0.0,
        )
    )
    big = max(calls, key=len)
    rows.append(("largest batched launch, host time", host_ms(lambda: launch(big))))
    rows.append(("largest batched launch, GPU time", time_torch(lambda: launch(big), 5, 20, False)))
    one = [calls[0][0]]
    rows.append(("one immediate launch, host time", host_ms(lambda: launch(one))))
    rows.extend(_kernel_split(lambda: hooks.forward(x)))
    rows.extend(_graphs(model, x, hooks))  # removes the hooks
    for name, ms in rows:
        print(f"{name:<60} {ms:8.3f} ms")


def _kernel_split(fn, iters=5):
    """GPU time per forward of trtcal's kernels and of the others, from CUPTI (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    ours = other = 0.0
    per_kernel = []
    for e in prof.key_averages():
        us = getattr(e, "device_time_total", None)
        if us is None:
            us = e.cuda_time_total
        if any(k in e.key for k in ("histogram", "minmax", "trtcal")):
            ours += us
            per_kernel.append(
                (f"  {e.key.split('(')[0][-48:]} x{e.count // iters} per forward", us / iters / 1e3)
            )
        else:
            other += us
    return [
        ("hooked forward: trtcal kernels' GPU time (CUPTI)", ours / iters / 1e3),
        *sorted(per_kernel),
        ("hooked forward: the model's kernels' GPU time (CUPTI)", other / iters / 1e3),
    ]


def _graphs(model, x, hooks):
    """The hooked forward, then (hooks removed) the forward, captured once in a CUDA graph and
    replayed: what is left of the overhead when the host is out of the way."""
    rows = []
    static = x.clone()
    runs = (("hooked forward", lambda: hooks.forward(static)), ("forward", lambda: model(static)))
    with torch.no_grad():
        for label, fn in runs:
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):
                        fn()
                torch.cuda.current_stream().wait_stream(side)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    fn()
                rows.append(
                    (
                        f"{label} as a CUDA graph replay, GPU time",
                        time_torch(g.replay, 5, 20, False),
                    )
                )
            except Exception as exc:  # noqa: BLE001
                rows.append(
                    (
                        f"{label}: CUDA graph capture failed: {type(exc).__name__}: "
                        f"{str(exc)[:160]}",
                        0.0,
                    )
                )
            hooks.remove()
    return rows


if __name__ == "__main__":
    main()
