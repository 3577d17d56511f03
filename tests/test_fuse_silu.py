"""SiLU fusion on ONNX graphs built here: structure, checker, idempotence, and equality in
ONNX Runtime after expanding the SiLU nodes back into Sigmoid+Mul."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from trtcal.onnx import expand_silu, fuse_silu, quantize_silu  # noqa: E402
from trtcal.onnx.fuse import SILU_DOMAIN, is_silu_node  # noqa: E402
from trtcal.reference import silu as ref  # noqa: E402

OPSET = 17


def _model(nodes, inputs, outputs, initializers=(), opset=OPSET):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _silu_pair(x, out, name, swap=False):
    s = f"{name}_sig"
    return [
        helper.make_node("Sigmoid", [x], [s], name=f"{name}/Sigmoid"),
        helper.make_node("Mul", [s, x] if swap else [x, s], [out], name=f"{name}/Mul"),
    ]


def _ops_of(graph):
    return [n.op_type for n in graph.node]


def _ops(model):
    return _ops_of(model.graph)


def _yolo_block(rng, c=8, swap_every=2):
    """Conv-SiLU x2 with a residual Add, a second branch and a Concat (a C3-like block)."""
    nodes, inits = [], []

    def conv(x, out, cin, cout, k, name):
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * 0.3
        b = rng.standard_normal(cout).astype(np.float32) * 0.1
        inits.extend(
            [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
        )
        nodes.append(
            helper.make_node(
                "Conv", [x, f"{name}.w", f"{name}.b"], [out], name=name, pads=[k // 2] * 4
            )
        )

    count = 0

    def conv_silu(x, out, cin, cout, k, name):
        nonlocal count
        conv(x, f"{name}.conv", cin, cout, k, name)
        nodes.extend(_silu_pair(f"{name}.conv", out, name, swap=(count % swap_every == 1)))
        count += 1

    conv_silu("images", "stem", 3, c, 3, "stem")
    conv_silu("stem", "b1", c, c, 1, "cv1")
    conv_silu("b1", "b1m", c, c, 3, "m.cv1")
    conv_silu("b1m", "b1m2", c, c, 3, "m.cv2")
    nodes.append(helper.make_node("Add", ["b1", "b1m2"], ["res"], name="res"))
    conv_silu("stem", "b2", c, c, 1, "cv2")
    nodes.append(helper.make_node("Concat", ["res", "b2"], ["cat"], name="cat", axis=1))
    conv_silu("cat", "out", 2 * c, c, 1, "cv3")
    m = _model(nodes, [_vi("images", [1, 3, 16, 20])], [_vi("out", [1, c, 16, 20])], inits)
    return m, count


def test_simple_pair_both_orders(rng):
    for swap in (False, True):
        m = _model(_silu_pair("x", "y", "a", swap), [_vi("x", [3, 5])], [_vi("y", [3, 5])])
        fused, n = fuse_silu(m)
        assert n == 1
        assert _ops(fused) == ["SiLU"]
        node = fused.graph.node[0]
        assert (
            node.domain == SILU_DOMAIN and list(node.input) == ["x"] and list(node.output) == ["y"]
        )
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"plugin_version": b"1", "plugin_namespace": b"trtcal"}
        assert any(o.domain == SILU_DOMAIN for o in fused.opset_import)
        onnx.checker.check_model(fused)
        assert [o.name for o in fused.graph.output] == ["y"]
        assert _ops(m) == ["Sigmoid", "Mul"]  # the input model is not modified


def test_not_fused_when_sigmoid_is_shared_or_different():
    x, y = _vi("x", [4]), _vi("y", [4])
    # Sigmoid also feeds an Add
    nodes = _silu_pair("x", "m", "a") + [helper.make_node("Add", ["m", "a_sig"], ["y"])]
    m = _model(nodes, [x], [y])
    out, n = fuse_silu(m)
    assert n == 0 and out.SerializeToString() == m.SerializeToString()
    # Sigmoid output is a graph output
    m = _model(_silu_pair("x", "y", "a"), [x], [y, _vi("a_sig", [4])])
    assert fuse_silu(m)[1] == 0
    # Mul(x, Sigmoid(z)) with z != x
    nodes = [helper.make_node("Sigmoid", ["z"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    m = _model(nodes, [x, _vi("z", [4])], [y])
    out, n = fuse_silu(m)
    assert n == 0 and out.SerializeToString() == m.SerializeToString()
    assert not any(o.domain == SILU_DOMAIN for o in out.opset_import)


def test_yolo_block_equal_in_onnxruntime(rng):
    m, pairs = _yolo_block(rng)
    fused, n = fuse_silu(m)
    assert n == pairs == 6
    assert "Sigmoid" not in _ops(fused) and "Mul" not in _ops(fused)
    assert sum(is_silu_node(node) for node in fused.graph.node) == pairs
    onnx.checker.check_model(fused)
    assert [o.name for o in fused.graph.output] == [o.name for o in m.graph.output]
    again, n2 = fuse_silu(fused)  # idempotent
    assert n2 == 0 and again.SerializeToString() == fused.SerializeToString()

    x = (rng.standard_t(3, size=(1, 3, 16, 20)) * 2).astype(np.float32)
    (want,) = _run(m, {"images": x})
    expanded, k = expand_silu(fused)
    assert k == pairs and not any(o.domain == SILU_DOMAIN for o in expanded.opset_import)
    onnx.checker.check_model(expanded)
    (got,) = _run(expanded, {"images": x})
    np.testing.assert_array_equal(got, want)


def test_subgraphs_are_fused(rng):
    then_graph = helper.make_graph(_silu_pair("x", "t_out", "t"), "then", [], [_vi("t_out", [6])])
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e_out"])], "else", [], [_vi("e_out", [6])]
    )
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    m = _model(nodes, [_vi("x", [6]), _vi("c", [], TensorProto.BOOL)], [_vi("y", [6])])
    fused, n = fuse_silu(m)
    assert n == 1
    branches = {a.name: a.g for a in fused.graph.node[0].attribute}
    assert _ops_of(branches["then_branch"]) == ["SiLU"]
    assert _ops_of(branches["else_branch"]) == ["Identity"]
    onnx.checker.check_model(fused)
    expanded, _ = expand_silu(fused)
    x = rng.standard_normal(6).astype(np.float32)
    for c in (True, False):
        np.testing.assert_array_equal(
            _run(expanded, {"x": x, "c": np.array(c)})[0], _run(m, {"x": x, "c": np.array(c)})[0]
        )


def test_sigmoid_read_inside_subgraph_is_not_fused():
    then_graph = helper.make_graph(
        [helper.make_node("Identity", ["a_sig"], ["t_out"])], "then", [], [_vi("t_out", [6])]
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["y0"], ["e_out"])], "else", [], [_vi("e_out", [6])]
    )
    nodes = _silu_pair("x", "y0", "a") + [
        helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph)
    ]
    m = _model(nodes, [_vi("x", [6]), _vi("c", [], TensorProto.BOOL)], [_vi("y", [6])])
    assert fuse_silu(m)[1] == 0


def test_quantize_from_scales_matches_the_exact_table(rng):
    m = _model(_silu_pair("x", "y", "a"), [_vi("x", [4096])], [_vi("y", [4096])])
    s_in, s_out = float(rng.uniform(0.01, 0.1)), float(rng.uniform(0.01, 0.1))
    q, n = fuse_silu(m, scales={"x": s_in, "y": s_out})
    assert n == 1
    assert _ops(q) == ["QuantizeLinear", "SiLU", "DequantizeLinear"]
    silu = q.graph.node[1]
    attrs = {a.name: helper.get_attribute_value(a) for a in silu.attribute}
    assert attrs["scale_in"] == pytest.approx(np.float32(s_in)) and attrs[
        "scale_out"
    ] == pytest.approx(np.float32(s_out))
    onnx.checker.check_model(q)
    assert [o.name for o in q.graph.output] == ["y"]
    assert quantize_silu(q, {"x": s_in, "y": s_out})[1] == 0  # already INT8

    # ONNX Runtime on the expansion (DQ, Sigmoid, Mul, Q in float32) against the exact table
    x = (rng.standard_t(3, size=4096) * 3).astype(np.float32)
    expanded, _ = expand_silu(q)
    onnx.checker.check_model(expanded)
    (got,) = _run(expanded, {"x": x})
    codes = np.clip(np.rint(x / np.float32(s_in)), -128, 127).astype(np.int8)
    want = ref.silu_int8(codes, attrs["scale_in"], attrs["scale_out"]).astype(
        np.float32
    ) * np.float32(attrs["scale_out"])
    diff = np.abs(got - want) / np.float32(attrs["scale_out"])
    assert diff.max() <= 1.0 + 1e-3
    assert np.count_nonzero(diff > 0.5) <= 2  # only float32 near-ties may differ


def test_quantize_absorbs_existing_qdq(rng):
    s_in, s_out = np.float32(0.05), np.float32(0.03)
    inits = [
        numpy_helper.from_array(np.array(s_in, np.float32), "s_in"),
        numpy_helper.from_array(np.array(s_out, np.float32), "s_out"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s_in", "zp"], ["xd"]),
    ]
    nodes += _silu_pair("xd", "y", "a")
    nodes += [
        helper.make_node("QuantizeLinear", ["y", "s_out", "zp"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "s_out", "zp"], ["out"]),
    ]
    m = _model(nodes, [_vi("x", [300])], [_vi("out", [300])], inits)
    q, n = fuse_silu(m, scales={})
    assert n == 1
    assert _ops(q) == ["QuantizeLinear", "SiLU", "DequantizeLinear"]
    assert list(q.graph.node[1].input) == ["xq"] and list(q.graph.node[1].output) == ["yq"]
    onnx.checker.check_model(q)
    x = (rng.standard_normal(300) * 4).astype(np.float32)
    (want,) = _run(m, {"x": x})
    (got,) = _run(expand_silu(q)[0], {"x": x})
    np.testing.assert_array_equal(got, want)


def test_nodes_without_both_scales_stay_float():
    m = _model(_silu_pair("x", "y", "a"), [_vi("x", [4])], [_vi("y", [4])])
    q, n = fuse_silu(m, scales={"x": 0.1})
    assert _ops(q) == ["SiLU"]
    assert quantize_silu(q, {"x": 0.1, "y": float("nan")})[1] == 0


def test_cli_fuse_silu(tmp_path, rng, capsys):
    from trtcal.cli import main

    m, pairs = _yolo_block(rng)
    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(m, src)
    assert main(["fuse-silu", str(src), str(dst)]) == 0
    assert f"fused {pairs} " in capsys.readouterr().out
    out = onnx.load(dst)
    assert sum(is_silu_node(n) for n in out.graph.node) == pairs
    # path input, and --scales
    scales = tmp_path / "scales.json"
    scales.write_text(json.dumps({"stem.conv": 0.05, "stem": 0.04}))
    assert main(["fuse-silu", str(src), str(dst), "--scales", str(scales)]) == 0
    assert "1 SiLU node(s) made INT8" in capsys.readouterr().out
    assert fuse_silu(str(dst))[1] == 0
    assert main(["fuse-silu", str(tmp_path / "missing.onnx"), str(dst)]) == 1


def test_quantize_with_a_table_makes_fused_silu_int8(rng):
    """The Q/DQ export gives each fused SiLU its INT8 scales from the table (plugin fields)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    import trtcal
    from trtcal.onnx import expand_silu, fuse_silu, quantize

    w = numpy_helper.from_array(
        (0.1 * rng.standard_normal((4, 3, 3, 3))).astype(np.float32), "w"
    )  # |conv| < 8
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        helper.make_node("Mul", ["c", "s"], ["y"], name="mul"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    fused, n = fuse_silu(m)
    assert n == 1
    table = trtcal.CalibrationTable({"x": 6.0, "c": 8.0, "y": 8.0})
    q, report = quantize(fused, table, return_report=True)
    assert report.silu_int8 == 1
    silu = [node for node in q.graph.node if node.op_type == "SiLU"][0]
    attrs = {a.name: a.f for a in silu.attribute if a.name in ("scale_in", "scale_out")}
    assert attrs == pytest.approx(
        {"scale_in": np.float32(8.0 / 127), "scale_out": np.float32(8.0 / 127)}
    )
    onnx.checker.check_model(q)
    # and it runs: the INT8 SiLU expanded back to its definition, in ONNX Runtime
    ort = pytest.importorskip("onnxruntime")
    runnable, _ = expand_silu(q)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    out = ort.InferenceSession(
        runnable.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, {"x": x})[0]
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    assert np.abs(out - ref).max() < 4 * 8.0 / 127


# ---------------------------------------------------------------- reports and CLI messages


def _cli(argv, capsys):
    from trtcal.cli import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _shared_sigmoid_model():
    """One fusable pair (b) and one whose Sigmoid also feeds an Add (a)."""
    nodes = _silu_pair("x", "m", "a") + [helper.make_node("Add", ["m", "a_sig"], ["t"], name="add")]
    nodes += _silu_pair("t", "y", "b")
    return _model(nodes, [_vi("x", [4])], [_vi("y", [4])])


def test_report_says_why_patterns_were_not_fused():
    m = _shared_sigmoid_model()
    _, n, report = fuse_silu(m, return_report=True)
    assert n == report.fused == 1
    assert report.not_fused == [("a/Mul", "the Sigmoid output 'a_sig' is also read by Add 'add'")]
    m = _model(_silu_pair("x", "y", "a"), [_vi("x", [4])], [_vi("y", [4]), _vi("a_sig", [4])])
    assert "a graph output" in fuse_silu(m, return_report=True)[2].not_fused[0][1]
    assert len(fuse_silu(m)) == 2  # the default return is unchanged


def test_report_says_why_silu_nodes_stay_float():
    m = _model(_silu_pair("x", "y", "a"), [_vi("x", [4])], [_vi("y", [4])])
    fused, _ = fuse_silu(m)
    for scales, why in [
        ({"x": 0.1}, "no scale for its output 'y'"),
        ({"y": 0.1}, "no scale for its input 'x'"),
        ({"x": 0.1, "y": float("nan")}, "invalid scale for its output 'y': NaN"),
        ({"x": -1.0, "y": 0.1}, "invalid scale for its input 'x': -1.0 is negative"),
        ({"x": 0.1, "y": float("inf")}, "invalid scale for its output 'y': inf is not finite"),
        ({"x": 1e-50, "y": 0.1}, "zero in float32"),
    ]:
        q, n, report = quantize_silu(fused, scales, return_report=True)
        assert n == report.quantized == 0 and _ops(q) == ["SiLU"]
        assert len(report.stayed_float) == 1 and why in report.stayed_float[0][1], scales
    q, n, report = fuse_silu(m, scales={"x": 0.1, "y": 0.05}, return_report=True)
    assert (
        n == 1
        and report.quantized == 1
        and report.stayed_float == []
        and report.scales_read == {"x", "y"}
    )
    assert quantize_silu(q, {"x": 0.1, "y": 0.05}, return_report=True)[2].already_int8 == 1


@pytest.mark.parametrize(
    "content",
    [
        b'{"x": 0.05}',
        b'{"a": [1, 2, 3], "b": "hello"}',
        b"{}",
        b"not a model\n",
        b"\x08\x07\x12\xff\xff",
    ],
)
@pytest.mark.parametrize("suffix", [".json", ".onnx"])
def test_cli_non_onnx_input_is_a_clear_error(tmp_path, capsys, content, suffix):
    src = tmp_path / f"model{suffix}"
    src.write_bytes(content)
    rc, out, err = _cli(["fuse-silu", str(src), str(tmp_path / "o.onnx")], capsys)
    assert rc == 1 and out == "" and err.startswith(f"trtcal: error: {src} is not an ONNX model")
    assert "Traceback" not in err and err.count("trtcal:") == 1
    assert not (tmp_path / "o.onnx").exists()
    rc, _, err = _cli(["fuse-silu", str(tmp_path), str(tmp_path / "o.onnx")], capsys)
    assert rc == 1 and "is a directory" in err


def test_cli_scales_inline_json_file_or_table(tmp_path, rng, capsys):
    import trtcal

    m = _model(_silu_pair("x", "y", "a"), [_vi("x", [4])], [_vi("y", [4])])
    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(m, src)
    rc, out, err = _cli(
        ["fuse-silu", str(src), str(dst), "--scales", '{"x": 0.05, "y": 0.04}'], capsys
    )
    assert rc == 0 and "1 SiLU node(s) made INT8" in out and err == ""
    table = tmp_path / "table.json"
    trtcal.CalibrationTable({"x": 6.35, "y": 5.08}).to_json(table)
    rc, out, _ = _cli(["fuse-silu", str(src), str(dst), "--scales", str(table)], capsys)
    assert rc == 0 and "1 SiLU node(s) made INT8" in out
    silu = next(n for n in onnx.load(dst).graph.node if n.op_type == "SiLU")
    attrs = {a.name: a.f for a in silu.attribute if a.name.startswith("scale")}
    assert attrs == pytest.approx({"scale_in": 0.05, "scale_out": 0.04})
    for bad in ["missing.json", "{not json", "[1, 2]"]:
        rc, _, err = _cli(["fuse-silu", str(src), str(dst), "--scales", bad], capsys)
        assert rc == 1 and err.startswith("trtcal: error: --scales") and err.count("trtcal:") == 1


@pytest.mark.parametrize(
    "value,why",
    [
        ("-1", "is negative"),
        ("0", "is zero"),
        ("Infinity", "not finite"),
        ("NaN", "NaN"),
        ('"0.1"', "not a number"),
        ("1e-50", "zero in float32"),
    ],
)
def test_cli_invalid_scale_is_an_error_naming_the_tensor(tmp_path, capsys, value, why):
    src = tmp_path / "in.onnx"
    onnx.save(_model(_silu_pair("x", "y", "a"), [_vi("x", [4])], [_vi("y", [4])]), src)
    rc, out, err = _cli(
        [
            "fuse-silu",
            str(src),
            str(tmp_path / "o.onnx"),
            "--scales",
            f'{{"x": 0.05, "c1": {value}}}',
        ],
        capsys,
    )
    assert rc == 1 and out == ""
    assert err.startswith("trtcal: error: --scales: invalid scale(s): tensor 'c1': ") and why in err


def test_cli_reports_partial_and_unmatched_scales(tmp_path, rng, capsys):
    m, pairs = _yolo_block(rng)
    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(m, src)
    rc, out, err = _cli(
        [
            "fuse-silu",
            str(src),
            str(dst),
            "--scales",
            '{"c1": 0.05, "stem.conv": 0.05, "stem": 0.04, "b1": 0.03, "cat": 0.1}',
        ],
        capsys,
    )
    assert rc == 0 and f"fused {pairs} " in out and "1 SiLU node(s) made INT8" in out
    assert f"{pairs - 1} SiLU node(s) stayed float:" in out
    assert "SiLU 'cv1/Mul/SiLU': no scale for its input 'stem.conv'" not in out  # stem.conv has one
    assert "SiLU 'cv1/Mul/SiLU': no scale for its input 'cv1.conv'" in out  # output 'b1' has one
    assert (
        "SiLU 'm.cv1/Mul/SiLU': no scale for its input 'm.cv1.conv'; no scale for its output 'b1m'"
        in out
    )
    assert err == f"trtcal: warning: --scales names 1 tensor(s) not in {src}: 'c1'\n"
    assert (
        "1 scale(s) of --scales are for tensors that are no SiLU input or output (unused)" in out
    )  # 'cat'


def test_cli_warns_when_nothing_is_fused_and_lists_skipped_patterns(tmp_path, capsys):
    src, dst = tmp_path / "relu.onnx", tmp_path / "o1.onnx"
    onnx.save(
        _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [4])], [_vi("y", [4])]), src
    )
    rc, out, err = _cli(["fuse-silu", str(src), str(dst)], capsys)
    assert rc == 0 and out == f"fused 0 Sigmoid+Mul pair(s) into SiLU; wrote {dst}\n"
    assert err == (
        f"trtcal: warning: nothing fused: {src} has no Mul(x, Sigmoid(x)) pattern; "
        f"{dst} is the same model\n"
    )
    onnx.save(
        _model(_silu_pair("x", "y", "a"), [_vi("x", [4])], [_vi("y", [4]), _vi("a_sig", [4])]), src
    )
    rc, out, err = _cli(["fuse-silu", str(src), str(dst)], capsys)
    assert rc == 0 and "skipped 1 Mul(x, Sigmoid(x)) pattern(s)" in out
    assert "Mul 'a/Mul': the Sigmoid output 'a_sig' is also read by a graph output" in out
    assert "all 1 Mul(x, Sigmoid(x)) pattern(s)" in err
    onnx.save(_shared_sigmoid_model(), src)
    rc, out, err = _cli(["fuse-silu", str(src), str(dst)], capsys)
    assert (
        rc == 0
        and "fused 1 " in out
        and "skipped 1 " in out
        and "also read by Add 'add'" in out
        and err == ""
    )
    onnx.save(_model(_silu_pair("x", "y", "a"), [_vi("x", [4])], [_vi("y", [4])]), src)
    assert _cli(["fuse-silu", str(src), str(dst)], capsys)[0] == 0
    rc, out, err = _cli(["fuse-silu", str(dst), str(tmp_path / "again.onnx")], capsys)
    assert (
        rc == 0
        and err
        == f"trtcal: warning: nothing fused: {dst} has no Mul(x, Sigmoid(x)) left "
        "(it already has 1 SiLU node(s))\n"
    )


