"""PyTorch: the equivalent `torch.nn.Sequential` and its `state_dict` in safetensors (no pickle).

Written and read with the `safetensors` package's NumPy API: torch itself is never imported.
Names are the Sequential's: `<index>.<parameter>`, one index per module, weightless modules
included. Layouts and names (CONVENTIONS.md §5, §7):

| dnnspec                  | torch                                                          |
|--------------------------|----------------------------------------------------------------|
| dense kernel (in, out)   | `Linear.weight` (out, in) = kernel.T; bias as is               |
| batchnorm gamma, beta    | `BatchNorm1d.weight`, `.bias` (ones/zeros if scale/center off) |
| moving_mean, _variance   | `.running_mean`, `.running_var`; `.num_batches_tracked` (int64) |
|                          | = the training steps done (dnnspec keeps no per-layer count)   |
| batchnorm momentum m     | torch momentum 1 - m; eps as is (torch's default is 1e-5)      |
| prelu alpha (per unit)   | `PReLU(num_parameters=n).weight`                               |

torch has maxout only by composition: Linear(n_in, units*k) then MaxPool1d(k), which on a
(batch, units*k) tensor takes the max over each run of k adjacent columns (dnnspec's layout,
column i*k + j). DropConnect, GaussianNoise and ActivityRegularization have no torch module:
their inference forms are exported (Linear; Identity; Identity). Note that torch's BatchNorm1d
averages the unbiased batch variance into running_var while dnnspec (like Keras) uses the biased
one: further training in torch drifts slightly; inference is identical.

safetensors keeps no tensor order, so reading takes the module order only from what states it:
the metadata of dnnspec's exports (`dnnspec_order`, and `dnnspec_layers`, the model itself, for
`ckpt import --write-spec`) or `nn.Sequential` indices (`0`, `2`, `10`, compared as numbers). A
state_dict of named modules states none: it pairs by shape where that is unambiguous, else by
`--map` (see `assign_layers`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import UserError
from . import (Source, SourceLayer, SourceTensor, Variables, atomic_write, float32, natural_key, output_function,
               reading, require)
from .describe import ModelInfo, describe_program, from_json, to_json

if TYPE_CHECKING:
    from ...program import Program


@dataclass
class TorchModule:
    code: str  # constructor source, e.g. "nn.Linear(2, 16)"
    params: dict = field(default_factory=dict)  # parameter name -> (dnnspec variable or None, array)
    comment: str = ""
    body: list[TorchModule] | None = None  # a residual block's body (an nn.Sequential)
    projection: TorchModule | None = None  # ... and the Linear of its skip, if it has one


# A residual block as a module (He et al. 2016), with stochastic depth as dnnspec computes it.
RESIDUAL_CLASS = '''
class Residual(nn.Module):
    """dnnspec's residual block: skip + body(x), skip = x or projection(x). Stochastic depth
    (Huang et al. 2016): in training the body runs with probability p per batch, else only the
    skip is returned; at inference the body is scaled by p."""

    def __init__(self, body, projection=None, p=1.0):
        super().__init__()
        self.body, self.projection, self.p = body, projection, p

    def forward(self, x):
        skip = x if self.projection is None else self.projection(x)
        if self.p >= 1.0:
            return skip + self.body(x)
        if self.training:
            return skip + self.body(x) if float(torch.rand(())) < self.p else skip
        return skip + self.p * self.body(x)
'''


# ---------------------------------------------------------------- op -> torch modules
def _linear(spec, op, variables, step, comment=""):
    v = spec.variable_names()
    params = {"weight": (v[0], variables[v[0]].T)}
    if op.use_bias:
        params["bias"] = (v[1], variables[v[1]])
    bias = "" if op.use_bias else ", bias=False"
    return [TorchModule(f"nn.Linear({spec.n_in}, {op.columns()}{bias})", params, comment or spec.name)]


def _dropconnect(spec, op, variables, step):
    return _linear(spec, op, variables, step, f"{spec.name}: dropconnect(rate={op.rate!r}); torch has none: "
                                              "its inference form")


def _maxout(spec, op, variables, step):
    return [*_linear(spec, op, variables, step, f"{spec.name}: maxout(units={op.units}, k={op.k}) pieces"),
            TorchModule(f"nn.MaxPool1d({op.k})", {}, f"{spec.name}: max over each run of {op.k} columns")]


def _batchnorm(spec, op, variables, step):
    n, name = spec.n_in, spec.name
    params = {}
    affine = op.scale or op.center
    if affine:  # torch has one flag for both: a missing one is the identity (1 or 0)
        params["weight"] = (f"{name}/gamma", variables[f"{name}/gamma"]) if op.scale else (None, np.ones(n))
        params["bias"] = (f"{name}/beta", variables[f"{name}/beta"]) if op.center else (None, np.zeros(n))
    params["running_mean"] = (f"{name}/moving_mean", variables[f"{name}/moving_mean"])
    params["running_var"] = (f"{name}/moving_variance", variables[f"{name}/moving_variance"])
    params["num_batches_tracked"] = (None, np.array(step, np.int64))
    momentum = float(f"{1.0 - op.momentum:.12g}")  # torch's momentum weighs the new statistic
    code = f"nn.BatchNorm1d({n}, eps={op.epsilon!r}, momentum={momentum!r}" + ("" if affine else ", affine=False") + ")"
    return [TorchModule(code, params, f"{name}: dnnspec/Keras momentum {op.momentum!r}")]


def _prelu(spec, op, variables, step):
    v = spec.variable_names()[0]
    return [TorchModule(f"nn.PReLU(num_parameters={spec.n_in})", {"weight": (v, variables[v])}, spec.name)]


def _module(template, *attrs, note=""):
    """A weightless module whose arguments are the op's attributes."""
    def build(spec, op, variables, step):
        code = template.format(*(repr(getattr(op, a)) for a in attrs))
        return [TorchModule(code, {}, f"{spec.name}: {spec.kind}" + (f"; {note}" if note else ""))]
    return build


