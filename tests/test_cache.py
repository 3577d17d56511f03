"""The TensorRT calibration cache: parsing every real-file edge case, writing headers,
exact round trips, refusing files that are not caches."""

import json
import math
import os
import struct

import numpy as np
import pytest

from trtcal import CalibrationTable
from trtcal.formats import cache as tc

# Hand-written in TensorRT's exact layout: header, '<name>: <hex>' lines, '\n', final newline.
TRT8_CACHE = (
    "TRT-8601-EntropyCalibration2\n"
    "input_tensor:0: 3c010a14\n"
    "conv/Conv2D__176:0: 3d0f7a1c\n"
    "(Unnamed Layer* 46) [Constant]_output: 0\n"
    "(Unnamed Layer* 47) [ElementWise]_output: 3e1d55a6\n"
    "StatefulPartitionedCall/model/tf.math.multiply/Mul:0: 7f800000\n"
    "onnx::Conv_123: 7c010204\n"
    "/model.0/conv/Conv_output_0: 3cfb1a2b\n"
    "tiny denormal: 116c2\n"
)

TRT10_CACHE = (
    "TRT-101303-MinMaxCalibration\n"
    "/backbone/stem/Relu_output_0: 3e4ccccd\n"
    "images: 3c010204\n"
    "/head/Sigmoid_output_0: 3c010204\n"
)


def _bits(x: float) -> int:
    return struct.unpack(">I", struct.pack(">f", x))[0]


# ---------------------------------------------------------------- values and headers


@pytest.mark.parametrize(
    "scale,text",
    [
        (1.0, "3f800000"),
        (0.0, "0"),
        (math.inf, "7f800000"),
        (1 / 127, "3c010204"),
        (-2.0, "c0000000"),
    ],
)
def test_scale_hex_is_unpadded_big_endian_float32(scale, text):
    assert tc.scale_to_hex(scale) == text
    assert tc.hex_to_scale(text) == pytest.approx(scale, rel=1e-7) or (scale == text == 0)


def test_hex_of_random_scales_round_trips(rng):
    scales = np.abs(rng.standard_t(2, size=257)).astype(np.float32) * 10.0 ** rng.integers(
        -30, 30, 257
    )
    scales = scales.astype(np.float32)
    for s in scales:
        text = tc.scale_to_hex(float(s))
        assert text == format(_bits(float(s)), "x")
        assert not (len(text) > 1 and text.startswith("0"))
        assert tc.hex_to_scale(text) == float(s)


def test_flt_max_over_127_is_7c010204():
    flt_max = float(np.finfo(np.float32).max)
    assert tc.scale_to_hex(flt_max / 127) == "7c010204"
    assert tc.scale_to_hex(1e39) == "7f800000"  # beyond float32 range becomes +inf as a C cast


@pytest.mark.parametrize(
    "version,number",
    [
        ("7.2.3", 7203),
        ("8.0.1", 8001),
        ("8.6.1", 8601),
        ("8.6.1.6", 8601),
        ("9.3.0", 9300),
        ("10.0.1", 100001),
        ("10.3.0", 100300),
        ("10.13.3", 101303),
        ((10, 16, 0), 101600),
    ],
)
def test_version_numbers(version, number):
    assert tc.encode_version(version) == number
    major, minor, patch = tc.parse_version(version)
    assert tc.decode_version(number) == (major, minor, patch)


@pytest.mark.parametrize("algo", tc.ALGORITHMS)
def test_headers_for_every_algorithm(algo):
    assert tc.format_header("8.6.1", algo) == f"TRT-8601-{algo}"
    assert tc.format_header("10.3.0", algo) == f"TRT-100300-{algo}"


def test_header_refuses_unknown_algorithm_and_tensorrt_11():
    with pytest.raises(ValueError, match="EntropyCalibration2"):
        tc.format_header("10.3.0", "Entropy")
    with pytest.raises(ValueError, match="trtcal.onnx.quantize"):
        tc.format_header("11.1.0", "EntropyCalibration2")
    with pytest.raises(ValueError, match=r"X.Y or X.Y.Z"):
        tc.format_header("ten", "EntropyCalibration2")


