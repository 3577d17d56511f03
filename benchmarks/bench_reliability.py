"""Issue 19 evidence: peak RSS of `trtcal calibrate` over .npy FILES of 20k and 2M rows (memory
must not grow with the rows), and the time an atomic output set adds.

    python benchmarks/bench_reliability.py [--pythonpath python]

``--pythonpath`` picks the trtcal to measure (e.g. another checkout's ``python`` folder), so the
same script gives the before and after numbers. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CODE = (
    "import resource, sys, time\n"
    "from trtcal.cli import main\n"
    "t = time.perf_counter()\n"
    "rc = main(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t, "
    "file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def _model(path: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def _files(folder: str, rows: int, files: int = 4) -> None:
    os.makedirs(folder)
    for i in range(files):
        m = np.lib.format.open_memmap(
            os.path.join(folder, f"part{i}.npy"),
            mode="w+",
            dtype=np.float32,
            shape=(rows // files, 4),
        )
        m[-1] = 1.0
        m.flush()
        del m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--pythonpath", default=os.path.join(os.path.dirname(os.path.dirname(__file__)), "python")
    )
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.pythonpath))
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "m.onnx")
        _model(model)
        print(f"trtcal from {os.path.abspath(args.pythonpath)}\n")
        print("| .npy rows (4 files) | peak RSS (MB) | wall (s) |\n|---:|---:|---:|")
        for rows in (20_000, 200_000, 2_000_000):
            data = os.path.join(d, f"rows{rows}")
            _files(data, rows)
            r = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CODE,
                    "calibrate",
                    model,
                    "--data",
                    data,
                    "--method",
                    "minmax",
                    "--max-samples",
                    "64",
                    "-q",
                    "--checkpoint",
                    os.path.join(d, f"ck{rows}.npz"),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if r.returncode:
                raise SystemExit(r.stderr)
            kib, wall = r.stderr.strip().splitlines()[-1].split()
            print(f"| {rows:,} | {int(kib) / 1024:.0f} | {float(wall):.2f} |")
        sys.path.insert(0, os.path.abspath(args.pythonpath))
        from trtcal import CalibrationTable
        from trtcal.core import _files as files

        if hasattr(files, "output_set"):
            t = CalibrationTable({f"t{i}": 1.0 + i for i in range(1000)})
            reps = 20
            t0 = time.perf_counter()
            for _ in range(reps):
                with files.output_set():
                    t.to_json(os.path.join(d, "t.json"))
                    t.to_cache(os.path.join(d, "t.cache"))
            per = (time.perf_counter() - t0) / reps * 1e3
            print(
                f"\n| atomic output set (1000-tensor table + cache, fsync each) | {per:.1f} ms "
                "|\n|---|---:|"
            )


if __name__ == "__main__":
    main()
