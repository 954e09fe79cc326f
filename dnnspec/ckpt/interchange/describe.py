"""What a model file says about the model beyond its weights: a neutral description.

A Keras config (`config.json` of a `.keras` archive, `model_config` of a whole-model `.h5`), an
ONNX graph and the metadata of dnnspec's own safetensors exports record the layer sequence:
kinds, widths, activations, batch-norm epsilon and momentum, dropout rates. Readers turn what
they find into a `ModelInfo`: a list of `LayerInfo` in dnnspec's own vocabulary (catalogue names
and parameter names), nothing of the `.dnn` syntax. The CLI renders it as spec text
(`dnnspec ckpt import --write-spec`); `compare` names every way a compiled spec differs from it.

`describe_program` gives the same description of a compiled spec, so the two compare directly.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...program import Program

# The parameters of each kind that a model file can record (initializers are not: they do not
# matter once weights are imported). Others of a kind keep the catalogue's defaults.
PARAMS: dict[str, tuple[str, ...]] = {
    "dense": ("units", "use_bias"),
    "maxout": ("units", "k", "use_bias"),
    "dropconnect": ("units", "rate", "use_bias"),
    "batchnorm": ("momentum", "epsilon", "center", "scale"),
    "dropout": ("rate",),
    "alpha_dropout": ("rate",),
    "gaussian_noise": ("stddev",),
    "activity_regularization": ("l1", "l2"),
    "leaky_relu": ("alpha",),
    "rrelu": ("lower", "upper"),
    "elu": ("alpha",),
    "gelu": ("approximate",),
}
# Layers that do nothing at inference: an inference graph (ONNX) does not hold them.
TRAINING_ONLY = {"dropout", "alpha_dropout", "gaussian_noise", "activity_regularization"}
# Parameters that change only training, not predictions: a difference is a note, not an error.
TRAINING_PARAMS = {"momentum", "rate", "stddev", "l1", "l2"}
# The loss whose output function a final softmax/sigmoid of a file is (dnnspec models end in logits).
OUTPUT_LOSSES = {"softmax": "softmax_cross_entropy", "sigmoid": "sigmoid_cross_entropy"}


@dataclass
class LayerInfo:
    kind: str  # a dnnspec catalogue name: dense, batchnorm, relu, ...
    params: dict = field(default_factory=dict)  # dnnspec parameter names -> values
    name: str | None = None  # a dnnspec-style scoped name ("dnn/hidden1") or a plain one ("dense_1"); None: unnamed
    merge: bool = False  # an activation the source applies inside the layer before it (Dense(activation=...))
    source: str = ""  # what it is in the file, for messages: "Dense 'dense_1'", "node '/1/Gemm' (Gemm)"

    def text(self) -> str:
        """`batchnorm(momentum=0.9, epsilon=1e-05)`: for messages."""
        args = ", ".join(f"{k}={_value_text(v)}" for k, v in self.params.items())
        return f"{self.kind}({args})" if args else self.kind


@dataclass
class ModelInfo:
    """The model a file records, as far as it does."""

    source: str  # "the Keras config (config.json)", "the ONNX graph", "dnnspec's safetensors metadata"
    layers: list[LayerInfo]
    name: str | None = None
    input_name: str | None = None
    input_width: int | None = None
    records_dropout: bool = True  # False: an inference graph, which holds no training-only layers
    loss: str | None = None  # the loss the file names (dnnspec metadata), if any
    notes: list[str] = field(default_factory=list)


def _value_text(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def f32(v) -> float:
    """A float32 attribute as the number it was written as (0.8999999761581421 -> 0.9)."""
    import numpy as np

    return float(str(np.float32(v)))


# ---------------------------------------------------------------- a compiled spec
def describe_program(program: Program, probabilities: bool = False) -> ModelInfo:
    """The description of a compiled spec (with its output function appended if `probabilities`)."""
    from . import output_function

    layers = []
    for i, spec in enumerate(program.ops):
        op = spec.build()
        params = {p: getattr(op, p) for p in PARAMS.get(spec.kind, ()) if hasattr(op, p)}
        merge = i > 0 and program.ops[i - 1].name == spec.name
        layers.append(LayerInfo(spec.kind, params, spec.name, merge, f"op '{spec.name}'"))
    fn = output_function(program) if probabilities else None
    if fn:
        layers.append(LayerInfo(fn, {}, None, False, "the output function"))
    return ModelInfo("the spec", layers, program.model_name, program.input_name, program.input_width,
                     loss=program.train.loss.name)


def to_json(info: ModelInfo) -> list[dict]:
    """The layers as JSON-ready dicts (what dnnspec's safetensors export stores)."""
    return [{"kind": la.kind, "params": la.params, "name": la.name, "merge": la.merge} for la in info.layers]


def from_json(items: list, source: str) -> list[LayerInfo]:
    out = []
    for i, d in enumerate(items):
        if not isinstance(d, dict) or not isinstance(d.get("kind"), str) or not isinstance(d.get("params", {}), dict):
            raise ValueError(f"layer #{i + 1} of the description is not a layer")
        out.append(LayerInfo(d["kind"], dict(d.get("params", {})), d.get("name"), bool(d.get("merge")),
                             f"{source} layer #{i + 1}"))
    return out


# ---------------------------------------------------------------- the output function
def split_output(layers: list[LayerInfo], loss: str | None = None) -> tuple[list[LayerInfo], str | None]:
    """(layers, fn): a final softmax or sigmoid taken off as the output function `fn` that a
    dnnspec loss applies (with `loss` given: only that loss's function)."""
    if layers and layers[-1].kind in OUTPUT_LOSSES and (loss is None or OUTPUT_LOSSES[layers[-1].kind] == loss):
        return layers[:-1], layers[-1].kind
    return layers, None


# ---------------------------------------------------------------- comparing
def _normal(layers: list[LayerInfo], keep_training: bool) -> list[LayerInfo]:
    """What is compared: no identities, a file's inference form for ops it cannot hold."""
    out = []
    for la in layers:
        if la.kind == "linear" or (la.kind in TRAINING_ONLY and not keep_training):
            continue
        if la.kind == "dropconnect":  # its inference form: a dense layer (all formats export it so)
            la = LayerInfo("dense", {k: v for k, v in la.params.items() if k != "rate"}, la.name, la.merge, la.source)
        elif la.kind == "rrelu":  # its inference form: the mean slope
            alpha = (la.params.get("lower", 1 / 8) + la.params.get("upper", 1 / 3)) / 2
            la = LayerInfo("leaky_relu", {"alpha": alpha}, la.name, la.merge, la.source)
        out.append(la)
    return out


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)