# ---------------------------------------------------------------- parsing


def test_parse_real_tensorrt8_cache():
    c = tc.parse_cache(TRT8_CACHE.encode())
    assert c.tensorrt_version == "8.6.1" and c.algorithm == "EntropyCalibration2"
    names = [e.name for e in c]
    assert names == [
        "input_tensor:0",
        "conv/Conv2D__176:0",
        "(Unnamed Layer* 46) [Constant]_output",
        "(Unnamed Layer* 47) [ElementWise]_output",
        "StatefulPartitionedCall/model/tf.math.multiply/Mul:0",
        "onnx::Conv_123",
        "/model.0/conv/Conv_output_0",
        "tiny denormal",
    ]
    s = c.scales()
    assert _bits(s["input_tensor:0"]) == 0x3C010A14
    assert s["(Unnamed Layer* 46) [Constant]_output"] == 0.0
    assert s["StatefulPartitionedCall/model/tf.math.multiply/Mul:0"] == math.inf
    assert c.amaxes()["onnx::Conv_123"] == pytest.approx(float(np.finfo(np.float32).max), rel=1e-6)
    assert 0 < s["tiny denormal"] < 1e-39  # unpadded 5-digit hex: a float32 denormal


def test_parse_tensorrt10_header():
    c = tc.parse_cache(TRT10_CACHE)
    assert c.version_number == 101303 and c.tensorrt_version == "10.13.3"
    assert c.algorithm == "MinMaxCalibration"
    assert c.amaxes()["images"] == pytest.approx(1.0)


def test_parse_keeps_any_line_order(rng):
    lines = TRT8_CACHE.splitlines()
    body = lines[1:]
    order = rng.permutation(len(body))
    shuffled = "\n".join([lines[0]] + [body[i] for i in order]) + "\n"
    c = tc.parse_cache(shuffled)
    assert [e.name for e in c] == [body[i].rsplit(":", 1)[0] for i in order]
    assert c.to_text() == shuffled


@pytest.mark.parametrize(
    "text",
    [
        TRT8_CACHE,
        TRT10_CACHE,
        TRT8_CACHE.rstrip("\n"),
        TRT8_CACHE.replace("\n", "\r\n"),
        "TRT-8601-EntropyCalibration2\n",
        "TRT-100300-EntropyCalibration2\nx: 3C010A14\ny:3f800000\nz: 00000000\n",
        "\ufeffTRT-8601-MinMaxCalibration\nname with  spaces : 3f800000\n",
    ],
)
def test_read_then_write_gives_the_same_bytes(tmp_path, text):
    p = tmp_path / "calibration.cache"
    p.write_bytes(text.encode())
    assert tc.read_cache(p).to_bytes() == text.encode()
    out = tmp_path / "out.cache"
    CalibrationTable.from_cache(p).to_cache(out)
    assert out.read_bytes() == text.encode()


def test_changed_entry_is_reencoded_others_kept(tmp_path):
    p = tmp_path / "c.cache"
    p.write_text("TRT-8601-EntropyCalibration2\na: 3C010A14\nb: 0\n")
    t = CalibrationTable.from_cache(p)
    t["b"] = 127.0
    t["new:tensor:0"] = 254.0
    t.to_cache(p)
    assert (
        p.read_text()
        == "TRT-8601-EntropyCalibration2\na: 3C010A14\nb: 3f800000\nnew:tensor:0: 40000000\n"
    )


def test_new_header_on_request(tmp_path):
    p = tmp_path / "c.cache"
    p.write_text(TRT8_CACHE)
    t = CalibrationTable.from_cache(p)
    t.to_cache(tmp_path / "d.cache", tensorrt_version="10.3.0", algorithm="MinMaxCalibration")
    text = (tmp_path / "d.cache").read_text()
    assert text.splitlines()[0] == "TRT-100300-MinMaxCalibration"
    assert text.splitlines()[1:] == TRT8_CACHE.splitlines()[1:]


