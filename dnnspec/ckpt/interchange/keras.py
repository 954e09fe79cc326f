"""Keras: the equivalent `keras.Sequential`, its weights in Keras 3 `.weights.h5` and legacy Keras 2 HDF5.

Both weight layouts are written and read with h5py alone (no Keras needed); only the config
JSON builds the model in Keras. The two layouts (as Keras writes them):

- Keras 3 `.weights.h5`: `layers/<class>[_<n>]/vars/<i>` with `vars.attrs["name"]` the layer's
  name. The path is the snake-cased class name numbered by occurrence (`dense`, `dense_1`, ...,
  `batch_normalization`, `p_re_lu`), not the layer's name: Keras loads by structure.
- Keras 2 HDF5 (`model.save_weights("x.h5")` in tf.keras 2): root attrs `layer_names`,
  `backend`, `keras_version`; a group per layer with attr `weight_names` (`dense/kernel:0`, ...)
  and the datasets at those paths inside it. Keras loads it by order of the layers with weights.

Weight order per layer: Dense kernel (n_in, units) then bias; BatchNormalization gamma, beta,
moving_mean, moving_variance (each only if present); PReLU alpha (one per unit). These are
dnnspec's own variables, names and layouts, so nothing is transposed.

Reading also takes the model's config where a file holds one (`config.json` of a `.keras`
archive, `model_config` of a whole-model `.h5`): `keras_description` turns a Sequential (or a chain
of layers) into dnnspec's terms (`describe.ModelInfo`), or names the first layer without an
equivalent.

Keras has no maxout layer: a maxout op becomes Dense(units*k) + Reshape((units, k)) +
GlobalMaxPooling1D(data_format="channels_first"), the same function (piece j of unit i is
column i*k + j). No DropConnect or RReLU either: their inference forms are exported (Dense;
LeakyReLU with the mean slope), so a Keras model trained further behaves differently.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import UserError
from . import (Source, SourceLayer, SourceTensor, Variables, atomic_write, float32, layer_names, natural_key,
               output_function, reading, require)
from .describe import LayerInfo, ModelInfo

if TYPE_CHECKING:
    from ...program import Program

HDF5_OBJECT_HEADER_LIMIT = 64512  # bytes per attribute; longer name lists are chunked (as Keras does)


@dataclass
class KerasLayer:
    cls: str  # Keras class name, e.g. "Dense"
    name: str  # unique layer name
    args: list[str]  # constructor arguments as Python source, name= excluded
    weights: list[str]  # dnnspec variable names in Keras' weight order
    comment: str = ""

    def call(self) -> str:
        return f"layers.{self.cls}({', '.join([*self.args, f'name={self.name!r}'])})"

    def source(self) -> str:
        return self.call() + "," + (f"  # {self.comment}" if self.comment else "")


# ---------------------------------------------------------------- op -> Keras layers
def _dense(spec, op, name, version, comment=""):
    args = [str(op.columns())] + ([] if op.use_bias else ["use_bias=False"])
    return [KerasLayer("Dense", name, args, spec.variable_names(), comment or spec.name)]


def _dropconnect(spec, op, name, version):
    return _dense(spec, op, name, version, f"{spec.name}: dropconnect(rate={op.rate!r}); Keras has none: "
                                           "its inference form, a Dense layer")


def _maxout(spec, op, name, version):
    why = f"{spec.name}: maxout(units={op.units}, k={op.k}); Keras has no maxout layer: Dense + max over pieces"
    return [*_dense(spec, op, name, version, why),
            KerasLayer("Reshape", name + "_pieces", [f"({op.units}, {op.k})"], []),
            KerasLayer("GlobalMaxPooling1D", name + "_max", ['data_format="channels_first"'], [])]


def _batchnorm(spec, op, name, version):
    args = [f"momentum={op.momentum!r}", f"epsilon={op.epsilon!r}"]
    args += [] if op.center else ["center=False"]
    args += [] if op.scale else ["scale=False"]
    return [KerasLayer("BatchNormalization", name, args, spec.variable_names(), spec.name)]


def _simple(cls, *attrs):
    """A weightless layer whose arguments are the op's attributes of the same meaning."""
    def build(spec, op, name, version):
        return [KerasLayer(cls, name, [f"{k}={getattr(op, a)!r}" for k, a in attrs], [], spec.name)]
    return build


