"""Fault injection on writing: a disk that fills at byte k of a file, read-only and full folders
found before the pass, outputs that land as a set, inputs never overwritten, stale temporaries
of killed runs removed, and two runs on the same outputs."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from calib_models import QUIET, cnn_model  # noqa: E402
from calib_models import heavy_tailed_images as _data  # noqa: E402

from trtcal import calibrate  # noqa: E402
from trtcal.cli import main  # noqa: E402
from trtcal.core import _files  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(
    os.environ, PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + os.path.join(ROOT, "tests")
)


class DiskFull:
    """A temporary's file object that accepts ``limit`` bytes in all (counted over every file
    written while installed), writes the part that fits, then fails with ENOSPC: the failure
    comes after bytes reached the disk, as a real full disk's does."""

    def __init__(self, limit):
        self.left = limit
        self.failed = 0

    def opener(self, fd):
        outer = self
        raw = os.fdopen(fd, "wb")

        class _File:
            def write(self, b):
                b = bytes(b)
                if len(b) > outer.left:
                    raw.write(b[: outer.left])
                    raw.flush()
                    outer.left = 0
                    outer.failed += 1
                    raise OSError(errno.ENOSPC, "No space left on device")
                outer.left -= len(b)
                return raw.write(b)

            def __getattr__(self, name):
                return getattr(raw, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                raw.close()

        return _File()


def _tree(folder):
    """{relative path: bytes} of every file (lock and temporary files would show up here)."""
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = fh.read()
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model, data, and the outputs of one good run (the 'previous files')."""
    d = tmp_path_factory.mktemp("faults")
    model = cnn_model(d / "cnn.onnx")
    x = _data(np.random.default_rng(7), 10)
    np.save(d / "x.npy", x)
    return d, model, x


def _outputs(folder):
    return dict(
        out_table=str(folder / "t.json"),
        out_cache=str(folder / "t.cache"),
        out_qdq=str(folder / "t.qdq.onnx"),
        report=str(folder / "r.html"),
    )


def _run(model, x, folder, **kw):
    return calibrate(
        model,
        x,
        method="minmax",
        batch_size=4,
        checkpoint=str(folder / "ck.npz"),
        **_outputs(folder),
        **dict(QUIET, **kw),
    )


@pytest.fixture(scope="module")
def good(setup, tmp_path_factory):
    """The outputs and checkpoint of one good run (copied by each test that rewrites them)."""
    _, model, x = setup
    out = tmp_path_factory.mktemp("good")
    _run(model, x, out)
    return out


def _good_run(good, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(good, out)
    return out, _tree(out)


@pytest.mark.parametrize("at", [0.0, 1e-6, 0.05, 0.3, 0.6, 0.9, 0.999, 1.0])
def test_disk_full_at_byte_k_keeps_every_previous_output(setup, good, tmp_path, monkeypatch, at):
    """The disk fills after k bytes of this run's outputs (k from 0 to all but the last byte):
    the previous table, cache, Q/DQ model and report stay as they were, byte for byte (none is
    cut off, none is replaced alone), no temporary remains, and the error names the file."""
    _, model, x = setup
    out, before = _good_run(good, tmp_path)
    total = sum(len(v) for k, v in before.items() if k != "ck.npz")
    k = min(int(at * total), total - 1)
    full = DiskFull(k)
    monkeypatch.setattr(_files, "_open_temp", full.opener)
    with pytest.raises(_files.OutputError) as info:
        _run(model, x, out, resume=True)  # the checkpoint is complete: straight to the outputs
    assert full.failed == 1 and "no space left on the device" in str(info.value)
    assert str(out) in str(info.value) and "is kept unchanged" in str(info.value)
    assert _tree(out) == before


def test_disk_full_in_a_set_of_writes_lands_none_of_them(tmp_path, monkeypatch):
    a, b = tmp_path / "a.json", tmp_path / "b.cache"
    a.write_text("old a")
    b.write_text("old b")
    for k in range(0, 12):  # the set fails in its first or its second file
        full = DiskFull(k)
        monkeypatch.setattr(_files, "_open_temp", full.opener)
        with pytest.raises(_files.OutputError, match="no space left"):
            with _files.output_set():
                _files.atomic_write(a, b"new a 12345")
                _files.atomic_write(b, b"new b")
        assert a.read_text() == "old a" and b.read_text() == "old b"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.cache"]
    monkeypatch.setattr(_files, "_open_temp", lambda fd: os.fdopen(fd, "wb"))
    with _files.output_set():
        _files.atomic_write(a, b"new a")
        _files.atomic_write(b, b"new b")
        assert a.read_text() == "old a"  # nothing lands before the set is complete
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_an_error_inside_a_set_keeps_old_files(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("old")

    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        with _files.output_set():
            _files.atomic_write(a, "new")
            raise Stop
    assert a.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("k", [0, 10, 200, 5000])
def test_checkpoint_cut_at_byte_k_keeps_the_previous_checkpoint(setup, tmp_path, monkeypatch, k):
    _, model, x = setup
    ck = tmp_path / "ck.npz"
    calibrate(model, x, method="minmax", batch_size=4, checkpoint=str(ck), **QUIET)
    before = ck.read_bytes()
    monkeypatch.setattr(_files, "_open_temp", DiskFull(k).opener)
    with pytest.raises(_files.OutputError, match=f"cannot write {ck}: no space left"):
        calibrate(model, x, method="minmax", batch_size=4, checkpoint=str(ck), **QUIET)
    assert ck.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]


def test_cli_disk_full_is_one_line_and_exit_1(setup, tmp_path, monkeypatch, capsys):
    d, model, _ = setup
    out = tmp_path / "out"
    args = [
        "calibrate",
        model,
        "--data",
        str(d / "x.npy"),
        "--method",
        "minmax",
        "--batch-size",
        "4",
        "-q",
        "--checkpoint",
        str(out / "ck.npz"),
        "--out-table",
        str(out / "t.json"),
        "--out-cache",
        str(out / "t.cache"),
        "--out-qdq",
        str(out / "t.qdq.onnx"),
    ]
    assert main(args) == 0
    before = _tree(out)
    capsys.readouterr()
    monkeypatch.setattr(_files, "_open_temp", DiskFull(3000).opener)
    rc = main(args + ["--resume"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("trtcal: error: cannot write ") and "no space left on the device" in err
    assert _tree(out) == before


@pytest.mark.parametrize("how", ["chmod", "erofs"])
def test_read_only_folder_is_refused_before_the_pass(setup, tmp_path, monkeypatch, how):
    """A folder that takes no new file (permissions; or a read-only file system, simulated)
    is named before any sample is read."""
    _, model, x = setup
    ro = tmp_path / "ro"
    ro.mkdir()
    if how == "chmod":
        if os.name != "posix" or os.geteuid() == 0:
            pytest.skip("root ignores folder permissions")
        os.chmod(ro, 0o555)
        why = "permission denied"
    else:
        real = _files.tempfile.mkstemp

        def mkstemp(*a, dir=None, **k):
            if dir is not None and os.path.realpath(dir) == os.path.realpath(ro):
                raise OSError(errno.EROFS, "Read-only file system")
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(_files.tempfile, "mkstemp", mkstemp)
        why = "read-only file system"
    seen = []

    def data():  # any batch read means the pass started
        seen.append(1)
        yield {"images": x[:4]}

    try:
        with pytest.raises(_files.OutputError, match=f"cannot write {ro}/t.json: {why}"):
            calibrate(model, data(), method="minmax", out_table=str(ro / "t.json"), **QUIET)
    finally:
        os.chmod(ro, 0o755)
    assert seen == []


def test_full_disk_is_refused_before_the_pass(setup, tmp_path, monkeypatch):
    _, model, x = setup

    class Stat:
        f_bavail, f_frsize = 10, 4096  # 40 kB free: less than the checkpoint needs

    monkeypatch.setattr(os, "statvfs", lambda d: Stat())
    seen = []

    def data():
        seen.append(1)
        yield {"images": x[:4]}

    with pytest.raises(
        _files.OutputError, match=r"cannot write .*ck\.npz: its device has 0\.0 MB free"
    ):
        calibrate(model, data(), method="minmax", checkpoint=str(tmp_path / "ck.npz"), **QUIET)
    assert seen == []


@pytest.mark.parametrize(
    "what",
    [
        "out_qdq=model",
        "out_table=data",
        "out_table=out_cache",
        "report=out_qdq",
        "checkpoint=out_table",
        "out_cache=hardlink",
        "out_qdq=symlink",
    ],
)
def test_an_output_that_is_an_input_or_another_output_is_refused(setup, tmp_path, what):
    d, model, x = setup
    m = tmp_path / "m.onnx"
    m.write_bytes(open(model, "rb").read())
    data = tmp_path / "x.npy"
    np.save(data, x)
    kw = dict(
        out_table=str(tmp_path / "t.json"),
        out_cache=str(tmp_path / "t.cache"),
        out_qdq=str(tmp_path / "q.onnx"),
        report=str(tmp_path / "r.html"),
        checkpoint=str(tmp_path / "c.npz"),
    )
    key, other = what.split("=")
    if other == "hardlink":
        os.link(m, tmp_path / "m_link.onnx")
        kw[key] = str(tmp_path / "m_link.onnx")
    elif other == "symlink":
        os.symlink(data, tmp_path / "x_link.npy")
        kw[key] = str(tmp_path / "x_link.npy")
    else:
        kw[key] = {"model": str(m), "data": str(data)}.get(other) or kw[other]
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match="is the (model|data)|are the same file") as info:
        calibrate(str(m), str(data), method="minmax", batch_size=4, **dict(QUIET, **kw))
    assert _tree(tmp_path) == before  # nothing written, not even a checkpoint
    msg = str(info.value)
    assert kw[key] in msg or os.path.basename(kw[key]) in msg


def test_data_like_outputs_inside_the_data_folder_are_refused(setup, tmp_path):
    _, model, x = setup
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "a.npy", x[:5])
    with pytest.raises(
        ValueError, match="inside the data folder .* would read it as calibration data"
    ):
        calibrate(model, str(folder), method="minmax", checkpoint=str(folder / "ck.npz"), **QUIET)
    with pytest.raises(ValueError, match="inside the data folder"):
        calibrate(model, str(folder), method="minmax", report=str(folder / "r.md"), **QUIET)
    # a JSON table there is not data: allowed
    calibrate(model, str(folder), method="minmax", out_table=str(folder / "t.json"), **QUIET)


def test_cli_default_checkpoint_never_lands_in_the_data_folder(
    setup, tmp_path, monkeypatch, capsys
):
    _, model, x = setup
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "a.npy", x[:5])
    monkeypatch.chdir(folder)
    args = [
        "calibrate",
        model,
        "--data",
        str(folder),
        "--method",
        "minmax",
        "-q",
        "--out-table",
        str(folder / "t.json"),
    ]
    assert main(args) == 0
    assert sorted(os.listdir(folder)) == ["a.npy", "t.json"]
    assert (tmp_path / "cnn.trtcal-ckpt.npz").exists()
    assert main(args + ["--resume"]) == 0  # the next run reads the same data


def test_stale_temporaries_of_a_killed_process_are_removed(setup, tmp_path):
    _, model, x = setup
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    host = _files.temp_tag().split("-")[-2]
    stale = tmp_path / f".t.json{_files.TEMP_TAG}{pid}-{host}-abc"
    stale.write_bytes(b"half")
    mine = tmp_path / f".t.json{_files.temp_tag()}abc"  # a live process's: kept
    mine.write_bytes(b"busy")
    other = (
        tmp_path / f".t.json{_files.TEMP_TAG}{pid}-0badcafe-abc"
    )  # another host's (shared disk): kept
    other.write_bytes(b"theirs")
    calibrate(model, x, method="minmax", out_table=str(tmp_path / "t.json"), **QUIET)
    assert not stale.exists() and mine.exists() and other.exists()


def test_kill_9_during_a_write_leaves_only_a_pid_named_temporary(tmp_path):
    """A process killed while writing leaves its temporary (it cannot clean up); the target is
    untouched, and the temporary's name carries the pid for the next run to clean."""
    target = tmp_path / "t.json"
    target.write_text("old")
    code = textwrap.dedent(f"""
        import os, sys, time
        from trtcal.core import _files
        def slow(f):
            f.write(b"x" * 1000); f.flush(); print("writing", flush=True); time.sleep(60)
        _files.atomic_write({str(target)!r}, slow)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    assert p.stdout.readline().strip() == "writing"
    p.kill()
    p.wait()
    left = [n for n in os.listdir(tmp_path) if n != "t.json"]
    assert (
        target.read_text() == "old" and len(left) == 1 and f"{_files.TEMP_TAG}{p.pid}-" in left[0]
    )
    assert _files.remove_stale_temps(str(tmp_path)) == [str(tmp_path / left[0])]
    assert os.listdir(tmp_path) == ["t.json"]


def test_two_concurrent_runs_on_one_checkpoint(setup, tmp_path):
    """The second run fails at once, naming the first one's pid; the first finishes unharmed."""
    d, model, _ = setup
    ck = tmp_path / "ck.npz"
    go = tmp_path.parent / f"{tmp_path.name}.go"  # the first run holds on until the second is done
    code = textwrap.dedent(f"""
        import os, sys, time
        import numpy as np
        from trtcal import calibrate
        x = np.load({str(d / "x.npy")!r})
        def slow():
            for i in range(0, 10, 2):
                if i == 2:
                    print("running", flush=True)
                    t = time.monotonic()
                    while not os.path.exists({str(go)!r}) and time.monotonic() - t < 120:
                        time.sleep(0.05)
                yield {{"images": x[i:i + 2]}}
        calibrate({model!r}, slow(), method="minmax", checkpoint={str(ck)!r},
                  out_table={str(tmp_path / "t.json")!r},
                  progress=False, log=lambda s: None)
        print("done", flush=True)
    """)
    first = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV
    )
    assert first.stdout.readline().strip() == "running"
    t0 = time.monotonic()
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "trtcal",
            "calibrate",
            model,
            "--data",
            str(d / "x.npy"),
            "--method",
            "minmax",
            "-q",
            "--checkpoint",
            str(ck),
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    go.write_text("")
    assert time.monotonic() - t0 < 60  # it did not wait for the first (start-up included)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert f"another trtcal run (pid {first.pid}) is writing the checkpoint {ck}" in second.stderr
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0 and out.strip() == "done"
    assert json.loads((tmp_path / "t.json").read_text())["provenance"]["num_samples"] == 10
    assert sorted(os.listdir(tmp_path)) == ["ck.npz", "t.json"]  # lock files removed


def test_two_runs_writing_one_output_the_second_fails_fast(setup, tmp_path):
    from trtcal.core import _locks

    _, model, x = setup
    with _locks.exclusive([(str(tmp_path / "t.json"), "the output")]):
        with pytest.raises(_locks.LockedError, match=rf"pid {os.getpid()}\) is writing the output"):
            calibrate(model, x, method="minmax", out_table=str(tmp_path / "t.json"), **QUIET)
    calibrate(
        model, x, method="minmax", out_table=str(tmp_path / "t.json"), **QUIET
    )  # released: runs