@pytest.mark.parametrize(
    "bad,match",
    [
        ("TRT-8601-EntropyCalibration2\nnocolonhere 3c010a14\n", "line 2"),
        ("TRT-8601-EntropyCalibration2\nx: 3c010a14f\n", "tensor 'x'"),
        ("TRT-8601-EntropyCalibration2\nx: zz\n", "hex"),
        ("TRT-8601-EntropyCalibration2\nx: 1\nx: 2\n", "twice"),
    ],
)
def test_malformed_lines_are_reported(bad, match):
    with pytest.raises(ValueError, match=match):
        tc.parse_cache(bad)


def test_refuses_onnxruntime_tensorrt_ep_table(tmp_path):
    p = tmp_path / "calibration.cache"
    p.write_text("input 2.64\n/conv1/Conv_output_0 7.3193\n/relu/Relu_output_0 7.3193\n")
    with pytest.raises(ValueError, match="ONNX Runtime") as err:
        tc.read_cache(p)
    assert "no 'TRT-<N>-<Algorithm>' header" in str(err.value)
    with pytest.raises(ValueError, match="ONNX Runtime"):
        CalibrationTable.from_cache(p)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"\x00\x01TRT", "binary"),
        (b"\xff\xfe\xfa", "UTF-8"),
        (b'{"format": "trtcal.calibration-table"}', "JSON"),
        (b"x: 3c010a14\ny: 0\n", "header"),
        (b"hello world, this is text\n", "not a 'TRT-"),
    ],
)
def test_refuses_non_caches_saying_what_they_look_like(data, match):
    with pytest.raises(ValueError, match=match):
        tc.parse_cache(data, source="f.cache")


def test_writer_refuses_names_with_newlines():
    with pytest.raises(ValueError, match="line break"):
        CalibrationTable({"a\nb": 1.0}).to_cache_bytes()


def test_new_cache_from_table_matches_tensorrt_layout(rng):
    amax = np.abs(rng.laplace(size=13)).astype(np.float64) + 0.01
    names = [f"/layer.{i}/Conv_output_0" for i in range(13)] + [
        "(Unnamed Layer* 3) [Shuffle]_output"
    ]
    values = list(amax) + [0.0]
    t = CalibrationTable(dict(zip(names, values)))
    data = t.to_cache_bytes(tensorrt_version="8.6.1")
    lines = data.decode().split("\n")
    assert lines[0] == "TRT-8601-EntropyCalibration2" and lines[-1] == ""
    for line, name, a in zip(lines[1:], names, values):
        assert line == f"{name}: {format(_bits(float(np.float32(a / 127))), 'x')}"
    assert lines[-2].endswith(": 0")
    back = tc.parse_cache(data)
    for name, a in zip(names, values):
        assert back.amaxes()[name] == pytest.approx(a, rel=6e-8)
    assert t.to_cache_bytes().startswith(b"TRT-100300-EntropyCalibration2\n")


# ---------------------------------------------------------------- CLI


def _cli(argv, capsys):
    from trtcal.cli import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_show_table_and_json(tmp_path, capsys):
    p = tmp_path / "calibration.cache"
    p.write_text(TRT8_CACHE)
    rc, out, _ = _cli(["cache", "show", str(p)], capsys)
    assert rc == 0 and "TensorRT 8.6.1 cache, EntropyCalibration2" in out and "8 tensors" in out
    assert "(Unnamed Layer* 46) [Constant]_output" in out and "3c010a14" in out
    rc, out, _ = _cli(["cache", "show", str(p), "--json", "--sort", "amax"], capsys)
    data = json.loads(out)
    assert rc == 0 and data["tensors"][0]["amax"] == "inf"
    row = next(r for r in data["tensors"] if r["tensor"] == "input_tensor:0")
    assert row["hex"] == "3c010a14" and row["amax"] == pytest.approx(row["scale"] * 127)