def _where(spec: LayerInfo) -> str:
    return spec.source or spec.kind


def compare(program: Program, info: ModelInfo) -> tuple[list[str], list[str]]:
    """(mismatches that change predictions, differences that change only training) between a
    compiled spec and what a file records; every one named."""
    from . import output_function

    file_layers, fn = split_output(info.layers)
    if fn and fn != output_function(program):
        file_layers = info.layers  # the spec does not apply it as its loss: compare it as a layer
    spec = _normal(describe_program(program).layers, info.records_dropout)
    theirs = _normal(file_layers, info.records_dropout)
    errors, notes = [], []
    what = info.source

    def pair(s: LayerInfo, f: LayerInfo):
        if s.kind != f.kind:
            errors.append(f"{_where(s)} is {s.text()} in the spec, but {f.source} is {f.text()} in {what}")
            return
        for key in PARAMS.get(s.kind, ()):
            a, b = s.params.get(key), f.params.get(key)  # a key a file leaves out, it does not record
            if a is None or b is None or _same(a, b):
                continue
            line = f"{_where(s)}: {key}={_value_text(a)} in the spec, {key}={_value_text(b)} in {f.source} of {what}"
            (notes if key in TRAINING_PARAMS else errors).append(line)

    matcher = difflib.SequenceMatcher(None, [s.kind for s in spec], [f.kind for f in theirs], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace"):
            for s, f in zip(spec[i1:i2], theirs[j1:j2]):
                pair(s, f)
            ours, others = spec[i1 + (j2 - j1):i2], theirs[j1 + (i2 - i1):j2]
        else:
            ours, others = spec[i1:i2], theirs[j1:j2]
        errors += [f"{_where(s)} ({s.text()}) has no counterpart in {what}" for s in ours]
        errors += [f"{f.source} ({f.text()}) of {what} has no counterpart in the spec" for f in others]
    return errors, notes