def _activation(keras_name):
    def build(spec, op, name, version):
        return [KerasLayer("Activation", name, [repr(keras_name)], [], f"{spec.name}: {spec.kind}")]
    return build


def _leaky(spec, op, name, version, slope=None, comment=""):
    key = "negative_slope" if version >= 3 else "alpha"
    slope = op.alpha if slope is None else slope
    return [KerasLayer("LeakyReLU", name, [f"{key}={slope!r}"], [], comment or f"{spec.name}: leaky_relu")]


def _rrelu(spec, op, name, version):
    mean = (op.lower + op.upper) / 2
    return _leaky(spec, op, name, version, mean, f"{spec.name}: rrelu({op.lower!r}, {op.upper!r}); Keras has "
                                                 "none: its inference form, the mean slope")


def _prelu(spec, op, name, version):  # dnnspec initializes slopes to 0.25 (Keras: 0)
    return [KerasLayer("PReLU", name, ["alpha_initializer=keras.initializers.Constant(0.25)"],
                       spec.variable_names(), f"{spec.name}: prelu, one slope per unit")]


def _elu(spec, op, name, version):
    return [KerasLayer("ELU", name, [f"alpha={op.alpha!r}"], [], f"{spec.name}: elu")]


def _gelu(spec, op, name, version):
    if not op.approximate:
        return _activation("gelu")(spec, op, name, version)
    # Keras' own gelu with its argument (no Python lambda), so the config loads in safe mode
    return [KerasLayer("Lambda", name, ["keras.activations.gelu", "arguments={'approximate': True}"], [],
                       f"{spec.name}: gelu(approximate=true), the tanh form")]


def _residual(spec, op, name, version):
    return []  # the block's input is kept by the functional model's code (see `_functional`)


def _residual_add(spec, op, name, version):
    """Add (after Rescaling by p under stochastic depth: dnnspec's inference form), with a Dense
    projection of the skip (no bias) where the block has one. The order is Keras' own order of
    these layers in a functional model (by depth, then by traversal from the output)."""
    out = []
    if op.survival < 1.0:
        out.append(KerasLayer("Rescaling", name + "_survival", [repr(op.survival)], [],
                              f"{spec.name}: stochastic depth, the body scaled by its survival probability"))
    if op.projection:
        out.append(KerasLayer("Dense", name, [str(spec.n_out), "use_bias=False"], spec.variable_names(),
                              f"{spec.name}: the projection of the block's input"))
    out.append(KerasLayer("Add", name + "_add" if op.projection else name, [], [], f"{spec.name}: input + body"))
    return out


# dnnspec catalogue name -> Keras layers. Noise layers keep their training behaviour in Keras.
KERAS_LAYERS = {
    "dense": _dense,
    "dropconnect": _dropconnect,
    "maxout": _maxout,
    "batchnorm": _batchnorm,
    "dropout": _simple("Dropout", ("rate", "rate")),
    "alpha_dropout": _simple("AlphaDropout", ("rate", "rate")),
    "gaussian_noise": _simple("GaussianNoise", ("stddev", "stddev")),
    "activity_regularization": _simple("ActivityRegularization", ("l1", "l1"), ("l2", "l2")),
    "sigmoid": _activation("sigmoid"),
    "tanh": _activation("tanh"),
    "softmax": _activation("softmax"),
    "softplus": _activation("softplus"),
    "relu": _activation("relu"),
    "selu": _activation("selu"),
    "swish": _activation("swish"),
    "linear": _activation("linear"),
    "gelu": _gelu,
    "leaky_relu": _leaky,
    "rrelu": _rrelu,
    "prelu": _prelu,
    "elu": _elu,
    "residual": _residual,
    "residual_add": _residual_add,
}