def test_cli_diff_reports_moves(tmp_path, capsys):
    a, b = tmp_path / "a.cache", tmp_path / "b.cache"
    a.write_text("TRT-8601-EntropyCalibration2\nx: 3f800000\ny: 3c010204\ngone: 0\n")
    b.write_text("TRT-100300-MinMaxCalibration\ny: 3c010204\nx: 40000000\nnew:0: 3f800000\n")
    rc, out, _ = _cli(["cache", "diff", str(a), str(b)], capsys)
    assert rc == 1 and "1 unchanged, 1 changed, 1 only in A, 1 only in B" in out
    assert "2.0000" in out and "only in A: gone" in out and "only in B: new:0" in out
    rc, out, _ = _cli(["cache", "diff", str(a), str(b), "--json"], capsys)
    d = json.loads(out)
    assert d["changed"][0]["tensor"] == "x" and d["changed"][0]["ratio"] == 2.0
    rc, out, _ = _cli(["cache", "diff", str(a), str(a)], capsys)
    assert rc == 0 and "0 changed" in out


def test_cli_convert_both_ways_and_reheader(tmp_path, capsys):
    p = tmp_path / "calibration.cache"
    p.write_text(TRT8_CACHE)
    j = tmp_path / "table.json"
    assert _cli(["cache", "convert", str(p), str(j)], capsys)[0] == 0
    assert CalibrationTable.from_json(j)["input_tensor:0"] == pytest.approx(
        tc.hex_to_scale("3c010a14") * 127
    )
    back = tmp_path / "back.cache"
    assert _cli(["cache", "convert", str(j), str(back)], capsys)[0] == 0
    assert back.read_bytes() == p.read_bytes()
    re10 = tmp_path / "re10.cache"
    rc, out, _ = _cli(
        [
            "cache",
            "convert",
            str(p),
            str(re10),
            "--tensorrt-version",
            "10.16.0",
            "--algorithm",
            "MinMaxCalibration",
        ],
        capsys,
    )
    assert rc == 0 and "TRT-101600-MinMaxCalibration" in out
    assert re10.read_text().splitlines()[1:] == TRT8_CACHE.splitlines()[1:]


def test_cli_refuses_non_cache(tmp_path, capsys):
    p = tmp_path / "calibration.cache"
    p.write_text("input 2.64\nrelu 7.3\n")
    rc, _, err = _cli(["cache", "show", str(p)], capsys)
    assert rc == 1 and "ONNX Runtime" in err


def test_cli_show_directory_is_a_clear_error(tmp_path, capsys):
    rc, out, err = _cli(["cache", "show", str(tmp_path)], capsys)
    assert rc == 1 and out == ""
    assert (
        err == f"trtcal: error: {tmp_path} is a directory, not a calibration cache or trtcal JSON "
        "table\n"
    )
    rc, _, err = _cli(["cache", "show", str(tmp_path / "missing.cache")], capsys)
    assert rc == 1 and err.startswith("trtcal: error: no such file: ") and "Errno" not in err


@pytest.mark.parametrize(
    "scale,problem",
    [
        (-0.0196850393, "negative"),
        (-math.inf, "negative"),
        (math.nan, "NaN"),
        (0.0, "zero"),
        (-0.0, "zero"),
    ],
)
def test_scale_problem_flags_negative_nan_and_zero(scale, problem):
    assert problem in tc.scale_problem(scale)


@pytest.mark.parametrize("scale", [1 / 127, math.inf, float(np.finfo(np.float32).max) / 127, 1e-45])
def test_scale_problem_passes_what_tensorrt_writes(scale):
    assert tc.scale_problem(scale) is None


ODD_CACHE = (
    "TRT-8601-EntropyCalibration2\nneg: bca14285\nnan: 7fc00000\nzero: 0\n"
    "inf: 7f800000\nflt_max: 7c010204\nok: 3c010204\n"
)


