"""A two-node ONNX model whose hidden activation turns a negative input into NaN (shared by
tests)."""

import onnx
from onnx import TensorProto, helper


def write_log_relu_model(path: str) -> str:
    """x -> Log -> 'l' -> Relu -> y: Log of a negative value gives NaN in 'l' (not in the input)."""
    g = helper.make_graph(
        [helper.make_node("Log", ["x"], ["l"]), helper.make_node("Relu", ["l"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path