def test_cli_says_onnxruntime_cannot_load_the_output(tmp_path, capsys):
    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(_model(_silu_pair("x", "y", "a"), [_vi("x", [4])], [_vi("y", [4])]), src)
    rc, out, _ = _cli(["fuse-silu", str(src), str(dst)], capsys)
    assert rc == 0 and "custom op trtcal:SiLU, which ONNX Runtime cannot load" in out
    assert (
        "--staticPlugins=<path to libtrtcal_plugins.so>" in out
        and "trtcal.onnx.expand_silu()" in out
    )
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph
    from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented

    with pytest.raises((Fail, InvalidGraph, OrtNotImplemented), match="SiLU"):  # what the note says
        ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    (got,) = _run(expand_silu(onnx.load(dst))[0], {"x": np.arange(4, dtype=np.float32)})
    assert got.shape == (4,)


def test_cli_help_names_static_plugins_onnxruntime_and_exit_status(capsys):
    with pytest.raises(SystemExit):
        _cli(["fuse-silu", "--help"], capsys)
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "trtexec --staticPlugins=<path to libtrtcal_plugins.so>" in text
        and "dynamicPlugins" not in text
    )
    assert "ONNX Runtime cannot load the output" in text and "trtcal.onnx.expand_silu()" in text
    assert "also when nothing was fused" in text and "inline" in text