def test_cli_show_warns_per_tensor_but_reads_and_round_trips(tmp_path, capsys):
    p = tmp_path / "odd.cache"
    p.write_text(ODD_CACHE)
    assert [n for n, _ in tc.read_cache(p).problems()] == ["neg", "nan", "zero"]
    rc, out, err = _cli(["cache", "show", str(p)], capsys)
    assert rc == 0 and "6 tensors, 3 with a negative, NaN or zero scale" in out
    assert "-2.5" in out and "bca14285" in out  # shown, not refused
    lines = err.splitlines()
    assert len(lines) == 3 and all(ln.startswith(f"trtcal: warning: {p}: tensor '") for ln in lines)
    assert "'neg' (hex bca14285): negative scale" in lines[0] and "invalid for TensorRT" in lines[0]
    assert (
        "'nan' (hex 7fc00000): NaN scale" in lines[1] and "'zero' (hex 0): zero scale" in lines[2]
    )
    rc, out, err = _cli(["cache", "show", str(p), "--json"], capsys)
    data = json.loads(out)
    assert rc == 0 and [w["tensor"] for w in data["warnings"]] == ["neg", "nan", "zero"]
    assert len(err.splitlines()) == 3
    back = tmp_path / "back.cache"  # shown, but never written into a cache (or a table) again
    for out in (back, tmp_path / "back.json"):
        rc, _, err = _cli(["cache", "convert", str(p), str(out)], capsys)
        assert rc == 1 and not out.exists()
        assert (
            err.startswith(f"trtcal: error: {p}: tensor 'neg' has a negative amax")
            and "1 more" in err
        )
    p.write_text(TRT8_CACHE.replace("(Unnamed Layer* 46) [Constant]_output: 0\n", ""))
    rc, out, err = _cli(["cache", "show", str(p)], capsys)
    assert rc == 0 and err == "" and "with a negative" not in out
    assert json.loads(_cli(["cache", "show", str(p), "--json"], capsys)[1])["warnings"] == []


@pytest.mark.parametrize("rtol", ["-1", "nan", "inf", "abc"])
def test_cli_diff_refuses_bad_tolerance(tmp_path, capsys, rtol):
    p = tmp_path / "a.cache"
    p.write_text(TRT10_CACHE)
    with pytest.raises(SystemExit) as exit_:
        _cli(["cache", "diff", str(p), str(p), "--rtol", rtol], capsys)
    assert exit_.value.code == 2
    assert "--rtol" in capsys.readouterr().err


def test_cli_diff_tolerance_and_exit_status(tmp_path, capsys):
    a, b = tmp_path / "a.cache", tmp_path / "b.cache"
    a.write_text("TRT-8601-EntropyCalibration2\nx: 3f800000\n")
    b.write_text("TRT-8601-EntropyCalibration2\nx: 3f8ccccd\n")  # +10%
    assert _cli(["cache", "diff", str(a), str(b)], capsys)[0] == 1
    assert _cli(["cache", "diff", str(a), str(b), "--rtol", "0.2"], capsys)[0] == 0
    ort = tmp_path / "calibration.cache"
    ort.write_text("input 2.64\nrelu 7.3\n")
    for other in (tmp_path / "missing.cache", ort, tmp_path):
        rc, out, err = _cli(["cache", "diff", str(a), str(other)], capsys)
        assert (
            rc == 2
            and out == ""
            and err.startswith("trtcal: error: ")
            and err.count("trtcal:") == 1
        )
    rc, _, err = _cli(["cache", "diff", str(ort), str(a)], capsys)
    assert rc == 2 and "ONNX Runtime" in err


def test_cli_diff_help_states_exit_codes(capsys):
    with pytest.raises(SystemExit):
        _cli(["cache", "diff", "--help"], capsys)
    text = " ".join(capsys.readouterr().out.split())
    assert "1 when they differ, 2 on an error" in text


# ------------------------------------------------------------------- line endings, versions, size,
# tiny scales
@pytest.mark.parametrize(
    "endings",
    [["\r\n", "\n", "\r\n"], ["\n", "\r\n", "\n"], ["\n", "\n", "\r\n"], ["\r\n", "\r\n", "\n"]],
)
def test_mixed_line_endings_never_merge_entries(endings):
    lines = ["TRT-8601-EntropyCalibration2", "a: 3c010204", "b:c: 3d000000", "d e: 0"]
    text = lines[0] + "".join(e + ln for e, ln in zip(endings, lines[1:])) + "\n"
    c = tc.parse_cache(text.encode())
    assert [e.name for e in c] == ["a", "b:c", "d e"]
    assert c.scales()["b:c"] == struct.unpack(">f", bytes.fromhex("3d000000"))[0]
    assert c.newline == endings[0]


