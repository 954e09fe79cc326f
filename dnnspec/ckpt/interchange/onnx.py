"""ONNX: the inference graph of a model, built with the `onnx` package (verified in onnxruntime).

Input `<input name>` float32 [batch, width]; output `logits` (or `probabilities` with
`probabilities=True`, which appends the loss's output function as `Model.predict` does).
Initializers keep dnnspec's scoped names (`dnn/hidden1/kernel`).

| dnnspec                    | ONNX                                                            |
|----------------------------|-----------------------------------------------------------------|
| dense, dropconnect         | Gemm(x, kernel, bias) (kernel (in, out): no transB); MatMul without bias |
| maxout(units, k)           | Gemm -> Reshape [-1, units, k] -> ReduceMax over axis 2         |
| batchnorm                  | BatchNormalization (inference; epsilon and momentum as attributes); `fold_batchnorm=True`: folded |
|                            | into the Gemm right before it (elsewhere Mul + Add)             |
| relu, sigmoid, tanh, softplus, elu, selu, leaky_relu, prelu, softmax | the ONNX op of that name (Softmax axis 1) |
| rrelu                      | LeakyRelu with the mean slope (its inference form)             |
| swish                      | Mul(x, Sigmoid(x))                                              |
| gelu                       | Gelu (opset >= 20), else its erf (or tanh) expansion            |
| dropout, alpha_dropout, gaussian_noise, activity_regularization, linear | omitted: identity at inference |

The default opset 17 runs on every onnxruntime since 1.14. `read_onnx` (in `onnx_import`) reads
graphs back: dnnspec's own and the ones exporters make of fully-connected nets.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import UserError
from ...ops.activations import SELU_ALPHA, SELU_LAMBDA
from ...version import __version__
from . import Variables, atomic_write, output_function, require

if TYPE_CHECKING:
    from ...program import Program

DEFAULT_OPSET = 17


class _Graph:
    """Nodes and initializers of the graph being built; arrays stay editable until `build` (folding)."""

    def __init__(self, variables: Variables, opset: int, fold: bool):
        self.variables, self.opset, self.fold = variables, opset, fold
        self.nodes: list[dict] = []  # {"op", "inputs", "outputs", "attrs"}
        self.arrays: dict[str, np.ndarray] = {}
        self.affine: dict | None = None  # the last Gemm/MatMul node and its arrays, for folding
        self.skips: list[str] = []  # the inputs of the residual blocks open at this point
        self._n = 0

    def const(self, name: str, value) -> str:
        self.arrays[name] = np.ascontiguousarray(value, dtype=np.float32)
        return name

    def var(self, name: str) -> str:
        return self.const(name, self.variables[name])

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        self._n += 1
        out = f"{op.lower()}_{self._n}"
        self.nodes.append({"op": op, "inputs": list(inputs), "outputs": [out], "attrs": attrs})
        return out

    def scalar(self, value: float) -> str:
        return self.const(f"const_{self._n}_{len(self.arrays)}", np.float32(value))


# ---------------------------------------------------------------- op -> nodes
def _affine(g: _Graph, spec, op, x: str) -> str:
    kernel = g.var(f"{spec.name}/kernel")
    if op.use_bias:
        out = g.node("Gemm", [x, kernel, g.var(f"{spec.name}/bias")])
    else:
        out = g.node("MatMul", [x, kernel])
    g.affine = {"node": g.nodes[-1], "out": out, "kernel": kernel, "name": spec.name}
    return out


def _maxout(g: _Graph, spec, op, x: str) -> str:
    z = _affine(g, spec, op, x)
    g.affine = None  # the max follows: nothing to fold into
    g.arrays[f"{spec.name}/pieces_shape"] = np.array([-1, op.units, op.k], np.int64)
    pieces = g.node("Reshape", [z, f"{spec.name}/pieces_shape"])
    if g.opset >= 18:  # axes became an input in opset 18
        g.arrays[f"{spec.name}/max_axes"] = np.array([2], np.int64)
        return g.node("ReduceMax", [pieces, f"{spec.name}/max_axes"], keepdims=0)
    return g.node("ReduceMax", [pieces], axes=[2], keepdims=0)


def _batchnorm(g: _Graph, spec, op, x: str) -> str:
    v, n = g.variables, spec.n_in
    gamma = v[f"{spec.name}/gamma"] if op.scale else np.ones(n)
    beta = v[f"{spec.name}/beta"] if op.center else np.zeros(n)
    mean, var = v[f"{spec.name}/moving_mean"], v[f"{spec.name}/moving_variance"]
    if not g.fold:
        ins = [g.const(f"{spec.name}/{k}", a) for k, a in
               (("gamma", gamma), ("beta", beta), ("moving_mean", mean), ("moving_variance", var))]
        return g.node("BatchNormalization", [x, *ins], epsilon=float(op.epsilon), momentum=float(op.momentum))
    # y = x*s + t with s = gamma/sqrt(var + eps), t = beta - mean*s (in float64, then float32)
    s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + op.epsilon)
    t = beta.astype(np.float64) - mean.astype(np.float64) * s
    a = g.affine
    if a is not None and a["out"] == x:  # fold into the dense layer right before
        node = a["node"]
        folded = f"{a['name']}/kernel_folded_{spec.name}"
        g.const(folded, g.arrays[a["kernel"]].astype(np.float64) * s)
        bias = g.arrays[node["inputs"][2]].astype(np.float64) if node["op"] == "Gemm" else 0.0
        bias_name = g.const(f"{a['name']}/bias_folded_{spec.name}", bias * s + t)
        node["op"], node["inputs"] = "Gemm", [node["inputs"][0], folded, bias_name]
        g.affine = None
        return x
    y = g.node("Mul", [x, g.const(f"{spec.name}/scale", s)])
    return g.node("Add", [y, g.const(f"{spec.name}/shift", t)])


def _op(onnx_op: str, **fixed):
    def build(g: _Graph, spec, op, x: str) -> str:
        return g.node(onnx_op, [x], **{k: (f(op) if callable(f) else f) for k, f in fixed.items()})
    return build


def _identity(g: _Graph, spec, op, x: str) -> str:
    return x


def _prelu(g: _Graph, spec, op, x: str) -> str:
    return g.node("PRelu", [x, g.var(f"{spec.name}/alpha")])


def _swish(g: _Graph, spec, op, x: str) -> str:
    return g.node("Mul", [x, g.node("Sigmoid", [x])])


def _gelu(g: _Graph, spec, op, x: str) -> str:
    mode = "tanh" if op.approximate else "none"
    if g.opset >= 20:
        return g.node("Gelu", [x], approximate=mode)
    if op.approximate:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x3 = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [x3, g.scalar(0.044715)])])
        phi = g.node("Tanh", [g.node("Mul", [inner, g.scalar(math.sqrt(2.0 / math.pi))])])
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        phi = g.node("Erf", [g.node("Mul", [x, g.scalar(math.sqrt(0.5))])])
    return g.node("Mul", [g.node("Mul", [x, g.node("Add", [phi, g.scalar(1.0)])]), g.scalar(0.5)])


def _residual(g: _Graph, spec, op, x: str) -> str:
    g.skips.append(x)
    g.affine = None  # x feeds the skip too: a batch norm in the body must not fold into its Gemm
    return x


def _residual_add(g: _Graph, spec, op, x: str) -> str:
    """skip + p·body (dnnspec's inference form); skip = MatMul(input, projection) if declared."""
    skip = g.skips.pop()
    if op.projection:
        skip = g.node("MatMul", [skip, g.var(f"{spec.name}/kernel")])
    if op.survival < 1.0:
        x = g.node("Mul", [x, g.scalar(op.survival)])
    g.affine = None
    return g.node("Add", [x, skip])


# dnnspec catalogue name -> ONNX nodes.
ONNX_OPS = {
    "dense": _affine,
    "dropconnect": _affine,  # inference form: the full kernel
    "maxout": _maxout,
    "batchnorm": _batchnorm,
    "dropout": _identity,
    "alpha_dropout": _identity,
    "gaussian_noise": _identity,
    "activity_regularization": _identity,  # a training-time loss term
    "linear": _identity,
    "sigmoid": _op("Sigmoid"),
    "tanh": _op("Tanh"),
    "softmax": _op("Softmax", axis=1),
    "softplus": _op("Softplus"),
    "relu": _op("Relu"),
    "leaky_relu": _op("LeakyRelu", alpha=lambda op: float(op.alpha)),
    "rrelu": _op("LeakyRelu", alpha=lambda op: (op.lower + op.upper) / 2),
    "prelu": _prelu,
    "elu": _op("Elu", alpha=lambda op: float(op.alpha)),
    "selu": _op("Selu", alpha=SELU_ALPHA, gamma=SELU_LAMBDA),
    "swish": _swish,
    "gelu": _gelu,
    "residual": _residual,
    "residual_add": _residual_add,
}
OUTPUT_OPS = {"softmax": _op("Softmax", axis=1), "sigmoid": _op("Sigmoid")}


def onnx_model(program: Program, variables: Variables, probabilities: bool = False, fold_batchnorm: bool = False,
               opset: int = DEFAULT_OPSET):
    """The model's inference graph as an `onnx.ModelProto` (checked by onnx.checker)."""
    onnx = require("onnx", "onnx", "exporting to onnx")
    from onnx import TensorProto, helper, numpy_helper

    if not 13 <= opset <= onnx.defs.onnx_opset_version():
        raise UserError(f"opset {opset} is not supported: choose 13 to {onnx.defs.onnx_opset_version()}")
    g = _Graph(variables, opset, fold_batchnorm)
    x = program.input_name
    for spec in program.ops:
        build = ONNX_OPS.get(spec.kind)
        if build is None:
            raise UserError(f"{spec.kind} (op '{spec.name}') has no ONNX equivalent")
        x = build(g, spec, spec.build(), x)
    fn = output_function(program) if probabilities else None
    if fn:
        x = OUTPUT_OPS[fn](g, None, None, x)
    out = "probabilities" if fn else "logits"
    if g.nodes and g.nodes[-1]["outputs"] == [x]:
        g.nodes[-1]["outputs"] = [out]
    else:  # no op, or the last ones were identities
        g.nodes.append({"op": "Identity", "inputs": [x], "outputs": [out], "attrs": {}})
    used = {i for n in g.nodes for i in n["inputs"]}
    graph = helper.make_graph(
        [helper.make_node(n["op"], n["inputs"], n["outputs"], **n["attrs"]) for n in g.nodes],
        program.model_name,
        [helper.make_tensor_value_info(program.input_name, TensorProto.FLOAT, ["batch", program.input_width])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", program.output_width])],
        [numpy_helper.from_array(a, name) for name, a in g.arrays.items() if name in used],
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="dnnspec", producer_version=__version__)
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # the oldest runtime that can load it
    helper.set_model_props(proto, {"dnnspec_spec": program.canonical})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(program: Program, variables: Variables, path: Path, probabilities: bool = False,
                fold_batchnorm: bool = False, opset: int = DEFAULT_OPSET) -> Path:
    """Write the inference graph to an .onnx file."""
    onnx = require("onnx", "onnx", "exporting to onnx")
    proto = onnx_model(program, variables, probabilities, fold_batchnorm, opset)
    with atomic_write(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def read_onnx(path: Path):
    """The layers, weights and model description of an ONNX graph (see `onnx_import`)."""
    from .onnx_import import read_onnx as read

    return read(path)
