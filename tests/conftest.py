"""Markers decide what runs where: `gpu` needs the CUDA build and a GPU, `tensorrt` the
tensorrt module, `plugin` the TensorRT plugin library. Each skips here with a reason."""

import importlib.util
import os

import numpy as np
import pytest

import trtcal


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def pytest_collection_modifyitems(config, items):
    gpu_ok = trtcal.cuda_available()
    gpu_skip = pytest.mark.skip(reason="needs a CUDA GPU and trtcal built with nvcc (trtcal.cuda_available() is False)")
    trt_skip = pytest.mark.skip(reason="needs the tensorrt Python module (TensorRT cannot be installed on this machine)")
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
