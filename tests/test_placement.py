"""Q/DQ placement rules (trtcal.onnx.placement), one small ONNX graph per rule: where the Q/DQ
go, which scales they share, the placement report, and ONNX Runtime running the result close to
the float model."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import trtcal  # noqa: E402
from trtcal import CalibrationTable  # noqa: E402
from trtcal.onnx import placement, quantize  # noqa: E402

OPSET = 17


def _model(nodes, inputs, outputs, inits, opset=OPSET):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _in(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _out(name, rank):
    return helper.make_tensor_value_info(
        name, TensorProto.FLOAT, [f"{name}_d{i}" for i in range(rank)]
    )


def _w(rng, name, shape, scale=0.3):
    return numpy_helper.from_array((rng.laplace(size=shape) * scale).astype(np.float32), name)


def _conv(name, x, w, y, k=3):
    return helper.make_node("Conv", [x, w], [y], name=name, kernel_shape=[k, k], pads=[k // 2] * 4)


def _silu(prefix, x, y):
    return [
        helper.make_node("Sigmoid", [x], [f"{prefix}_sig"], name=f"{prefix}_sigmoid"),
        helper.make_node("Mul", [x, f"{prefix}_sig"], [y], name=f"{prefix}_mul"),
    ]


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def calibrate(model, feeds):
    """max ranges of every float node output and graph input on ONNX Runtime FP32 activations."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for n in probe.graph.node:
        for o in n.output:
            if o not in have and types.get(o, TensorProto.FLOAT) == TensorProto.FLOAT:
                probe.graph.output.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, None))
    acts = _run(probe, feeds)
    acts.update(feeds)
    return CalibrationTable(
        {k: trtcal.amax(v, name=k) for k, v in acts.items() if v.dtype == np.float32}
    )


def _plan(m, **kw):
    return placement.plan(m, {}, placement.PlacementOptions(**kw))


def _quantized(p):
    return {(d.node, d.index) for d in p.quantized()}


def _producer(model, name):
    return next((n for n in model.graph.node if name in n.output), None)


def _init(model, name):
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _dq_scale(model, tensor):
    dq = _producer(model, tensor)
    assert dq is not None and dq.op_type == "DequantizeLinear", f"{tensor} is not produced by a DQ"
    return float(_init(model, dq.input[1])), _producer(model, dq.input[0]).input[0]


def _dq_fed(model, node_name):
    node = next(n for n in model.graph.node if n.name == node_name)
    return [
        i
        for i, t in enumerate(node.input)
        if _producer(model, t) is not None and _producer(model, t).op_type == "DequantizeLinear"
    ]


def _close(q, m, feeds, rel=0.08):
    ref, got = _run(m, feeds), _run(q, feeds)
    for k in ref:
        if not np.issubdtype(ref[k].dtype, np.floating):
            assert np.array_equal(got[k], ref[k]), k
            continue
        err = np.linalg.norm(got[k] - ref[k]) / np.linalg.norm(ref[k])
        assert err < rel, (k, err)
        assert not np.array_equal(got[k], ref[k]), f"{k}: identical to FP32: not quantized?"


def _x(rng, *shape):
    return {"x": rng.standard_normal(shape).astype(np.float32)}


# ------------------------------------------------------------------ weighted ops and axes


@pytest.mark.parametrize(
    "op,wshape,attrs,axis",
    [
        ("Conv", (5, 3, 3, 3), {"kernel_shape": [3, 3]}, 0),
        ("ConvTranspose", (3, 4, 2, 2), {"kernel_shape": [2, 2], "strides": [2, 2]}, 1),
        ("Gemm", (12, 7), {}, 1),
        ("Gemm", (7, 12), {"transB": 1}, 0),
        ("MatMul", (12, 7), {}, 1),
    ],
)
def test_rule_weighted_inputs_axes(rng, op, wshape, attrs, axis):
    x = _in("x", ["N", 3, 9, 7] if op.startswith("Conv") else ["N", 12])
    node = helper.make_node(op, ["x", "w"], ["y"], name="op", **attrs)
    m = _model([node], [x], [_out("y", 4 if op.startswith("Conv") else 2)], [_w(rng, "w", wshape)])
    p = _plan(m)
    assert _quantized(p) == {("op", 0)} and p.quantized()[0].rule == "weighted-input"
    assert [(w.tensor, w.axis) for w in p.weights] == [("w", axis)]
    feeds = _x(rng, *([6, 3, 9, 7] if op.startswith("Conv") else [6, 12]))
    q = quantize(m, calibrate(m, feeds))
    dq = _producer(q, next(n for n in q.graph.node if n.name == "op").input[1])
    assert {a.name: a.i for a in dq.attribute}["axis"] == axis
    assert _init(q, dq.input[1]).shape == (wshape[axis],)
    _close(q, m, feeds)