def _gelu(spec, op, variables, step):
    mode = "tanh" if op.approximate else "none"
    return [TorchModule(f"nn.GELU(approximate={mode!r})", {}, f"{spec.name}: gelu")]


def _residual(spec, op, variables, body: list[TorchModule]) -> TorchModule:
    projection = None
    if op.projection:
        v = spec.variable_names()[0]
        projection = TorchModule(f"nn.Linear({op.skip}, {spec.n_out}, bias=False)", {"weight": (v, variables[v].T)},
                                 f"{spec.name}: the projection of the block's input")
    what = f"{spec.name.rpartition('/')[0] or spec.name}: a residual block"
    what += f", stochastic depth p={op.survival:.4g}" if op.survival < 1 else ""
    return TorchModule(f"Residual(p={op.survival!r})", {}, what, body, projection)


def _flat(modules: list[TorchModule], prefix: str = ""):
    """(state_dict prefix, module) of every module, nested ones included, in model order."""
    for i, m in enumerate(modules):
        key = f"{prefix}{i}"
        yield key, m
        if m.body is not None:
            yield from _flat(m.body, key + ".body.")
        if m.projection is not None:
            yield key + ".projection", m.projection


def _code_lines(m: TorchModule, index: str, depth: int) -> list[str]:
    pad = "    " * depth
    if m.body is None:
        return [f"{pad}{m.code},  # {index}: {m.comment}"]
    lines = [f"{pad}Residual(  # {index}: {m.comment}", f"{pad}    nn.Sequential("]
    for i, c in enumerate(m.body):
        lines += _code_lines(c, f"{index}.body.{i}", depth + 2)
    lines.append(f"{pad}    ),")
    if m.projection is not None:
        lines.append(f"{pad}    projection={m.projection.code},  # {index}.projection")
    p = m.code[len("Residual(p="):-1]
    lines += [f"{pad}    p={p},", f"{pad}),"]
    return lines


# dnnspec catalogue name -> torch modules.
TORCH_MODULES = {
    "dense": _linear,
    "dropconnect": _dropconnect,
    "maxout": _maxout,
    "batchnorm": _batchnorm,
    "prelu": _prelu,
    "dropout": _module("nn.Dropout(p={})", "rate"),
    "alpha_dropout": _module("nn.AlphaDropout(p={})", "rate"),
    "gaussian_noise": _module("nn.Identity()", note="torch has no GaussianNoise: its inference form"),
    "activity_regularization": _module("nn.Identity()", note="a training-time loss term in dnnspec and Keras; "
                                                            "torch adds penalties in the training loop"),
    "sigmoid": _module("nn.Sigmoid()"),
    "tanh": _module("nn.Tanh()"),
    "softmax": _module("nn.Softmax(dim=1)"),
    "softplus": _module("nn.Softplus()"),
    "relu": _module("nn.ReLU()"),
    "leaky_relu": _module("nn.LeakyReLU(negative_slope={})", "alpha"),
    "rrelu": _module("nn.RReLU(lower={}, upper={})", "lower", "upper"),
    "elu": _module("nn.ELU(alpha={})", "alpha"),
    "selu": _module("nn.SELU()"),
    "swish": _module("nn.SiLU()"),
    "gelu": _gelu,
    "linear": _module("nn.Identity()"),
}
OUTPUT_MODULES = {"softmax": "nn.Softmax(dim=1)", "sigmoid": "nn.Sigmoid()"}


