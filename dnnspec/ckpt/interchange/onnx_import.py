"""ONNX import: the graph of a fully-connected net read back as dnnspec layers and weights.

Read with the `onnx` package (never a runtime). The graph must be a chain from its one input to
its one output; node by node (after folding constants: initializers, Constant nodes, Identity
and Cast of constants, exporters' de-duplicated initializers):

| ONNX                                              | dnnspec                                   |
|---------------------------------------------------|-------------------------------------------|
| Gemm(x, W, C) (alpha, beta, transB)               | dense: kernel = alpha*W (transposed if transB), bias = beta*C |
| MatMul(x, W) [then Add(., b)]                     | dense (without bias if no Add)            |
| Gemm/MatMul, Reshape [-1, units, k], ReduceMax(axis 2) | maxout(units, k) (dnnspec's export)  |
| BatchNormalization (inference)                    | batchnorm (epsilon, momentum: the attributes) |
| Mul/Add/Sub/Div by per-unit constants             | batchnorm with moving mean 0 and variance 1 - epsilon (a folded batch norm) |
| Relu, Sigmoid, Tanh, Softplus, Elu, Selu, LeakyRelu, PRelu, Softmax, Gelu | the activation of that name |
| any other elementwise arithmetic of x alone (GELU as Erf, SiLU as x*Sigmoid(x), ...) | the dnnspec activation it computes, found by evaluating it (to 1e-5) on [-10, 10] |
| Dropout (its ratio), Identity                     | dropout; nothing                          |
| Flatten(axis 1), Reshape [-1, width] before the first layer | nothing                         |

Anything else is a UserError naming the first node that does not fit (op type and name).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ...errors import UserError
from ...ops.activations import SELU_ALPHA, SELU_LAMBDA
from . import Source, SourceLayer, SourceTensor, reading, require
from .describe import LayerInfo, ModelInfo, f32

SUPPORTED = ("Gemm, MatMul(+Add), BatchNormalization, Relu, Sigmoid, Tanh, Softplus, Elu, Selu, LeakyRelu, PRelu, "
             "Softmax, Gelu (or elementwise arithmetic computing a dnnspec activation), Dropout, Identity, "
             "Flatten/Reshape at the input")


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x) if np.asarray(x).dtype.kind == "f" else x


# Elementwise ops: (inputs, attributes) -> output. Used to fold constants and to evaluate the
# arithmetic exporters emit for an activation.
ELEMENTWISE = {
    "Add": lambda a, at: a[0] + a[1],
    "Sub": lambda a, at: a[0] - a[1],
    "Mul": lambda a, at: a[0] * a[1],
    "Div": lambda a, at: a[0] / a[1],
    "Pow": lambda a, at: np.power(a[0], a[1]),
    "Neg": lambda a, at: -a[0],
    "Abs": lambda a, at: np.abs(a[0]),
    "Exp": lambda a, at: np.exp(a[0]),
    "Log": lambda a, at: np.log(a[0]),
    "Sqrt": lambda a, at: np.sqrt(a[0]),
    "Reciprocal": lambda a, at: 1.0 / a[0],
    "Erf": lambda a, at: _erf(a[0]),
    "Tanh": lambda a, at: np.tanh(a[0]),
    "Sigmoid": lambda a, at: _sigmoid(a[0]),
    "Relu": lambda a, at: np.maximum(a[0], 0.0),
    "Softplus": lambda a, at: np.logaddexp(0.0, a[0]),
    "Softsign": lambda a, at: a[0] / (1.0 + np.abs(a[0])),
    "Elu": lambda a, at: np.where(a[0] > 0, a[0], at.get("alpha", 1.0) * np.expm1(np.minimum(a[0], 0.0))),
    "Selu": lambda a, at: at.get("gamma", 1.0507009873554805) * np.where(
        a[0] > 0, a[0], at.get("alpha", 1.6732632423543772) * np.expm1(np.minimum(a[0], 0.0))),
    "LeakyRelu": lambda a, at: np.where(a[0] >= 0, a[0], at.get("alpha", 0.01) * a[0]),
    "HardSigmoid": lambda a, at: np.clip(at.get("alpha", 0.2) * a[0] + at.get("beta", 0.5), 0.0, 1.0),
    "Max": lambda a, at: np.maximum.reduce(list(np.broadcast_arrays(*a))),
    "Min": lambda a, at: np.minimum.reduce(list(np.broadcast_arrays(*a))),
    "Identity": lambda a, at: a[0],
    "Greater": lambda a, at: a[0] > a[1],  # torch's softplus threshold: Where(x > 20, x, Softplus(x))
    "Less": lambda a, at: a[0] < a[1],
    "GreaterOrEqual": lambda a, at: a[0] >= a[1],
    "LessOrEqual": lambda a, at: a[0] <= a[1],
    "Where": lambda a, at: np.where(a[0], a[1], a[2]),
    "Clip": lambda a, at: np.clip(a[0], a[1] if len(a) > 1 else at.get("min", -np.inf),
                                  a[2] if len(a) > 2 else at.get("max", np.inf)),
}
FLOAT_CASTS = {1, 10, 11, 16}  # ONNX float, float16, double, bfloat16


def _fold_other(op: str, ins: list, at: dict):
    """Constant folding of the shape ops exporters put around weights; None: not foldable."""
    if op == "Cast":
        to = at.get("to")
        return ins[0].astype(np.float32 if to in FLOAT_CASTS else np.int64) if to else None
    if op == "Transpose":
        return np.transpose(ins[0], at.get("perm"))
    if op == "Reshape" and len(ins) == 2:
        shape = [d if d != 0 else s for d, s in zip(ins[1].tolist(), ins[0].shape + (0,) * len(ins[1]))]
        return ins[0].reshape(shape)
    if op == "Unsqueeze":
        axes = at.get("axes") if len(ins) == 1 else ins[1].tolist()
        out = ins[0]
        for ax in sorted(axes):
            out = np.expand_dims(out, ax)
        return out
    if op == "Squeeze":
        axes = at.get("axes") if len(ins) == 1 else ins[1].tolist()
        return np.squeeze(ins[0], axis=tuple(axes) if axes else None)
    if op == "Concat":
        return np.concatenate(ins, axis=at.get("axis", 0))
    return None


# Candidate activations for elementwise arithmetic: (kind, params, f) on float64.
def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


CANDIDATES = [
    ("linear", {}, lambda x: x),
    ("relu", {}, lambda x: np.maximum(x, 0.0)),
    ("sigmoid", {}, _sigmoid),
    ("tanh", {}, np.tanh),
    ("softplus", {}, lambda x: np.logaddexp(0.0, x)),
    ("selu", {}, lambda x: SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))),
    ("swish", {}, lambda x: x * _sigmoid(x)),
    ("gelu", {"approximate": False}, _gelu),
    ("gelu", {"approximate": True}, _gelu_tanh),
]
PROBE = np.linspace(-10.0, 10.0, 2001)


def _identify(f) -> tuple[str, dict] | None:
    """The dnnspec activation an elementwise function computes (to 1e-5 on [-10, 10]), if any."""
    with np.errstate(all="ignore"):
        y = np.asarray(f(PROBE), np.float64)
    if y.shape != PROBE.shape or not np.all(np.isfinite(y)):
        return None

    def close(g) -> bool:
        return bool(np.all(np.abs(y - g) <= 1e-5 * (1.0 + np.abs(g))))

    for kind, params, g in CANDIDATES:
        if close(g(PROBE)):
            return kind, params
    neg = float(np.interp(-1.0, PROBE, y))
    alpha = -neg  # leaky_relu: f(-1) = -alpha
    if alpha > 0 and close(np.where(PROBE >= 0, PROBE, alpha * PROBE)):
        return "leaky_relu", {"alpha": f32(alpha)}
    alpha = neg / math.expm1(-1.0)  # elu: f(-1) = alpha (e^-1 - 1)
    if alpha > 0 and close(np.where(PROBE > 0, PROBE, alpha * np.expm1(np.minimum(PROBE, 0.0)))):
        return "elu", {"alpha": f32(alpha)}
    return None


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _scoped(name: str | None, suffix: str) -> str | None:
    """`dnn/hidden1/kernel` -> `dnn/hidden1` (dnnspec's own initializer names); else None."""
    if name and name.endswith("/" + suffix):
        return name[: -len(suffix) - 1] or None
    return None


class _Reader:
    def __init__(self, model, path: Path):
        from onnx import numpy_helper

        self.path = path
        g = model.graph
        self.nodes = list(g.node)
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.done: set[int] = set()
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1 or len(g.output) != 1:
            raise UserError(f"{path}: the graph has {len(inputs)} inputs and {len(g.output)} outputs; dnnspec "
                            "imports graphs with one input and one output")
        self.input, self.output = inputs[0], g.output[0].name
        self._fold(numpy_helper)
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.nodes):
            if i not in self.done:
                for v in n.input:
                    if v:
                        self.consumers[v].append(i)
        self.layers: list[SourceLayer] = []
        self.info: list[LayerInfo] = []
        self.notes: list[str] = []
        self.width: int | None = None
        dims = self.input.type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].HasField("dim_value"):
            self.width = int(dims[1].dim_value)
        self.input_width = self.width
        self.no_momentum = 0

    # ------------------------------------------------------------ constants
    def _fold(self, numpy_helper) -> None:
        for i, n in enumerate(self.nodes):
            at = _attrs(n)
            value = None
            if n.domain not in ("", "ai.onnx"):
                continue
            if n.op_type == "Constant":
                tensor = next((a.t for a in n.attribute if a.name == "value"), None)
                if tensor is not None:
                    value = numpy_helper.to_array(tensor)
                elif "value_float" in at or "value_int" in at:
                    value = np.array(at.get("value_float", at.get("value_int")))
                elif "value_floats" in at or "value_ints" in at:
                    value = np.array(at.get("value_floats", at.get("value_ints")))
            elif n.input and all(v in self.consts for v in n.input if v) and any(n.input):
                ins = [self.consts[v] for v in n.input if v]
                try:
                    with np.errstate(all="ignore"):
                        if n.op_type in ELEMENTWISE:
                            value = np.asarray(ELEMENTWISE[n.op_type](ins, at))
                            value = value.astype(np.result_type(*ins)) if value.dtype != np.result_type(*ins) else value
                        else:
                            value = _fold_other(n.op_type, ins, at)
                except (ValueError, TypeError, IndexError):
                    value = None
            if value is not None and len(n.output) == 1:
                self.consts[n.output[0]] = np.asarray(value)
                self.done.add(i)

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    # ------------------------------------------------------------ messages
    def unsupported(self, i: int, why: str = "") -> UserError:
        n = self.nodes[i]
        return UserError(f"{self.path}: node '{n.name or n.output[0]}' ({n.op_type}) is not supported"
                         + (f": {why}" if why else "") + f"; dnnspec imports ONNX graphs of fully-connected nets: "
                         + SUPPORTED)

    def next_nodes(self, value: str) -> list[int]:
        return [i for i in self.consumers.get(value, []) if i not in self.done]

    def only(self, value: str) -> int | None:
        """The one node reading `value` (None if it is the output or read by several)."""
        nxt = self.next_nodes(value)
        return nxt[0] if len(nxt) == 1 and value != self.output else None

    # ------------------------------------------------------------ the chain
    def read(self) -> None:
        cur = self.input.name
        while cur != self.output:
            nxt = self.next_nodes(cur)
            if not nxt:
                raise UserError(f"{self.path}: the value '{cur}' leads nowhere: the graph is not a chain from "
                                f"'{self.input.name}' to '{self.output}'")
            i = nxt[0]
            n = self.nodes[i]
            if n.domain not in ("", "ai.onnx"):
                raise self.unsupported(i, f"an op of domain '{n.domain}'")
            handler = getattr(self, f"_op_{n.op_type}", None)
            if len(nxt) == 1 and handler is not None:
                cur = handler(i, n, cur)
            elif len(nxt) > 1 or n.op_type in ELEMENTWISE:
                cur = self._region(cur, min(nxt))
            else:
                raise self.unsupported(i)
        for i, n in enumerate(self.nodes):
            if i not in self.done:
                raise self.unsupported(i, "not on the chain from the graph's input to its output")

    def _take(self, i: int, cur: str) -> None:
        n = self.nodes[i]
        if not n.input or n.input[0] != cur:
            raise self.unsupported(i, f"it reads '{cur}' as other than its first input")
        for extra in n.output[1:]:
            if extra and self.next_nodes(extra):
                raise self.unsupported(i, f"its output '{extra}' is used")
        self.done.add(i)

    def _weights(self, i: int, names: list[str]) -> list[np.ndarray]:
        out = []
        for name in names:
            value = self.const(name)
            if value is None:
                raise self.unsupported(i, f"its input '{name}' is not a constant (weights must be initializers)")
            out.append(np.asarray(value))
        return out

    def _activation(self, kind: str, params: dict | None = None, source: str = "") -> None:
        merge = bool(self.info) and self.info[-1].kind in ("dense", "dropconnect") and kind != "linear"
        if kind == "linear":
            return
        self.info.append(LayerInfo(kind, params or {}, self.info[-1].name if merge else None, merge, source))

    def _where(self, n) -> str:
        return f"node '{n.name or n.output[0]}' ({n.op_type})"

    # dense
    def _dense(self, i: int, kernel: np.ndarray, kname: str, transposed: bool, shape: tuple,
               bias: np.ndarray | None, bname: str | None, out: str) -> str:
        n = self.nodes[i]
        if kernel.ndim != 2 or (self.width is not None and kernel.shape[0] != self.width):
            raise self.unsupported(i, f"its weight has shape {shape}, not (inputs {self.width}, units)")
        units = kernel.shape[1]
        if self.input_width is None and not self.layers:
            self.input_width = kernel.shape[0]
        name = _scoped(kname, "kernel")
        tensors = [SourceTensor(kname, kernel, "kernel", transposed, shape)]
        if bias is not None:
            b = np.asarray(bias)
            if b.size == 1:
                b = np.full(units, b.reshape(()), b.dtype)
            elif b.size == units:
                b = b.reshape(units)
            else:
                raise self.unsupported(i, f"its bias has shape {np.shape(bias)}, not ({units},)")
            tensors.append(SourceTensor(bname, b, "bias", False, tuple(np.shape(bias))))
        self.width = units
        # maxout: Reshape [-1, units, k] then ReduceMax over the pieces (dnnspec's own export)
        r = self.only(out)
        if r is not None and self.nodes[r].op_type == "Reshape":
            shape_in = self.nodes[r].input[1] if len(self.nodes[r].input) > 1 else ""
            target = self.const(shape_in)
            m = self.only(self.nodes[r].output[0])
            if (target is not None and target.size == 3 and m is not None and self.nodes[m].op_type == "ReduceMax"
                    and int(target[1]) * int(target[2]) == units):
                at = _attrs(self.nodes[m])
                axes = at.get("axes") if len(self.nodes[m].input) < 2 else self.const(self.nodes[m].input[1])
                axes = None if axes is None else [int(a) for a in np.ravel(axes)]
                if axes in ([2], [-1]) and at.get("keepdims", 1) == 0:
                    self._take(r, out)
                    self._take(m, self.nodes[r].output[0])
                    self.layers.append(SourceLayer("dense", name or kname, tensors))
                    self.info.append(LayerInfo("maxout", {"units": int(target[1]), "k": int(target[2]),
                                                          "use_bias": bias is not None}, name, False,
                                               self._where(n)))
                    self.width = int(target[1])
                    return self.nodes[m].output[0]
        self.layers.append(SourceLayer("dense", name or kname, tensors))
        self.info.append(LayerInfo("dense", {"units": units, "use_bias": bias is not None}, name, False,
                                   self._where(n)))
        return out

    def _op_Gemm(self, i, n, cur):
        at = _attrs(n)
        if at.get("transA", 0):
            raise self.unsupported(i, "transA=1")
        self._take(i, cur)
        (w,) = self._weights(i, [n.input[1]])
        kernel = w.T if at.get("transB", 0) else w
        alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
        if alpha != 1.0:
            kernel = kernel * np.float32(alpha)
        bias = None
        if len(n.input) > 2 and n.input[2]:
            (bias,) = self._weights(i, [n.input[2]])
            bias = bias * np.float32(beta) if beta != 1.0 else bias
        return self._dense(i, kernel, n.input[1], bool(at.get("transB", 0)), tuple(w.shape), bias,
                           n.input[2] if bias is not None else None, n.output[0])

    def _op_MatMul(self, i, n, cur):
        self._take(i, cur)
        (w,) = self._weights(i, [n.input[1]])
        out, bias, bname = n.output[0], None, None
        a = self.only(out)
        if a is not None and self.nodes[a].op_type == "Add":
            other = [v for v in self.nodes[a].input if v != out]
            value = self.const(other[0]) if len(other) == 1 else None
            if value is not None and value.size in (1, w.shape[-1]) and value.ndim <= 2:
                self.done.add(a)
                bias, bname, out = value, other[0], self.nodes[a].output[0]
        return self._dense(i, w, n.input[1], False, tuple(w.shape), bias, bname, out)

    # batch norm
    def _op_BatchNormalization(self, i, n, cur):
        at = _attrs(n)
        if at.get("training_mode", 0):
            raise self.unsupported(i, "training_mode=1")
        self._take(i, cur)
        gamma, beta, mean, var = self._weights(i, list(n.input[1:5]))
        # ONNX always has a scale and a shift: ones and zeros may be an op without them (center or
        # scale off) or one not trained yet; either way the same function, so neither is recorded
        params = {"epsilon": f32(at.get("epsilon", 1e-5))}
        if "momentum" in at:
            params["momentum"] = f32(at["momentum"])
        else:
            self.no_momentum += 1
        if not np.all(gamma == 1):
            params["scale"] = True
        if not np.all(beta == 0):
            params["center"] = True
        name = _scoped(n.input[1], "gamma")
        tensors = [SourceTensor(v, np.asarray(a).reshape(-1), local) for v, a, local in
                   zip(n.input[1:5], (gamma, beta, mean, var), ("gamma", "beta", "moving_mean", "moving_variance"))]
        self.layers.append(SourceLayer("batchnorm", name or n.name or n.output[0], tensors))
        self.info.append(LayerInfo("batchnorm", params, name, False, self._where(n)))
        return n.output[0]

    # activations
    def _simple(kind, params=None):
        def handler(self, i, n, cur):
            self._take(i, cur)
            self._activation(kind, dict(params or {}), self._where(n))
            return n.output[0]
        return handler

    _op_Relu = _simple("relu")
    _op_Sigmoid = _simple("sigmoid")
    _op_Tanh = _simple("tanh")
    _op_Softplus = _simple("softplus")

    def _op_Elu(self, i, n, cur):
        self._take(i, cur)
        self._activation("elu", {"alpha": f32(_attrs(n).get("alpha", 1.0))}, self._where(n))
        return n.output[0]

    def _op_LeakyRelu(self, i, n, cur):
        self._take(i, cur)
        self._activation("leaky_relu", {"alpha": f32(_attrs(n).get("alpha", 0.01))}, self._where(n))
        return n.output[0]

    def _op_Selu(self, i, n, cur):
        at = _attrs(n)
        if not (math.isclose(at.get("alpha", SELU_ALPHA), SELU_ALPHA, rel_tol=1e-6)
                and math.isclose(at.get("gamma", SELU_LAMBDA), SELU_LAMBDA, rel_tol=1e-6)):
            raise self.unsupported(i, f"alpha={at.get('alpha')}, gamma={at.get('gamma')} are not SELU's constants")
        self._take(i, cur)
        self._activation("selu", {}, self._where(n))
        return n.output[0]

    def _op_Gelu(self, i, n, cur):
        self._take(i, cur)
        self._activation("gelu", {"approximate": _attrs(n).get("approximate", "none") == "tanh"}, self._where(n))
        return n.output[0]

    def _op_Softmax(self, i, n, cur):
        axis = _attrs(n).get("axis")
        if axis not in (None, 1, -1):
            raise self.unsupported(i, f"axis={axis}")
        self._take(i, cur)
        self._activation("softmax", {}, self._where(n))
        return n.output[0]

    def _op_PRelu(self, i, n, cur):
        self._take(i, cur)
        (slope,) = self._weights(i, [n.input[1]])
        if slope.size != 1 and (self.width is not None and slope.size != self.width or
                                sum(d != 1 for d in slope.shape) > 1):
            raise self.unsupported(i, f"its slope has shape {slope.shape}, not one per unit")
        name = _scoped(n.input[1], "alpha")
        self.layers.append(SourceLayer("prelu", name or n.name or n.output[0],
                                       [SourceTensor(n.input[1], slope.reshape(-1), "alpha", False, slope.shape)]))
        merge = bool(self.info) and self.info[-1].kind in ("dense", "dropconnect") and \
            (name is None or name == self.info[-1].name)
        self.info.append(LayerInfo("prelu", {}, self.info[-1].name if merge else name, merge, self._where(n)))
        return n.output[0]

    # identities
    def _op_Identity(self, i, n, cur):
        self._take(i, cur)
        return n.output[0]

    def _op_Dropout(self, i, n, cur):
        self._take(i, cur)
        at = _attrs(n)
        rate = at.get("ratio", 0.5)
        if len(n.input) > 1 and n.input[1]:
            value = self.const(n.input[1])
            if value is None:
                raise self.unsupported(i, "its ratio is not a constant")
            rate = float(value)
        if rate > 0:
            self.info.append(LayerInfo("dropout", {"rate": f32(rate)}, None, False, self._where(n)))
        return n.output[0]

    def _op_Flatten(self, i, n, cur):
        if self.layers or _attrs(n).get("axis", 1) != 1:
            raise self.unsupported(i, "Flatten is read only at the input, with axis 1")
        self._take(i, cur)
        return n.output[0]

    def _op_Reshape(self, i, n, cur):
        shape = self.const(n.input[1]) if len(n.input) > 1 else None
        if self.layers or shape is None or shape.size != 2 or int(shape[0]) not in (-1, 0) \
                or (self.width is not None and int(shape[1]) not in (-1, self.width)):
            raise self.unsupported(i, "Reshape is read only at the input, to (batch, width)")
        self._take(i, cur)
        if int(shape[1]) > 0 and self.width is None:
            self.width = self.input_width = int(shape[1])
        return n.output[0]

    # elementwise arithmetic: an activation, or a per-unit affine map (a folded batch norm)
    def _region(self, cur: str, start: int) -> str:
        members: list[int] = []
        values = {cur}
        end = None
        for j in range(start, len(self.nodes)):
            if j in self.done:
                continue
            n = self.nodes[j]
            if not any(v in values for v in n.input if v):
                continue
            if n.op_type not in ELEMENTWISE or len(n.output) != 1 or \
                    any(v not in values and v not in self.consts for v in n.input if v):
                first = members[0] if members else j
                raise self.unsupported(first, f"the value '{cur}' feeds several nodes that do not form an "
                                              "elementwise function of it alone")
            members.append(j)
            values.add(n.output[0])
            inside = set(members)
            open_ = {v for v in values
                     if v == self.output or any(c not in inside and c not in self.done for c in self.consumers[v])}
            if open_ == {n.output[0]}:
                end = n.output[0]
                break
        if end is None:
            raise self.unsupported(members[0] if members else start, "an elementwise computation that never ends")
        # arithmetic may go on after the value is whole again (GELU's final * 0.5): the longest that fits
        ext, v = [], end
        while (j := self.only(v)) is not None:
            n = self.nodes[j]
            if n.op_type not in ELEMENTWISE or hasattr(self, f"_op_{n.op_type}") or len(n.output) != 1 or \
                    any(u != v and u not in self.consts for u in n.input if u):
                break  # arithmetic only: an activation node after it is a layer of its own
            ext.append(j)
            v = n.output[0]
        for k in range(len(ext), -1, -1):
            nodes = members + ext[:k]
            found = self._classify(cur, nodes)
            if found is not None:
                break
        else:
            what = self._what(members)
            raise self.unsupported(members[0], f"it and the nodes after it ({what}) compute an elementwise "
                                               "function that is neither a dnnspec activation nor a per-unit "
                                               "affine map")
        for j in nodes:
            self.done.add(j)
        end = self.nodes[nodes[-1]].output[0]
        what = self._what(nodes)
        if found[0] == "activation":
            self._activation(found[1], found[2], what)
            return end
        _, a, b, names = found
        width = a.size
        base = names[0]
        name = _scoped(base, "scale")
        eps = 1e-3
        tensors = [SourceTensor(base, a.astype(np.float32), "gamma"),
                   SourceTensor(names[-1] if len(names) > 1 else f"{base} (shift)", b.astype(np.float32), "beta"),
                   SourceTensor(f"{base} (moving mean 0)", np.zeros(width, np.float32), "moving_mean"),
                   SourceTensor(f"{base} (moving variance 1 - epsilon)", np.full(width, 1 - eps, np.float32),
                                "moving_variance")]
        self.layers.append(SourceLayer("batchnorm", name or base, tensors))
        self.info.append(LayerInfo("batchnorm", {"epsilon": eps, "center": True, "scale": True}, name, False, what))
        self.notes.append(f"{what}: a per-unit affine map (e.g. a folded batch norm), imported as batchnorm with "
                          f"moving mean 0 and variance 1 - epsilon ({eps:g})")
        self.width = width
        return end

    def _what(self, nodes: list[int]) -> str:
        return f"{len(nodes)} node{'s' * (len(nodes) != 1)} from {self._where(self.nodes[nodes[0]])}"

    def _classify(self, cur: str, nodes: list[int]):
        """What elementwise nodes compute of `cur`: ("activation", kind, params), ("affine", a, b,
        constant names) for x*a + b per unit, or None."""
        end = self.nodes[nodes[-1]].output[0]
        consts = [(v, self.consts[v]) for j in nodes for v in self.nodes[j].input if v in self.consts]

        def run(x):
            env = {cur: x}
            for j in nodes:
                n = self.nodes[j]
                ins = [env[v] if v in env else np.asarray(self.consts[v], np.float64) for v in n.input if v]
                env[n.output[0]] = ELEMENTWISE[n.op_type](ins, _attrs(n))
            return env[end]

        if all(np.size(c) == 1 for _, c in consts):
            found = _identify(run)
            return None if found is None else ("activation", *found)
        width = max(np.size(c) for _, c in consts)
        if self.width is not None and width != self.width:
            return None
        try:
            with np.errstate(all="ignore"):
                ys = [np.asarray(run(np.full((1, width), v, np.float64)), np.float64).reshape(-1)
                      for v in (0.0, 1.0, -2.5, 3.0)]
        except ValueError:  # constants that do not broadcast over the units
            return None
        b, a = ys[0], ys[1] - ys[0]
        if any(y.shape != a.shape for y in ys) or not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)) \
                or not np.allclose(ys[2], b - 2.5 * a, rtol=1e-5, atol=1e-6) \
                or not np.allclose(ys[3], b + 3.0 * a, rtol=1e-5, atol=1e-6):
            return None
        return "affine", a, b, [v for v, c in consts if np.size(c) > 1]


def read_onnx(path: Path) -> Source:
    """The layers, weights and model description of an ONNX graph of a fully-connected net."""
    onnx = require("onnx", "onnx", "importing from onnx")
    with reading(path, "not a readable ONNX model"):
        model = onnx.load(str(path))
        if model.functions:  # exporters may wrap modules in local functions: inline them
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        if not model.graph.node and not model.graph.output:
            raise UserError(f"{path}: an empty ONNX model (no graph)")
        r = _Reader(model, path)  # damaged tensors fail here: CheckpointErrors naming the file
        r.read()
    notes = list(r.notes)
    if r.no_momentum:
        notes.append("the graph does not record batch-norm momentum (it matters only for training): a spec "
                     "written from it has dnnspec's default")
    info = ModelInfo("the ONNX graph", r.info, model.graph.name or None, r.input.name, r.input_width,
                     records_dropout=False)
    info.notes.append("an ONNX inference graph holds no dropout or noise layers (they do nothing at inference): "
                      "a spec written from it has none")
    return Source(layers=r.layers, order="the ONNX graph", model=info, notes=notes)