def keras_layers(program: Program, probabilities: bool = False, version: int = 3) -> list[KerasLayer]:
    """The Keras layers equivalent to the spec's ops, in order."""
    out = []
    for spec, name in zip(program.ops, layer_names(program)):
        build = KERAS_LAYERS.get(spec.kind)
        if build is None:
            raise UserError(f"{spec.kind} (op '{spec.name}') has no Keras equivalent")
        out.extend(build(spec, spec.build(), name, version))
    fn = output_function(program) if probabilities else None
    if fn:
        out.append(KerasLayer("Activation", "probabilities", [repr(fn)], [], "what dnnspec's predict applies"))
    return out


def _functional(program: Program, probabilities: bool, version: int) -> list[str]:
    """The model as Keras functional code (residual blocks: a Sequential cannot add)."""
    lines = [f"inputs = keras.Input(shape=({program.input_width},), name={program.input_name!r})", "h = inputs"]
    skips: list[str] = []
    for spec, name in zip(program.ops, layer_names(program)):
        built = KERAS_LAYERS[spec.kind](spec, spec.build(), name, version)
        if spec.kind == "residual":
            skips.append(f"skip{len(skips) + 1}")
            lines.append(f"{skips[-1]} = h  # {spec.name}: a residual block's input")
        elif spec.kind == "residual_add":
            skip = skips.pop()
            for layer in built:
                if layer.cls == "Rescaling":
                    lines.append(f"h = {layer.call()}(h)  # {layer.comment}")
                elif layer.cls == "Dense":
                    lines.append(f"{skip} = {layer.call()}({skip})  # {layer.comment}")
                else:
                    lines.append(f"h = {layer.call()}([h, {skip}])  # {layer.comment}")
        else:
            lines += [f"h = {layer.call()}(h)" + (f"  # {layer.comment}" if layer.comment else "") for layer in built]
    fn = output_function(program) if probabilities else None
    if fn:
        lines.append(f"h = layers.Activation({fn!r}, name='probabilities')(h)  # what dnnspec's predict applies")
    lines.append(f"model = keras.Model(inputs, h, name={program.model_name!r})")
    return lines


def _code(program: Program, weights, probabilities, version) -> str:
    if any(spec.kind == "residual" for spec in program.ops):
        lines = [f"# The dnnspec model '{program.model_name}' as a Keras {version} functional model "
                 "(residual blocks add).",
                 "# Layer names are dnnspec's scoped op names with '/' -> '_'.",
                 "import keras",
                 "from keras import layers",
                 "",
                 *_functional(program, probabilities, version)]
        if weights:
            lines.append(f"model.load_weights({str(weights)!r})")
        return "\n".join(lines) + "\n"
    lines = [f"# The dnnspec model '{program.model_name}' as a keras.Sequential (Keras {version}).",
             "# Layer names are dnnspec's scoped op names with '/' -> '_'.",
             "import keras",
             "from keras import layers",
             "",
             "model = keras.Sequential([",
             f"    keras.Input(shape=({program.input_width},), name={program.input_name!r}),"]
    lines += ["    " + layer.source() for layer in keras_layers(program, probabilities, version)]
    lines.append(f"], name={program.model_name!r})")
    if weights:
        lines.append(f"model.load_weights({str(weights)!r})")
    return "\n".join(lines) + "\n"


def keras_model_code(program: Program, weights=None, probabilities: bool = False) -> str:
    """Python source of the equivalent Keras 3 model (`model.load_weights` takes the export)."""
    return _code(program, weights, probabilities, 3)


def keras2_model_code(program: Program, weights=None, probabilities: bool = False) -> str:
    """The same for Keras 2 (tf.keras <= 2.15); Keras 3 runs it too and loads the legacy file."""
    return _code(program, weights, probabilities, 2)


def keras_model(program: Program, probabilities: bool = False):
    """Build the equivalent keras.Sequential (needs Keras)."""
    require("keras", "keras", "building the Keras model")
    scope: dict = {}
    exec(compile(keras_model_code(program, probabilities=probabilities), "<dnnspec keras model>", "exec"), scope)
    return scope["model"]


def keras_config_json(program: Program, probabilities: bool = False) -> str:
    """The Keras model config (`keras.models.model_from_json` rebuilds the model from it)."""
    return keras_model(program, probabilities).to_json(indent=2)