def torch_modules(program: Program, variables: Variables | None = None, step: int = 0,
                  probabilities: bool = False) -> list[TorchModule]:
    """The torch modules equivalent to the spec's ops, in order (with their parameter values)."""
    if variables is None:  # code only: shapes suffice
        variables = {f"{s.name}/{local}": np.zeros(v.shape) for s in program.ops for local, v in s.variables.items()}
    out: list[TorchModule] = []
    stack = [out]  # the module lists being filled: the model's, then each open residual body
    for spec in program.ops:
        if spec.kind == "residual":
            stack.append([])
            continue
        if spec.kind == "residual_add":
            body = stack.pop()
            stack[-1].append(_residual(spec, spec.build(), variables, body))
            continue
        build = TORCH_MODULES.get(spec.kind)
        if build is None:
            raise UserError(f"{spec.kind} (op '{spec.name}') has no PyTorch equivalent")
        stack[-1].extend(build(spec, spec.build(), variables, step))
    fn = output_function(program) if probabilities else None
    if fn:
        out.append(TorchModule(OUTPUT_MODULES[fn], {}, "what dnnspec's predict applies"))
    return out


def torch_model_code(program: Program, weights=None, probabilities: bool = False) -> str:
    """Python source of the equivalent torch.nn.Sequential (`load_state_dict` takes the export)."""
    lines = [f"# The dnnspec model '{program.model_name}' as a torch.nn.Sequential "
             f"(input: {program.input_name}[{program.input_width}]).",
             "import torch",
             "from torch import nn",
             ""]
    modules = torch_modules(program, probabilities=probabilities)
    if any(m.body is not None for _, m in _flat(modules)):
        lines += RESIDUAL_CLASS.strip("\n").split("\n") + ["", ""]
    lines.append("model = nn.Sequential(")
    for i, m in enumerate(modules):
        lines += _code_lines(m, str(i), 1)
    lines.append(")")
    if weights:
        lines += ["", "from safetensors.torch import load_file", "",
                  f"model.load_state_dict(load_file({str(weights)!r}))",
                  "model.eval()  # inference: dropout off, running statistics"]
    return "\n".join(lines) + "\n"


