"""The README's Python works as written: every ``trtcal.<name>`` it mentions is reachable after a
plain ``import trtcal`` (the optional subpackages load on first access, PEP 562), ``import
trtcal`` imports neither torch nor onnx, and the statistics example runs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme() -> str:
    if not README.exists():
        pytest.skip("README.md is not next to the tests (installed test tree)")
    return README.read_text(encoding="utf-8")


def _dotted_names(text: str) -> list:
    """``trtcal.a.b`` references in the README (private names and file names left out)."""
    names = set(re.findall(r"\btrtcal(?:\.[A-Za-z][A-Za-z0-9_]*)+", text))
    return sorted(n for n in names if not n.endswith((".onnx", ".cache", ".json", ".npz")))


def _run(source: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_readme_names_resolve_after_plain_import():
    names = _dotted_names(_readme())
    assert "trtcal.onnx.quantize" in names and "trtcal.torch.collect" in names
    source = f"""
        import trtcal
        missing = []
        for dotted in {names!r}:
            obj = trtcal
            for part in dotted.split(".")[1:]:
                try:
                    obj = getattr(obj, part)
                except AttributeError as exc:
                    missing.append(f"{{dotted}}: {{exc}}")
                    break
        print("\\n".join(missing))
        raise SystemExit(1 if missing else 0)
    """
    done = _run(source)
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_trtcal_is_light():
    done = _run("""
        import sys
        import trtcal
        heavy = [m for m in ("torch", "onnx", "onnxruntime", "tensorrt", "matplotlib")
                 if m in sys.modules]
        print(heavy)
        raise SystemExit(1 if heavy else 0)
    """)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unknown_attribute_is_attribute_error():
    import trtcal

    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        trtcal.nonexistent  # noqa: B018
    assert "onnx" in dir(trtcal)


def test_statistics_example_runs(rng):
    import trtcal

    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.DOTALL)
    assert blocks, "the README has no Python example"
    x = rng.standard_t(3, size=(4, 37, 9)).astype(np.float32)
    other = trtcal.HistogramCollector(2048)
    other.update(rng.normal(size=(5, 11)).astype(np.float32))
    for block in blocks:
        scope = {"x": x, "other": other}
        exec(compile(block, str(README), "exec"), scope)  # noqa: S102
    assert scope["a"] == pytest.approx(float(np.abs(x).max()))