# ---------------------------------------------------------------- writing
def _snake(name: str) -> str:
    """Keras' naming.to_snake_case: the key a layer class gets in a .weights.h5 file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def export_keras3(program: Program, variables: Variables, path: Path, probabilities: bool = False) -> Path:
    """Keras 3 `.weights.h5` for `keras_model_code(...)`'s model."""
    import h5py

    if not str(path).endswith(".weights.h5"):
        raise UserError(f"{path}: Keras 3 loads weights only from files named *.weights.h5")
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        top = f.create_group("layers")
        used: dict[str, int] = {}
        for layer in keras_layers(program, probabilities, 3):
            key = _snake(layer.cls)
            used[key] = used.get(key, -1) + 1
            group = top.create_group(key if used[key] == 0 else f"{key}_{used[key]}").create_group("vars")
            group.attrs["name"] = layer.name
            for i, var in enumerate(layer.weights):
                group.create_dataset(str(i), data=float32(variables[var]))
        f.create_group("vars").attrs["name"] = program.model_name
    return path


def _save_names(group, name: str, items: list[str]) -> None:
    """A list of names as a bytes-array attribute, split into name0, name1, ... past HDF5's limit."""
    data = np.array([s.encode() for s in items]) if items else np.array([], dtype="S1")
    n = 1
    while any(p.nbytes > HDF5_OBJECT_HEADER_LIMIT for p in np.array_split(data, n)):
        n += 1
    if n == 1:
        group.attrs[name] = data
    else:
        for i, part in enumerate(np.array_split(data, n)):
            group.attrs[f"{name}{i}"] = part