def state_dict(program: Program, variables: Variables, step: int,
               probabilities: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(name -> array, name -> dnnspec variable) of the equivalent Sequential; `step` (the updates
    done) is every BatchNorm1d's num_batches_tracked."""
    tensors, origin = {}, {}
    for prefix, m in _flat(torch_modules(program, variables, int(step), probabilities)):
        for pname, (var, value) in m.params.items():
            key = f"{prefix}.{pname}"
            tensors[key] = value if value.dtype == np.int64 else float32(value)
            origin[key] = var or ""
    return tensors, origin


def export_torch(program: Program, variables: Variables, path: Path, step: int, probabilities: bool = False) -> Path:
    """A safetensors state_dict for `torch_model_code(...)`'s model; metadata maps names back to dnnspec's.

    `step`, the number of updates done, becomes num_batches_tracked. The metadata also states the
    module order (`dnnspec_order`) and the model (`dnnspec_layers`: kinds, widths, activations,
    batch-norm epsilon and momentum, dropout), so an import pairs by order and
    `ckpt import --write-spec` can write the spec back."""
    st = require("safetensors.numpy", "torch", "exporting to torch")
    tensors, origin = state_dict(program, variables, step, probabilities)
    order = []
    for key in tensors:
        prefix = key.rpartition(".")[0]
        if prefix not in order:
            order.append(prefix)
    info = describe_program(program, probabilities)
    metadata = {"format": "pt", "dnnspec_model": program.model_name,
                "dnnspec_variables": json.dumps({k: v for k, v in origin.items() if v}),
                "dnnspec_order": json.dumps(order),
                "dnnspec_input": json.dumps([program.input_name, program.input_width]),
                "dnnspec_loss": program.train.loss.name,
                "dnnspec_layers": json.dumps(to_json(info))}
    with atomic_write(path) as tmp:
        st.save_file(tensors, str(tmp), metadata=metadata)
    return path


# ---------------------------------------------------------------- reading
BN_LOCALS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def read_torch(path: Path) -> Source:
    """Modules of a safetensors state_dict, told apart by their parameters, in the order the file
    states (dnnspec's metadata, or nn.Sequential indices), else none (then they pair by shape)."""
    if str(path).endswith((".pt", ".pth", ".bin")):
        raise UserError(f"{path}: pickled torch files are not read (loading them can run code); save a "
                        "safetensors file: safetensors.torch.save_file(model.state_dict(), 'model.safetensors')")
    require("safetensors.numpy", "torch", "importing from torch")
    from safetensors import safe_open

    with reading(path, "not a readable safetensors file"):  # safetensors raises its own error types
        with safe_open(str(path), framework="np") as f:
            meta = dict(f.metadata() or {})
            modules: dict[str, dict[str, np.ndarray]] = {}
            for key in f.keys():
                prefix, _, pname = key.rpartition(".")
                modules.setdefault(prefix, {})[pname] = np.asarray(f.get_tensor(key))
    notes = []
    order, how = _stated_order(list(modules), meta, notes)
    prefixes = order if order is not None else sorted(modules, key=natural_key)
    layers = [_layer(prefix, modules[prefix]) for prefix in prefixes]
    source = Source(layers=layers, order=how, notes=notes)
    if order is None:
        shown = ", ".join(sorted(modules, key=natural_key)[:6]) + (", ..." if len(modules) > 6 else "")
        source.unordered = (f"its module names {shown} are not nn.Sequential indices, and it has no dnnspec "
                            "metadata")
    source.model = _metadata_model(meta, notes)
    if source.model is None:
        source.lacks = ("a torch state_dict holds tensors only: no activations, dropout, batch-norm epsilon or "
                        "momentum")
    return source


def _stated_order(prefixes: list[str], meta: dict, notes: list[str]) -> tuple[list[str] | None, str | None]:
    """(module prefixes in model order, what states it) or (None, None)."""
    for key in ("dnnspec_order", "dnnspec_variables"):  # the second: what older dnnspec exports wrote
        if key not in meta:
            continue
        try:
            listed = json.loads(meta[key])
        except ValueError:
            listed = None
        if isinstance(listed, dict):  # tensor name -> dnnspec variable, in module order
            listed = [k.rpartition(".")[0] for k in listed]
        seen = list(dict.fromkeys(p for p in listed if isinstance(p, str))) if isinstance(listed, list) else []
        if set(seen) == set(prefixes):
            return seen, "dnnspec's metadata in the file"
        notes.append(f"the file's {key} metadata does not list its modules: ignored")
        break
    if len(prefixes) == 1:
        return list(prefixes), "a single module"
    parts = [p.split(".") if p else [] for p in prefixes]
    common = 0
    while all(len(x) > common + 1 for x in parts) and len({x[common] for x in parts}) == 1:
        common += 1
    rest = [x[common:] for x in parts]
    if prefixes and all(r and all(c.isdigit() for c in r) for r in rest):
        keyed = sorted(zip(rest, prefixes), key=lambda t: [int(c) for c in t[0]])
        return [p for _, p in keyed], "nn.Sequential indices of the module names"
    return None, None


def _metadata_model(meta: dict, notes: list[str]) -> ModelInfo | None:
    """The model dnnspec's export described in the metadata (None: not one of dnnspec's)."""
    if "dnnspec_layers" not in meta:
        return None
    try:
        layers = from_json(json.loads(meta["dnnspec_layers"]), "dnnspec's metadata")
        name, width = json.loads(meta.get("dnnspec_input", "[null, null]"))
    except (ValueError, TypeError) as e:
        notes.append(f"the file's dnnspec_layers metadata is damaged ({e}): not used")
        return None
    return ModelInfo("dnnspec's metadata in the file", layers, meta.get("dnnspec_model"), name,
                     width if isinstance(width, int) else None, loss=meta.get("dnnspec_loss"))


def _name(prefix: str, pname: str) -> str:
    return f"{prefix}.{pname}" if prefix else pname


def _layer(prefix: str, params: dict[str, np.ndarray]) -> SourceLayer:
    w = params.get("weight")
    if "running_mean" in params:  # BatchNorm1d
        tensors = [SourceTensor(_name(prefix, p), params[p], BN_LOCALS[p]) for p in BN_LOCALS if p in params]
        ignored = [_name(prefix, p) + " (not needed)" for p in params if p not in BN_LOCALS]
        return SourceLayer("batchnorm", prefix, tensors, ignored)
    if w is not None and w.ndim == 2 and set(params) <= {"weight", "bias"}:  # Linear: weight is (out, in)
        tensors = [SourceTensor(_name(prefix, "weight"), w.T, "kernel", True, w.shape)]
        if "bias" in params:
            tensors.append(SourceTensor(_name(prefix, "bias"), params["bias"], "bias"))
        return SourceLayer("dense", prefix, tensors)
    if w is not None and w.ndim == 1 and set(params) == {"weight"}:  # PReLU
        return SourceLayer("prelu", prefix, [SourceTensor(_name(prefix, "weight"), w, "alpha")])
    tensors = [SourceTensor(_name(prefix, p), v, p) for p, v in params.items()]
    return SourceLayer(f"other ({prefix})", prefix, tensors)
