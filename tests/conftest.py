"""Markers decide what runs where: `gpu` needs the CUDA build and a GPU, `tensorrt` the
tensorrt module, `plugin` the TensorRT plugin library. Each skips here with a reason."""

import importlib.util
import os

import numpy as np
import pytest

import trtcal


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _gpu_skip_reason() -> str:
    """Why the GPU tests cannot run here, in the words that fit this machine."""
    if not _has_module("trtcal._C"):
        return (
            "this trtcal has no compiled CUDA kernels (built without nvcc, or imported from "
            "a source tree): install the CUDA toolkit and reinstall on a GPU machine"
        )
    return (
        "trtcal's CUDA kernels are built but no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES)"
    )


def pytest_collection_modifyitems(config, items):
    gpu_ok = trtcal.cuda_available()
    gpu_skip = pytest.mark.skip(reason=_gpu_skip_reason())
    trt_skip = pytest.mark.skip(
        reason="the tensorrt Python module is not installed "
        "(pip install tensorrt, from PyPI or NVIDIA's index, on a machine with an NVIDIA GPU)"
    )
    for item in items:
        if "gpu" in item.keywords and not gpu_ok:
            item.add_marker(gpu_skip)
        if "tensorrt" in item.keywords and not _has_module("tensorrt"):
            item.add_marker(trt_skip)


@pytest.fixture
def rng():
    """A fresh generator per test: every run draws new inputs; the seed is printed on failure
    (TRTCAL_TEST_SEED=<seed> replays it)."""
    fixed = os.environ.get("TRTCAL_TEST_SEED")
    seed = int(fixed) if fixed else int(np.random.SeedSequence().entropy % (2**32))
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)
