"""(usage: profile_hooks.py [outputs|inputs]) Where the PyTorch-hook statistics overhead goes (ResNet-50, batch 32, H200): forward alone,
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
    rows.append(("hooks without the statistics, GPU time", time_torch(lambda: hooks.forward(x), 5, 20, False)))
    rows.append(("hooks without the statistics, host time", host_ms(lambda: hooks.forward(x))))
    calls = []
    hooks._launch = lambda items: calls.append(list(items))
    hooks.forward(x)
    hooks._launch = launch
    torch.cuda.synchronize()
    sizes = [len(c) for c in calls]
    rows.append((f"launch groups per forward: {len(calls)} (tensors {sum(sizes)}, largest {max(sizes)})", 0.0))
    big = max(calls, key=len)
    rows.append(("largest batched launch, host time", host_ms(lambda: launch(big))))
    rows.append(("largest batched launch, GPU time", time_torch(lambda: launch(big), 5, 20, False)))
    one = [calls[0][0]]
    rows.append(("one immediate launch, host time", host_ms(lambda: launch(one))))
    hooks.remove()
    for name, ms in rows:
        print(f"{name:<60} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