def _load_names(group, name: str) -> list[str]:
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def export_keras2(program: Program, variables: Variables, path: Path, probabilities: bool = False) -> Path:
    """Legacy Keras 2 HDF5 weights for `keras2_model_code(...)`'s model."""
    import h5py

    if str(path).endswith(".weights.h5") or not str(path).endswith((".h5", ".hdf5")):
        raise UserError(f"{path}: a legacy Keras 2 weights file must end in .h5 (and not .weights.h5, "
                        "which Keras 3 reads as its own format)")
    layers = keras_layers(program, probabilities, 2)
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        _save_names(f, "layer_names", [layer.name for layer in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for layer in sorted(layers, key=lambda x: x.name):  # Keras writes them sorted by name
            g = f.create_group(layer.name)
            names = [f"{layer.name}/{var.rsplit('/', 1)[1]}:0" for var in layer.weights]
            _save_names(g, "weight_names", names)
            for n, var in zip(names, layer.weights):
                g.create_dataset(n, data=float32(variables[var]))
    return path


# ---------------------------------------------------------------- reading
KERAS3_KINDS = {"dense": "dense", "batch_normalization": "batchnorm", "p_re_lu": "prelu"}


def _kind_by_locals(locals_: set[str]) -> str | None:
    if "kernel" in locals_:
        return "dense"
    if "moving_mean" in locals_:
        return "batchnorm"
    if locals_ == {"alpha"}:
        return "prelu"
    return None


def read_keras(path: Path) -> Source:
    """Layers of a Keras weights file, either layout (told apart by content), or a .keras archive;
    with the model's config where the file holds one (a .keras archive, a whole-model .h5)."""
    import h5py

    notes: list[str] = []
    config = None
    with reading(path, "not a readable Keras weights file"):
        if zipfile.is_zipfile(path):  # a .keras archive holds model.weights.h5 (and config.json)
            with zipfile.ZipFile(path) as z:
                if "model.weights.h5" not in z.namelist():
                    raise UserError(f"{path}: a zip archive without model.weights.h5, so not a .keras file")
                handle = io.BytesIO(z.read("model.weights.h5"))
                if "config.json" in z.namelist():
                    config = ("the Keras config (config.json)", z.read("config.json"))
        else:
            handle = path
        with h5py.File(handle, "r") as f:
            if "model_config" in f.attrs:  # a whole-model Keras 2 (legacy) .h5
                config = ("the Keras config (model_config)", f.attrs["model_config"])
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in root.attrs or "layer_names0" in root.attrs:
                notes.append("legacy Keras 2 layout (layer_names/weight_names)")
                source = Source(layers=_read_legacy(root), order="the file's layer_names", notes=notes)
            elif "layers" in root or "vars" in root:
                notes.append("Keras 3 layout (layers/<class>/vars)")
                source = Source(layers=_read_keras3(root, notes), notes=notes,
                                order="Keras' numbering of the layers of each class")
            elif root.attrs.get("format") == "dnnspec":
                raise UserError(f"{path}: a dnnspec checkpoint, not a Keras file: load it with "
                                "dnnspec.load_checkpoint or `reuse` it in a spec")
            else:
                raise UserError(f"{path}: not a Keras weights file (neither a Keras 3 'layers' group nor a Keras 2 "
                                "'layer_names' attribute)")
    if config is None:
        source.lacks = ("a Keras weights file holds weights only (no config): no activations, dropout, "
                        "batch-norm epsilon or momentum; a .keras archive or a whole-model .h5 has them")
        return source
    try:
        text = config[1].decode() if isinstance(config[1], bytes) else str(config[1])
        source.model = keras_description(json.loads(text), config[0])
    except (UserError, ValueError, TypeError, KeyError, AttributeError) as e:
        why = str(e) if isinstance(e, UserError) else f"{config[0]} cannot be read: {type(e).__name__}: {e}"
        source.lacks = why
        notes.append(f"the model is not described ({why})")
    return source


# ---------------------------------------------------------------- the config: what the model is
# Keras activation names -> (dnnspec activation, its parameters); linear: none
KERAS_ACTIVATIONS = {
    "relu": ("relu", {}), "sigmoid": ("sigmoid", {}), "tanh": ("tanh", {}), "softmax": ("softmax", {}),
    "softplus": ("softplus", {}), "selu": ("selu", {}), "elu": ("elu", {"alpha": 1.0}),
    "swish": ("swish", {}), "silu": ("swish", {}), "gelu": ("gelu", {"approximate": False}),
    "leaky_relu": ("leaky_relu", {"alpha": 0.2}),  # keras.activations.leaky_relu's default slope
}


def _activation_name(value) -> str | None:
    """An activation as a config holds it: "relu", or a serialized function {"config": "relu"}."""
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value.rsplit(".", 1)[-1]
    if isinstance(value, dict) and isinstance(value.get("config"), str):
        return value["config"].rsplit(">", 1)[-1]
    return None


def _keras_activation(value, where: str, args: dict | None = None) -> LayerInfo | None:
    name = _activation_name(value)
    if name == "linear":
        return None
    if name not in KERAS_ACTIVATIONS:
        raise UserError(f"{where}: activation {name or value!r} has no dnnspec equivalent")
    kind, params = KERAS_ACTIVATIONS[name]
    params = dict(params)
    for k, v in (args or {}).items():
        if kind == "gelu" and k == "approximate":
            params["approximate"] = bool(v)
        elif kind == "leaky_relu" and k in ("negative_slope", "alpha"):
            params["alpha"] = float(v)
        elif kind == "elu" and k == "alpha":
            params["alpha"] = float(v)
        else:
            raise UserError(f"{where}: activation {name} with argument {k}={v!r} has no dnnspec equivalent")
    return LayerInfo(kind, params, source=where)


def _width(shape) -> int | None:
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[-1], int):
        return shape[-1] if len(shape) == 2 else None
    return None


def _chain(config: dict, where: str) -> list[dict]:
    """The layers of a Sequential, or of a functional model that is a chain (each layer fed by the one before)."""
    cls, inner = config.get("class_name"), config.get("config") or {}
    layers = inner.get("layers")
    if not isinstance(layers, list):
        raise UserError(f"{where}: no layer list in the config")
    if cls == "Sequential":
        return layers
    if cls not in ("Functional", "Model"):
        raise UserError(f"{where}: a Keras {cls} model; only Sequential models and chains of layers are described")
    previous = None
    for layer in layers:
        sources = set(re.findall(r"keras_history\W+(\w+)", json.dumps(layer.get("inbound_nodes", []))))
        if not sources:  # Keras 2: [[["name", 0, 0, {}]]]
            sources = {n[0] for node in layer.get("inbound_nodes", []) for n in node
                       if isinstance(n, list) and n and isinstance(n[0], str)}
        name = (layer.get("config") or {}).get("name", layer.get("name"))
        if previous is not None and sources != {previous} or previous is None and sources:
            raise UserError(f"{where}: layer '{name}' is not fed by the layer before it alone: only chains of "
                            "layers are described")
        previous = name
    return layers


def keras_description(config: dict, where: str = "the Keras config") -> ModelInfo:
    """What a Keras model config (Keras 2 or 3, Sequential or a chain) says, in dnnspec's terms.
    A layer without a dnnspec equivalent is a UserError naming it."""
    inner = config.get("config") or {}
    info = ModelInfo(where, [], inner.get("name"))
    out = info.layers
    weighted = False
    pieces = False  # a Reshape into maxout's pieces was read: the max over them must follow
    for item in _chain(config, where):
        cls, c = item.get("class_name"), item.get("config") or {}
        name = c.get("name")
        here = f"{cls} '{name}'"
        if pieces and cls != "GlobalMaxPooling1D":
            raise UserError(f"{where}: {here} follows a Reshape that dnnspec reads only as maxout's pieces")
        if cls == "InputLayer":
            info.input_name = name
            info.input_width = _width(c.get("batch_shape") or c.get("batch_input_shape"))
            continue
        if info.input_width is None and not out:
            info.input_width = _width(c.get("batch_input_shape") or (item.get("build_config") or {}).get("input_shape"))
        if cls == "Dense":
            weighted = True
            out.append(LayerInfo("dense", {"units": int(c["units"]), "use_bias": bool(c.get("use_bias", True))},
                                 name, source=here))
            act = _keras_activation(c.get("activation"), here)
            if act is not None:
                act.name, act.merge = name, True
                out.append(act)
        elif cls == "BatchNormalization":
            weighted = True
            axis = c.get("axis", -1)
            if axis not in (-1, 1, [-1], [1]):
                raise UserError(f"{where}: {here} normalizes axis {axis}: dnnspec normalizes features (axis -1)")
            out.append(LayerInfo("batchnorm", {"momentum": float(c.get("momentum", 0.99)),
                                               "epsilon": float(c.get("epsilon", 1e-3)),
                                               "center": bool(c.get("center", True)),
                                               "scale": bool(c.get("scale", True))}, name, source=here))
        elif cls in ("Dropout", "AlphaDropout"):
            out.append(LayerInfo(_snake(cls), {"rate": float(c.get("rate", 0.5))}, name, source=here))
        elif cls == "GaussianNoise":
            out.append(LayerInfo("gaussian_noise", {"stddev": float(c["stddev"])}, name, source=here))
        elif cls == "ActivityRegularization":
            out.append(LayerInfo("activity_regularization", {"l1": float(c.get("l1", 0.0)),
                                                             "l2": float(c.get("l2", 0.0))}, name, source=here))
        elif cls == "Activation":
            act = _keras_activation(c.get("activation"), here)
            if act is not None:
                act.name = name
                out.append(act)
        elif cls == "Lambda":
            fn = c.get("function")
            if not (isinstance(fn, dict) and isinstance(fn.get("config"), str)):
                raise UserError(f"{where}: {here} runs Python code (a lambda): dnnspec cannot tell what it computes")
            act = _keras_activation(fn, here, c.get("arguments") or {})
            if act is not None:
                act.name = name
                out.append(act)
        elif cls == "ReLU":
            if c.get("max_value") is not None or float(c.get("threshold") or 0.0) != 0.0:
                raise UserError(f"{where}: {here} with max_value/threshold has no dnnspec equivalent")
            slope = float(c.get("negative_slope") or 0.0)
            out.append(LayerInfo("leaky_relu", {"alpha": slope}, name, source=here) if slope
                       else LayerInfo("relu", {}, name, source=here))
        elif cls == "LeakyReLU":
            slope = c.get("negative_slope", c.get("alpha", 0.3))
            out.append(LayerInfo("leaky_relu", {"alpha": float(slope)}, name, source=here))
        elif cls == "ELU":
            out.append(LayerInfo("elu", {"alpha": float(c.get("alpha", 1.0))}, name, source=here))
        elif cls == "PReLU":
            weighted = True
            if c.get("shared_axes"):
                raise UserError(f"{where}: {here} shares slopes over axes {c['shared_axes']}: dnnspec has one per unit")
            out.append(LayerInfo("prelu", {}, name, source=here))
        elif cls == "Softmax":
            out.append(LayerInfo("softmax", {}, name, source=here))
        elif cls == "Flatten" and not weighted:
            continue
        elif cls == "Reshape" and out and out[-1].kind == "dense":  # maxout: Dense(units*k) + Reshape + max
            target = c.get("target_shape")
            if not (isinstance(target, (list, tuple)) and len(target) == 2
                    and target[0] * target[1] == out[-1].params["units"]):
                raise UserError(f"{where}: {here} (target shape {target}) after a dense layer is not maxout's")
            out[-1] = LayerInfo("maxout", {"units": int(target[0]), "k": int(target[1]),
                                           "use_bias": out[-1].params["use_bias"]}, out[-1].name,
                                source=out[-1].source)
            pieces = True
        elif cls == "GlobalMaxPooling1D" and pieces:
            if c.get("data_format", "channels_last") != "channels_first":
                raise UserError(f"{where}: {here} pools over units, not over maxout's pieces (channels_first)")
            pieces = False
        else:
            raise UserError(f"{where}: {here} has no dnnspec equivalent")
    if pieces:
        raise UserError(f"{where}: the model ends in a Reshape that dnnspec reads only as maxout's pieces")
    _merge_named_activations(out)
    return info


def _merge_named_activations(layers: list[LayerInfo]) -> None:
    """An activation layer named after the dense layer before it (`dnn_hidden1` then
    `dnn_hidden1_relu`, as dnnspec's exports name them) is that layer's `activation=`."""
    for i in range(1, len(layers)):
        prev, la = layers[i - 1], layers[i]
        if (prev.kind in ("dense", "maxout", "dropconnect") and la.kind not in NOT_ACTIVATIONS and prev.name
                and la.name == f"{prev.name}_{la.kind}"):
            la.name, la.merge = prev.name, True


NOT_ACTIVATIONS = {"dense", "maxout", "dropconnect", "batchnorm", "dropout", "alpha_dropout", "gaussian_noise",
                         "activity_regularization"}


def _read_keras3(root, notes: list[str]) -> list[SourceLayer]:
    import h5py

    found = []
    if "optimizer" in root:  # a compiled model's optimizer slots: nothing of dnnspec's
        count = sum(isinstance(o, h5py.Dataset) for o in _walk(root["optimizer"]))
        notes.append(f"the file's optimizer state ({count} tensors) is not imported")

    def visit(name, obj):
        if name.split("/", 1)[0] == "optimizer":
            return
        if isinstance(obj, h5py.Group) and name.rsplit("/", 1)[-1] == "vars":
            keys = sorted((k for k in obj if isinstance(obj[k], h5py.Dataset)), key=int)
            if keys:
                found.append((name[: -len("/vars")] if "/" in name else "", obj, keys))

    root.visititems(visit)
    layers = []
    for layer_path, group, keys in sorted(found, key=lambda t: natural_key(t[0])):
        cls = re.sub(r"_\d+$", "", layer_path.rsplit("/", 1)[-1])
        alias = group.attrs.get("name")
        alias = alias.decode() if isinstance(alias, bytes) else alias
        tensors = [SourceTensor(f"{layer_path}/vars/{k}", np.asarray(group[k]), None) for k in keys]
        layers.append(SourceLayer(KERAS3_KINDS.get(cls, cls or "model"), layer_path, tensors,
                                  aliases=(alias,) if isinstance(alias, str) and alias else ()))
    return layers


def _walk(group) -> list:
    items = []
    group.visititems(lambda name, obj: items.append(obj))
    return items


def _read_legacy(root) -> list[SourceLayer]:
    layers = []
    for lname in _load_names(root, "layer_names"):
        g = root[lname]
        tensors = []
        for w in _load_names(g, "weight_names"):
            local = w.rsplit("/", 1)[-1].split(":")[0]
            tensors.append(SourceTensor(g[w].name.lstrip("/"), np.asarray(g[w]), local))
        if tensors:
            kind = _kind_by_locals({t.local for t in tensors}) or f"other ({lname})"
            layers.append(SourceLayer(kind, lname, tensors))
    return layers
