"""trtcal.torch hooks: every activation collected exactly, on the CPU and (gpu) on device
tensors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import trtcal  # noqa: E402
import trtcal.torch as ttorch  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(5)
        self.relu = torch.nn.ReLU()  # called twice per forward, like torchvision's ResNet blocks
        self.conv2 = torch.nn.Conv2d(5, 5, 3, padding=1)
        self.fc = torch.nn.Linear(5, 7)

    def forward(self, x):
        y = self.relu(self.bn(self.conv(x)))
        y = self.relu(self.conv2(y) + y)
        return self.fc(y.mean(dim=(2, 3)))


def _loader(rng, n_batches, device):
    for _ in range(n_batches):
        b = int(rng.integers(1, 6))
        x = torch.from_numpy(rng.standard_t(3, size=(b, 3, 9, 11)).astype(np.float32)).to(device)
        yield x, torch.zeros(b)


def _reference(net, batches):
    """Every activation of every batch, captured by hand, histogrammed in one go on the host."""
    acts = {}
    with torch.inference_mode():
        for x, _ in batches:
            c = net.conv(x)
            b = net.bn(c)
            r0 = net.relu(b)
            c2 = net.conv2(r0)
            r1 = net.relu(c2 + r0)
            f = net.fc(r1.mean(dim=(2, 3)))
            for k, v in {
                "conv": c,
                "bn": b,
                "relu": r0,
                "conv2": c2,
                "relu#1": r1,
                "fc": f,
            }.items():
                acts.setdefault(k, []).append(v.reshape(-1).cpu().numpy())
    return {
        k: trtcal.HistogramCollector(2048, device="cpu", name=k)
        .update(np.concatenate(v))
        .histogram()
        for k, v in acts.items()
    }


def _check(device, rng):
    net = Net().to(device).eval()
    batches = list(_loader(rng, 5, device))
    stats = ttorch.collect(net, batches)
    assert sorted(stats.names) == sorted(["conv", "bn", "relu", "conv2", "relu#1", "fc"])
    ref = _reference(net, batches)
    for name, h in stats.histograms().items():
        np.testing.assert_array_equal(h.counts, ref[name].counts, err_msg=name)
        assert h.range == ref[name].range and h.amax == ref[name].amax
    return stats


def test_hooks_collect_every_activation_exactly_cpu(rng):
    stats = _check("cpu", rng)
    assert all(c.device == "cpu" for c in stats.collectors.values())


def _input_reference(net, batches):
    acts = {}
    with torch.inference_mode():
        for x, _ in batches:
            r0 = net.relu(net.bn(net.conv(x)))
            r1 = net.relu(net.conv2(r0) + r0)
            for k, v in {"conv": x, "conv2": r0, "fc": r1.mean(dim=(2, 3))}.items():
                acts.setdefault(k, []).append(v.reshape(-1).cpu().numpy())
    return {
        k: trtcal.HistogramCollector(2048, device="cpu", name=k)
        .update(np.concatenate(v))
        .histogram()
        for k, v in acts.items()
    }


def _check_inputs(device, rng):
    net = Net().to(device).eval()
    batches = list(_loader(rng, 5, device))
    stats = ttorch.collect(net, batches, capture="inputs")
    assert sorted(stats.names) == ["conv", "conv2", "fc"]  # the quantizable layers' inputs
    ref = _input_reference(net, batches)
    for name, h in stats.histograms().items():
        np.testing.assert_array_equal(h.counts, ref[name].counts, err_msg=name)
        assert h.range == ref[name].range and h.amax == ref[name].amax


def test_hooks_collect_quantizable_inputs_exactly_cpu(rng):
    _check_inputs("cpu", rng)
    with pytest.raises(ValueError, match="capture"):
        ttorch.TorchCollector(Net(), capture="weights")


@pytest.mark.gpu
def test_hooks_collect_quantizable_inputs_exactly_gpu(rng):
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    _check_inputs("cuda", rng)


def test_layer_and_name_selection(rng):
    net = Net().eval()
    batches = list(_loader(rng, 2, "cpu"))
    s = ttorch.collect(net, batches, layers=[torch.nn.Conv2d])
    assert sorted(s.names) == ["conv", "conv2"]
    s = ttorch.collect(net, batches, names=["re:^(fc|bn)$"], inputs=True)
    assert sorted(s.names) == ["bn", "fc", "input"]
    with pytest.raises(ValueError, match="no module"):
        ttorch.collect(net, batches, names=["nothing*"])


def test_state_continues_across_calls(rng):
    net = Net().eval()
    batches = list(_loader(rng, 4, "cpu"))
    whole = ttorch.collect(net, batches)
    first = ttorch.collect(net, batches[:2])
    restored = trtcal.pipeline.collect.ActivationStats()
    restored.load_state_dict(first.state_dict())
    both = ttorch.collect(net, batches[2:], stats=restored)
    for n, h in whole.histograms().items():
        np.testing.assert_array_equal(both.histograms()[n].counts, h.counts, err_msg=n)


@pytest.mark.gpu
def test_hooks_collect_every_activation_exactly_gpu(rng):
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    stats = _check("cuda", rng)
    assert all(c.device.startswith("cuda") for c in stats.collectors.values())


@pytest.mark.gpu
def test_inplace_ops_after_hooks_are_read_in_time(rng):
    """ReLU(inplace=True) and `out += identity` overwrite activations after their hooks ran:
    the statistics must still be those of the values at hook time, on every batch."""
    torch = pytest.importorskip("torch")
    from trtcal import reference

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(8, 8, 3, padding=1)
            self.bn1 = torch.nn.BatchNorm2d(8)
            self.relu = torch.nn.ReLU(inplace=True)
            self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
            self.bn2 = torch.nn.BatchNorm2d(8)

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))  # bn1's output is overwritten by relu
            out = self.bn2(self.conv2(out))
            out += x  # bn2's output is overwritten by the residual add
            return self.relu(out)

    model = Block().cuda().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(p.shape).astype(np.float32)))
    oracle = {}

    def keep(name):
        def hook(mod, args, out):
            k = sum(1 for n in oracle if n == name or n.startswith(name + "#"))
            oracle.setdefault(name if k == 0 else f"{name}#{k}", []).append(
                out.detach().cpu().numpy().copy()
            )

        return hook

    # the oracle copies every output to the host inside its own hooks (registered first)
    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if n]
    batches = [
        torch.from_numpy(rng.standard_t(3, (4, 8, 9, 9)).astype(np.float32)).cuda()
        for _ in range(4)
    ]
    copies = []
    with ttorch.TorchCollector(model) as hooks:
        for b in batches:
            oracle.clear()
            hooks.forward(b)
            copies.append(dict(oracle))
        assert {"bn1", "bn2"} <= hooks._inplace
        got = {n: c.state_dict() for n, c in hooks.stats.collectors.items()}
    for h in handles:
        h.remove()
    for name, state in got.items():
        s = reference.histogram_state_new(2048, False)
        for per_batch in copies:
            for arr in per_batch[name]:
                reference.histogram_state_update(s, arr)
        np.testing.assert_array_equal(state["counts"], s["counts"], err_msg=name)
        assert state["amax"] == s["amax"], name


@pytest.mark.gpu
def test_fast_path_rechecks_tensors_that_change_kind(rng):
    """After the first forward, hooks only hold tensors and check them at the flush: an output
    that later becomes a strided (non-dense) view or a float16 tensor must still count exactly."""
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")

    class Pick(torch.nn.Module):
        mode = "plain"

        def forward(self, x):
            if self.mode == "strided":
                return x[:, ::2]
            if self.mode == "half":
                return x.half()
            return x * 1

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pick = Pick()

        def forward(self, x):
            return self.pick(x)

    model = Model().cuda().eval()
    batches = [
        torch.from_numpy(rng.standard_t(3, (3, 6, 7)).astype(np.float32)).cuda() for _ in range(4)
    ]
    seen = []
    with ttorch.TorchCollector(model) as hooks:
        for b, mode in zip(batches, ["plain", "plain", "strided", "half"]):
            model.pick.mode = mode
            hooks.forward(b)
            seen.append(
                {"plain": b, "strided": b[:, ::2], "half": b.half()}[mode]
                .float()
                .cpu()
                .numpy()
                .ravel()
            )
        assert "pick" in hooks._fast  # the fast path was taken from the second forward on
        got = hooks.stats.histograms()["pick"]
    want = trtcal.HistogramCollector(2048, device="cpu").update(np.concatenate(seen)).histogram()
    np.testing.assert_array_equal(got.counts, want.counts)
    assert got.range == want.range


def test_module_without_parameters_runs_where_its_input_is(rng):
    class Act(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = torch.nn.SiLU()

        def forward(self, x):
            return self.act(x)

    x = torch.from_numpy(rng.standard_normal((2, 5)).astype(np.float32))
    stats = ttorch.collect(Act(), [x])
    want = (
        trtcal.HistogramCollector(2048, device="cpu")
        .update(torch.nn.functional.silu(x).numpy())
        .histogram()
    )
    np.testing.assert_array_equal(stats.histograms()["act"].counts, want.counts)


def test_one_name_pattern_as_a_string(rng):
    net = Net().eval()
    xs = list(_loader(rng, 2, "cpu"))
    one = ttorch.collect(net, xs, names="conv*")
    listed = ttorch.collect(net, xs, names=["conv*"])
    assert one.names == listed.names == ["conv", "conv2"]


def test_cpu_bfloat16_activations_are_binned_exactly(rng):
    net = Net().eval().to(torch.bfloat16)
    xs = [(x.to(torch.bfloat16), y) for x, y in _loader(rng, 2, "cpu")]
    stats = ttorch.collect(net, xs, layers=[torch.nn.Conv2d])
    with torch.inference_mode():
        acts = torch.cat([net.conv(x).float().flatten() for x, _ in xs]).numpy()
    want = trtcal.HistogramCollector(2048, device="cpu")
    want.update(acts)
    np.testing.assert_array_equal(
        stats.collectors["conv"].histogram().counts, want.histogram().counts
    )