# ------------------------------------------------------------------ residual add


def residual_silu_model(rng, swap=False):
    """x -> conv_a -> SiLU s ; conv_b(s) -> SiLU t ; Add(t, s) -> y  (YOLOv8 bottleneck)."""
    add_in = ["s", "t"] if swap else ["t", "s"]
    nodes = (
        [_conv("conv_a", "x", "wa", "a")]
        + _silu("sa", "a", "s")
        + [_conv("conv_b", "s", "wb", "b")]
        + _silu("sb", "b", "t")
        + [helper.make_node("Add", add_in, ["y"], name="add")]
    )
    return _model(
        nodes,
        [_in("x", ["N", 4, 8, 8])],
        [_out("y", 4)],
        [_w(rng, "wa", (6, 4, 3, 3)), _w(rng, "wb", (6, 6, 3, 3), 0.15)],
    )


@pytest.mark.parametrize("swap", [False, True])
def test_rule_residual_add_dq_on_the_unfused_branch(rng, swap):
    m = residual_silu_model(rng, swap)
    p = _plan(m)
    skip = 0 if swap else 1
    assert ("add", skip) in _quantized(p) and ("add", 1 - skip) not in _quantized(p)
    fused = next(d for d in p.decisions if d.node == "add" and not d.quantize)
    assert "conv_b" in fused.reason
    feeds = _x(rng, 5, 4, 8, 8)
    q = quantize(m, calibrate(m, feeds))
    assert _dq_fed(q, "add") == [skip]
    _close(q, m, feeds)


def test_rule_residual_add_no_fusable_branch_or_constant(rng):
    nodes = [
        _conv("c", "x", "w", "a"),
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Add", ["a", "bias"], ["b"], name="bias_add"),
        helper.make_node("Add", ["r", "x"], ["y"], name="plain_add"),
        helper.make_node("Add", ["b", "a"], ["z"], name="shared_add"),
    ]  # a has 2 consumers: no fusion
    m = _model(
        nodes,
        [_in("x", ["N", 3, 5, 5])],
        [_out("y", 4), _out("z", 4)],
        [
            _w(rng, "w", (3, 3, 3, 3)),
            numpy_helper.from_array(np.ones((3, 1, 1), np.float32), "bias"),
        ],
    )
    p = _plan(m)
    assert not any(d.node in ("bias_add", "plain_add") and d.quantize for d in p.decisions)
    assert all(not d.quantize for d in p.decisions if d.node == "plain_add")
    # shared_add: the conv output a is read twice (bias_add, shared_add), so it is materialized and
    # neither a nor b = a + bias can carry the add in the conv's epilogue: no residual fusion
    assert not any(d.quantize for d in p.decisions if d.node == "shared_add")
    assert "no input is a Conv/Gemm epilogue" in next(
        d.reason for d in p.decisions if d.node == "shared_add"
    )
    assert not any(d.quantize for d in _plan(m, residual_add=False).decisions if d.op_type == "Add")


# ------------------------------------------------------------------ pooling, concat, resize


