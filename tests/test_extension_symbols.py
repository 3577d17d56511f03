"""The CUDA extension keeps what it links from static archives private.

Where the toolchain links libstdc++ statically (the GPU machine's g++ does), exported copies of
its symbols interpose with the libstdc++ that PyTorch and CuPy load, and a C++ exception's
message crashed the process in a mix of the two (a segfault instead of a RuntimeError). The
same holds for cudart_static and the kernels. `-Wl,--exclude-libs,ALL` keeps them local.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

import trtcal

# Functions of the C++ standard library, the CUDA runtime and trtcal's kernels (Itanium-mangled
# prefixes), defined strongly (T/D/B/R: code and data of a library). Weak and unique definitions
# (W/V/u) are the module's own instantiations of std templates (vague linkage; libstdc++'s
# headers give them default visibility): identical in every library, so harmless.
FORBIDDEN = (
    "_ZNSt",
    "_ZNKSt",
    "_ZSt",
    "_ZNSo",
    "_ZNSi",
    "_ZN9__gnu_cxx",
    "cuda",
    "__cuda",
    "_ZN6trtcal",
)


def _extension_path() -> str:
    try:
        from trtcal import _C
    except ImportError:
        pytest.skip("trtcal was installed without the CUDA extension (no nvcc at build time)")
    return _C.__file__


@pytest.mark.skipif(
    shutil.which("nm") is None, reason="needs binutils' nm to read the symbol table"
)
def test_extension_exports_no_static_library_symbols():
    out = subprocess.run(
        ["nm", "-D", "--defined-only", _extension_path()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split() for line in out.splitlines()]
    assert any(r[-1] == "PyInit__C" for r in rows)
    leaked = [
        r[-1] for r in rows if len(r) >= 3 and r[-2] in "TDBR" and r[-1].startswith(FORBIDDEN)
    ]
    assert not leaked, f"{len(leaked)} static-library symbols exported, e.g. {leaked[:5]}"


@pytest.mark.gpu
@pytest.mark.skipif(
    not trtcal.cuda_available(), reason="needs a CUDA GPU and trtcal built with nvcc"
)
def test_cuda_error_in_a_binding_raises():
    """A CUDA error thrown from C++ reaches Python as an exception (this path segfaulted)."""
    from trtcal import _C

    with pytest.raises(MemoryError, match="cudaMalloc"):
        _C.DeviceBuffer(1 << 50, 0)  # a petabyte: cudaErrorMemoryAllocation at once