def test_mixed_line_endings_from_a_file(tmp_path):
    p = tmp_path / "m.cache"
    p.write_bytes(b"TRT-100300-EntropyCalibration2\r\na: 3c010204\nb: 3c010204\r\nc: 0\n")
    assert [e.name for e in tc.read_cache(p)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "header",
    [
        "TRT-0-EntropyCalibration2",
        "TRT-2999-EntropyCalibration2",
        "TRT-10000-EntropyCalibration2",
        "TRT-99999-MinMaxCalibration",
        "TRT-110000-EntropyCalibration2",
        "TRT-99999999-EntropyCalibration2",
        "TRT-1000000-LegacyCalibration",
    ],
)
def test_impossible_header_versions_are_refused(header):
    with pytest.raises(ValueError, match="never wrote calibration caches"):
        tc.parse_cache(f"{header}\na: 3c010204\n".encode(), source="x.cache")


@pytest.mark.parametrize(
    "header",
    [
        "TRT-3000-EntropyCalibration2",
        "TRT-7000-EntropyCalibration2",
        "TRT-8601-MinMaxCalibration",
        "TRT-100300-EntropyCalibration2",
        "TRT-101600-LegacyCalibration",
    ],
)
def test_possible_header_versions_are_read(header):
    assert tc.parse_cache(f"{header}\na: 3c010204\n".encode()).header == header


def test_a_huge_garbage_file_is_refused_early_in_constant_memory(tmp_path):
    """1 GB (sparse) after a valid header, and 64 MB of text with no line break: each refused
    at its first bad line, reading a few kB (tracemalloc peak), never the whole file."""
    import tracemalloc

    big = tmp_path / "big.cache"
    with open(big, "wb") as f:
        f.write(b"TRT-8601-EntropyCalibration2\na: 3c010204\n")
        f.truncate(1 << 30)
    text = tmp_path / "text.cache"
    with open(text, "wb") as f:
        chunk = b"abcdefgh" * (1 << 17)
        for _ in range(64):
            f.write(chunk)
    for p, why in ((big, "binary file"), (text, "longer than")):
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=why):
                tc.read_cache(p)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2_000_000, (p, peak)


@pytest.mark.parametrize("amax", [1e-40, 1e-43, 1e-50])
def test_a_tiny_amax_that_becomes_a_zero_or_denormal_scale_warns(tmp_path, amax):
    t = CalibrationTable({"tiny": amax, "ok": 1.0})
    with pytest.warns(
        UserWarning, match=r"tensor 'tiny': amax .* gives a float32 scale of (zero|the denormal)"
    ):
        t.to_cache(tmp_path / "t.cache")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CalibrationTable({"ok": 1.0}).to_cache(tmp_path / "u.cache")  # nothing to say
        CalibrationTable.from_cache(tmp_path / "t.cache").to_cache(
            tmp_path / "v.cache"
        )  # its own values: kept


def test_cli_tiny_scale_warning_is_one_line(tmp_path, capsys):
    src = tmp_path / "t.json"
    CalibrationTable({"tiny": 1e-43}).to_json(src)
    rc, out, err = _cli(["cache", "convert", str(src), str(tmp_path / "t.cache")], capsys)
    assert (
        rc == 0 and err.startswith("trtcal: warning: tensor 'tiny': amax") and err.count("\n") == 1
    )


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    from trtcal.core import _files

    p = tmp_path / "a.cache"
    CalibrationTable({"a": 1.0}).to_cache(p)
    before = p.read_bytes()

    def opener(fd):
        f = open(fd, "wb")  # noqa: SIM115
        real = f.write

        def write(b):
            real(bytes(b)[:5])  # some bytes reach the disk, then it is full
            raise OSError(28, "No space left on device")

        f.write = write
        return f

    monkeypatch.setattr(_files, "_open_temp", opener)
    with pytest.raises(_files.OutputError, match="no space left"):
        CalibrationTable({"a": 2.0, "b": 3.0}).to_cache(p)
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["a.cache"]