@pytest.mark.parametrize(
    "pool,attrs",
    [
        ("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
        ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
        ("GlobalAveragePool", {}),
    ],
)
def test_rule_pooling_commutes_between_quantized_layers(rng, pool, attrs):
    nodes = [
        _conv("c1", "x", "w1", "a"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node(pool, ["r"], ["p"], name="pool", **attrs),
        _conv("c2", "p", "w2", "y", k=1),
        helper.make_node(pool, ["r"], ["z"], name="pool_out", **attrs),
    ]  # feeds the graph output only
    m = _model(
        nodes,
        [_in("x", ["N", 3, 8, 8])],
        [_out("y", 4), _out("z", 4)],
        [_w(rng, "w1", (4, 3, 3, 3)), _w(rng, "w2", (5, 4, 1, 1))],
    )
    p = _plan(m)
    assert ("pool", 0) in _quantized(p) and ("pool_out", 0) not in _quantized(p)
    assert "feeds no quantized op" in next(d.reason for d in p.decisions if d.node == "pool_out")
    groups = p.scale_groups()
    assert (groups.get("r") == {"r", "p"}) == (pool == "MaxPool")  # max of INT8 values: same scale
    feeds = _x(rng, 4, 3, 8, 8)
    table = calibrate(m, feeds)
    q = quantize(m, table)
    assert _dq_fed(q, "pool") == [0] and _dq_fed(q, "pool_out") == []
    if pool == "MaxPool":
        assert _dq_scale(q, next(n for n in q.graph.node if n.name == "c2").input[0])[
            0
        ] == pytest.approx(table["r"] / 127, rel=1e-6)
    _close(q, m, feeds)


def concat_model(rng):
    """conv1 -> SiLU a ; conv2 -> b ; Concat(a, b) -> conv3 -> y ; and a shape Concat (int64)."""
    nodes = (
        [_conv("c1", "x", "w1", "a0")]
        + _silu("s1", "a0", "a")
        + [
            _conv("c2", "x", "w2", "b"),
            helper.make_node("Concat", ["a", "b"], ["cat"], name="concat", axis=1),
            _conv("c3", "cat", "w3", "y", k=1),
            helper.make_node("Shape", ["y"], ["shp"], name="shape"),
            helper.make_node("Concat", ["shp", "extra"], ["shp2"], name="shape_concat", axis=0),
            helper.make_node("Reshape", ["y", "shp_flat"], ["flat"], name="reshape"),
        ]
    )
    inits = [
        _w(rng, "w1", (4, 3, 3, 3)),
        _w(rng, "w2", (5, 3, 3, 3), 2.0),
        _w(rng, "w3", (6, 9, 1, 1)),
        numpy_helper.from_array(np.array([1], np.int64), "extra"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "shp_flat"),
    ]
    return _model(
        nodes,
        [_in("x", ["N", 3, 6, 6])],
        [
            _out("y", 4),
            _out("flat", 2),
            helper.make_tensor_value_info("shp2", TensorProto.INT64, [5]),
        ],
        inits,
    )


def test_rule_concat_one_scale_for_all_inputs_and_output(rng):
    m = concat_model(rng)
    inferred = onnx.shape_inference.infer_shapes(m)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    p = placement.plan(m, types)
    assert {("concat", 0), ("concat", 1)} <= _quantized(p)
    assert not any(d.node == "shape_concat" for d in p.decisions)  # int64 shape arithmetic
    assert p.scale_groups()["a"] == {"a", "b", "cat"}
    feeds = _x(rng, 4, 3, 6, 6)
    table = calibrate(m, feeds)
    assert table["b"] > 2 * table["a"]  # different ranges, one scale
    q, rep = quantize(m, table, return_report=True)
    widest = max(table["a"], table["b"], table["cat"]) / 127
    concat = next(n for n in q.graph.node if n.name == "concat")
    c3 = next(n for n in q.graph.node if n.name == "c3")
    for t in list(concat.input) + [c3.input[0]]:
        assert _dq_scale(q, t)[0] == pytest.approx(widest, rel=1e-6)
    assert sorted(rep.shared_scales[0]) == ["a", "b", "cat"]
    _close(q, m, feeds, rel=0.1)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_rule_resize_commutes(rng, mode):
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        _conv("c1", "x", "w1", "a"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Resize", ["r", "", "scales"], ["u"], name="resize", mode=mode),
        _conv("c2", "u", "w2", "y"),
    ]
    m = _model(
        nodes,
        [_in("x", ["N", 3, 5, 5])],
        [_out("y", 4)],
        [_w(rng, "w1", (4, 3, 3, 3)), _w(rng, "w2", (2, 4, 3, 3)), scales],
    )
    p = _plan(m)
    assert ("resize", 0) in _quantized(p) and not any(d.index == 2 for d in p.decisions)
    assert ("r" in p.scale_groups()) == (mode == "nearest")
    feeds = _x(rng, 3, 3, 5, 5)
    q = quantize(m, calibrate(m, feeds))
    assert _dq_fed(q, "resize") == [0]
    _close(q, m, feeds)


# ------------------------------------------------------------------ attention


def attention_model(rng, d=8):
    """x[N,T,d] -> q,k,v projections -> Softmax(q k^T) v -> LayerNorm -> y."""
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="proj_q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="proj_k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="proj_v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
        helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["o"], name="pv"),
        helper.make_node("LayerNormalization", ["o", "gamma", "beta"], ["y"], name="ln", axis=-1),
    ]
    inits = [_w(rng, n, (d, d), 0.3) for n in ("wq", "wk", "wv")]
    inits += [
        numpy_helper.from_array(np.ones(d, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(d, np.float32), "beta"),
    ]
    return _model(nodes, [_in("x", ["N", 7, d])], [_out("y", 3)], inits)


def test_rule_attention_matmul_with_softmax_and_layernorm_in_high_precision(rng):
    m = attention_model(rng)
    p = _plan(m)
    assert {("qk", 0), ("qk", 1), ("pv", 0), ("pv", 1)} <= _quantized(p)
    assert all(d.rule == "attention-matmul" for d in p.decisions if d.node in ("qk", "pv"))
    hp = {d.node: d for d in p.decisions if d.rule == "high-precision"}
    assert set(hp) == {"softmax", "ln"} and not any(d.quantize for d in hp.values())
    assert [(w.tensor, w.axis) for w in p.weights] == [("wq", 1), ("wk", 1), ("wv", 1)]
    feeds = {"x": rng.standard_normal((3, 7, 8)).astype(np.float32)}
    q = quantize(m, calibrate(m, feeds))
    assert _dq_fed(q, "qk") == [0, 1] and _dq_fed(q, "pv") == [0, 1]
    assert _dq_fed(q, "softmax") == [] and _dq_fed(q, "ln") == []
    _close(q, m, feeds, rel=0.1)
    off = _plan(m, attention=False)
    assert not any(d.quantize for d in off.decisions if d.node in ("qk", "pv"))


# ------------------------------------------------------------------ SiLU and the detector head


def test_rule_silu_no_qdq_between_sigmoid_and_mul(rng):
    m = residual_silu_model(rng)
    view = placement.GraphView(m, {})
    assert len(placement.silu_edges(view)) == 2
    p = _plan(m)
    # a decision inside the pattern (as a naive "quantize every Mul input" placement would make)
    p.decisions.append(placement.Decision("sa_sig", "sa_mul", "Mul", 1, True, "naive", ""))
    p.decisions.append(placement.Decision("a", "sa_sigmoid", "Sigmoid", 0, True, "naive", ""))
    dropped = placement.rule_silu(view, p)
    assert {(d.tensor, d.node) for d in dropped} == {("sa_sig", "sa_mul"), ("a", "sa_sigmoid")}
    assert all(
        d.rule == "silu" and not d.quantize
        for d in p.decisions
        if d.node in ("sa_mul", "sa_sigmoid")
    )
    q = quantize(m, calibrate(m, _x(rng, 2, 4, 8, 8)))
    for n in q.graph.node:
        if n.op_type in ("Sigmoid", "Mul"):
            assert _dq_fed(q, n.name) == [], n.name


def head_model(rng):
    """Two convs -> Concat -> Sigmoid (graph output: class scores), the Concat also feeding a
    conv."""
    nodes = [
        _conv("c1", "x", "w1", "a"),
        _conv("c2", "x", "w2", "b"),
        helper.make_node("Concat", ["a", "b"], ["logits"], name="concat", axis=1),
        helper.make_node("Sigmoid", ["logits"], ["scores"], name="head_sigmoid"),
        _conv("c3", "logits", "w3", "y", k=1),
    ]
    return _model(
        nodes,
        [_in("x", ["N", 3, 5, 5])],
        [_out("scores", 4), _out("y", 4)],
        [_w(rng, "w1", (2, 3, 3, 3)), _w(rng, "w2", (2, 3, 3, 3)), _w(rng, "w3", (3, 4, 1, 1))],
    )


def test_rule_head_sigmoid_kept_out_of_int8(rng):
    m = head_model(rng)
    view = placement.GraphView(m, {})
    assert [n.name for n in placement.head_sigmoids(view)] == ["head_sigmoid"]
    on = _plan(m)
    assert not any(d.quantize for d in on.decisions if d.node == "concat")
    assert {d.rule for d in on.decisions if d.node == "concat"} == {"head-sigmoid"}
    assert ("c3", 0) in _quantized(on)  # the weighted op itself still runs in INT8
    off = _plan(m, head_sigmoid_float=False)
    assert {("concat", 0), ("concat", 1)} <= _quantized(off)
    feeds = _x(rng, 3, 3, 5, 5)
    table = calibrate(m, feeds)
    q = quantize(m, table)
    assert _dq_fed(q, "concat") == []
    assert _dq_fed(quantize(m, table, head_sigmoid_float=False), "concat") == [0, 1]


# ------------------------------------------------------------------ report


def test_placement_report_lists_quantized_and_float_with_reasons(rng, tmp_path):
    m = concat_model(rng)
    feeds = _x(rng, 2, 3, 6, 6)
    path = tmp_path / "placement.txt"
    q, rep = quantize(m, calibrate(m, feeds), placement_report=path, return_report=True)
    text = path.read_text()
    assert text.splitlines() == rep.placement_lines()
    quantized = text.split("## left in float")[0]
    assert "a -> concat [Concat input 0]: concat:" in quantized
    assert "x -> c1 [Conv input 0]: weighted-input" in quantized
    assert "w3 -> c3 [weight input 1]: weight, per channel, axis 0" in quantized
    assert "shared scale: a, b, cat" in text
    m2 = residual_silu_model(rng)
    rep2 = quantize(m2, calibrate(m2, _x(rng, 2, 4, 8, 8)), return_report=True)[1]
    left = "\n".join(rep2.placement_lines()).split("## left in float")[1]
    assert "t -> add [Add input 0]: residual-add: fused branch" in left


def test_op_types_restrict_the_rules(rng):
    m = concat_model(rng)
    p = _plan(m, op_types=("Conv",))
    assert {d.op_type for d in p.decisions} == {"Conv"}
    with pytest.raises(ValueError, match="accepted"):
        quantize(m, {}, op_types=["Softmax"])
