"""Where the PyTorch-hook statistics overhead goes (ResNet-50, batch 32, H200): forward alone,
with no-op hooks, with hooks that only hold tensors, the flush's host time, the batched update's
GPU time, and the whole. Prints one table; used to steer trtcal.torch."""

import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])

import torch
import torchvision

import trtcal
import trtcal.torch as ttorch
from timing import time_torch


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
    hooks = ttorch.TorchCollector(model)
    hooks.forward(x)
    torch.cuda.synchronize()
    nbytes = sum(c.histogram().total for c in hooks.stats.collectors.values()) * 4
    rows.append((f"activations: {len(hooks.stats.names)} tensors, {nbytes / 1e9:.2f} GB", 0.0))
    rows.append(("hooks.forward, GPU time", time_torch(lambda: hooks.forward(x), 5, 20, False)))
    rows.append(("hooks.forward, host time", host_ms(lambda: hooks.forward(x))))
    flush = hooks.flush
    hooks.flush = lambda: setattr(hooks, "_pending", {})  # hold tensors, add nothing
    rows.append(("hooks without the statistics, GPU time", time_torch(lambda: hooks.forward(x), 5, 20, False)))
    rows.append(("hooks without the statistics, host time", host_ms(lambda: hooks.forward(x))))
    hooks.flush = flush
    # the batched update alone on held tensors
    pend = {}
    hooks.flush = lambda: pend.update(hooks._pending)
    hooks.forward(x)
    hooks.flush = flush
    torch.cuda.synchronize()
    rows.append(("stats.add (batched update), host time", host_ms(lambda: hooks.stats.add(pend))))
    rows.append(("stats.add (batched update), GPU time", time_torch(lambda: hooks.stats.add(pend), 5, 20, False)))
    hooks.remove()
    for name, ms in rows:
        print(f"{name:<60} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
