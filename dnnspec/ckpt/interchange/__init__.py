"""Interchange: export dnnspec models to Keras, PyTorch, ONNX and NumPy files, and import weights back.

One table, `FORMATS`, maps a format name to the module that reads or writes it. Nothing here
knows the `Model` API: every function takes the compiled program (`dnnspec.program.Program`:
the op sequence, names, widths, the loss) and the variables (a dict scoped name -> ndarray),
plus `step` (the number of updates done) where a format stores it (torch's
`num_batches_tracked`). `dnnspec.cli.interchange` loads checkpoints and compiles specs. The
program gives the layer sequence, which each format maps op by op onto its own layers (tables
keyed by catalogue name in each module, so an op without an equivalent is a clear error, never a
silently different model).

Imports fill the variables of a model compiled from a spec (its arrays, written in place). Files
with layer structure (Keras, PyTorch) are matched by kind and order, the way Keras' own weight
loader matches: the n-th dense layer of the source goes to the n-th dense-like op of the spec
(dense, dropconnect, maxout), the n-th batch norm to the n-th batch norm, the n-th PReLU to the
n-th PReLU. NumPy files are matched by scoped name. Every import returns an `ImportReport`:
which source tensor went to which variable, transposed or not. A scope pattern (a regex matched
from the start of the dnnspec variable names, as `freeze` uses) limits the import to some
layers, e.g. the lower layers of a Keras or PyTorch model, to be frozen and reused.

Optional libraries are imported inside functions only; a missing one is a `UserError` naming the
extra to install. Files are written through `dnnspec.fileio.atomic_write`; any failure to read a
source file (truncated, damaged, not of the format) is a `CheckpointError` naming it.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ...errors import CheckpointError, UserError
from ...fileio import atomic_write  # noqa: F401  (the format modules write through it)
from ...program import compile_pattern
from ..hdf5 import existing_file, reading  # noqa: F401  (and read through these)

if TYPE_CHECKING:  # the compiled spec; never imported at run time (ckpt/ does not depend on the checker)
    from ...program import Program

Variables = dict[str, np.ndarray]  # scoped variable name -> array (the model's own arrays, for imports)


# ---------------------------------------------------------------- the format table
@dataclass(frozen=True)
class Format:
    name: str
    description: str
    suffix: str  # the file ending this format's files usually have
    module: str  # the submodule implementing it
    exporter: str | None  # function names in that module
    importer: str | None
    code: str | None = None  # function returning the equivalent model definition (Python source)
    needs_step: bool = False  # the exporter stores the number of updates done (its `step` argument)

    def function(self, attr: str) -> Callable:
        return getattr(importlib.import_module(f"{__name__}.{self.module}"), attr)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("keras", "Keras 3 weights (.weights.h5) of the equivalent keras.Sequential", ".weights.h5",
               "keras", "export_keras3", "read_keras", "keras_model_code"),
        Format("keras2", "legacy Keras 2 HDF5 weights (layer_names/weight_names, dense/kernel:0)", ".h5",
               "keras", "export_keras2", "read_keras", "keras2_model_code"),
        Format("torch", "safetensors state_dict of the equivalent torch.nn.Sequential", ".safetensors",
               "torch", "export_torch", "read_torch", "torch_model_code", needs_step=True),
        Format("onnx", "ONNX inference graph (runs in onnxruntime)", ".onnx", "onnx", "export_onnx", None),
        Format("npz", "NumPy .npz of scoped variable names", ".npz", "npz", "export_npz", "read_npz"),
    )
}
EXPORT_FORMATS = [n for n, f in FORMATS.items() if f.exporter]
IMPORT_FORMATS = [n for n, f in FORMATS.items() if f.importer]


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise UserError(f"unknown interchange format '{name}'; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def guess_format(path: str | os.PathLike, names: list[str]) -> str:
    """The format a file name implies (longest matching suffix first), among `names`."""
    text = str(path).lower()
    endings = sorted(((FORMATS[n].suffix, n) for n in names), key=lambda t: -len(t[0]))
    endings += [(".keras", "keras"), (".hdf5", "keras2"), (".pt", "torch"), (".pth", "torch")]
    for suffix, name in endings:
        if text.endswith(suffix) and name in names:
            return name
    raise UserError(f"{path}: cannot tell the format from the file name; say it with one of: {', '.join(names)}")


def require(module: str, extra: str, action: str):
    """Import an optional library, or say which dnnspec extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{action} needs the '{extra}' extra: pip install 'dnnspec[{extra}]'") from None


# ---------------------------------------------------------------- exporting
def export_model(program: Program, variables: Variables, fmt: str, path, *, step: int | None = None,
                 **options) -> Path:
    """Write the model (`program` and its `variables`) in format `fmt`; options are the format's.

    `step` is the number of updates done; formats that store it (torch) require it.
    """
    f = get_format(fmt)
    if not f.exporter:
        raise UserError(f"exporting to {fmt} is not supported")
    if f.needs_step:
        if step is None:
            raise TypeError(f"exporting to {fmt} needs step= (the number of updates done, which {fmt} files store)")
        options["step"] = int(step)
    return f.function(f.exporter)(program, variables, Path(path), **options)


def model_code(program: Program, fmt: str, weights: str | None = None, probabilities: bool = False) -> str:
    """Python source defining the model equivalent to `program` in the target library."""
    f = get_format(fmt)
    if not f.code:
        raise UserError(f"{fmt} files carry their own graph: there is no model code to write")
    return f.function(f.code)(program, weights=weights, probabilities=probabilities)


def layer_names(program) -> list[str]:
    """One unique, slash-free name per op, for libraries whose layer names cannot hold '/'.

    `dnn/hidden1` -> `dnn_hidden1`; the activation op of `dense hidden1(..., activation=relu)`
    shares its dense layer's name and becomes `dnn_hidden1_relu`.
    """
    names, used = [], set()
    for i, spec in enumerate(program.ops):
        base = spec.name.replace("/", "_")
        if i and program.ops[i - 1].name == spec.name:
            base += "_" + spec.kind
        name, n = base, 0
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        names.append(name)
    return names


# The function `Model.predict` applies to the logits, by loss (absent: predict returns the logits).
OUTPUT_FUNCTIONS = {"softmax_cross_entropy": "softmax", "sigmoid_cross_entropy": "sigmoid"}


def output_function(program) -> str | None:
    return OUTPUT_FUNCTIONS.get(program.train.loss.name)


def float32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


# ---------------------------------------------------------------- importing
@dataclass
class SourceTensor:
    name: str  # its name in the source file, e.g. "layers/dense/vars/0" or "0.weight"
    value: np.ndarray  # already in dnnspec's layout (a torch weight arrives transposed)
    local: str | None  # the dnnspec local name (kernel, gamma, ...); None: positional
    transposed: bool = False
    source_shape: tuple = ()


@dataclass
class SourceLayer:
    kind: str  # "dense", "batchnorm", "prelu", or anything else (then never matched)
    name: str  # the layer's name in the source
    tensors: list[SourceTensor]
    ignored: list[str] = field(default_factory=list)  # tensors with no dnnspec counterpart (num_batches_tracked)


# What a dnnspec op with variables is matched against, by catalogue name.
TARGET_KINDS = {"dense": "dense", "dropconnect": "dense", "maxout": "dense", "batchnorm": "batchnorm",
                "prelu": "prelu"}


@dataclass
class Transfer:
    source: str
    target: str
    shape: tuple
    transposed: bool = False
    note: str = ""


@dataclass
class ImportReport:
    """What an import did: one row per variable filled, and what was left out on either side."""

    fmt: str
    path: str
    rows: list[Transfer] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # variables outside the scope: left as initialized
    unused: list[str] = field(default_factory=list)  # source tensors not imported
    notes: list[str] = field(default_factory=list)
    scope: str | None = None

    def mapping(self) -> dict[str, str]:
        """source tensor name -> dnnspec variable name."""
        return {r.source: r.target for r in self.rows}

    def text(self) -> str:
        out = [f"imported {len(self.rows)} tensor{'s' * (len(self.rows) != 1)} from {self.fmt} file {self.path}"
               + (f" (scope '{self.scope}')" if self.scope else "") + ":"]
        w = max((len(r.source) for r in self.rows), default=0)
        v = max((len(r.target) for r in self.rows), default=0)
        for r in self.rows:
            extra = "; ".join(x for x in ("transposed" if r.transposed else "", r.note) if x)
            out.append(f"  {r.source:<{w}} -> {r.target:<{v}} {str(r.shape):<10} {extra}".rstrip())
        if self.kept:
            out.append("kept as initialized (outside the scope): " + ", ".join(self.kept))
        if self.unused:
            out.append("source tensors not imported: " + ", ".join(self.unused))
        out.extend(f"note: {n}" for n in self.notes)
        return "\n".join(out)


def import_into(program: Program, variables: Variables, fmt: str, path, scope: str | None = None) -> ImportReport:
    """Fill `variables` (the model's arrays, written in place) from a file of format `fmt`.

    `program` gives the op sequence that layer-structured files are matched against. Nothing
    changes if anything does not fit; a file that cannot be read is a CheckpointError naming it.
    """
    f = get_format(fmt)
    if not f.importer:
        raise UserError(f"importing from {fmt} is not supported (only {', '.join(IMPORT_FORMATS)})")
    path = existing_file(path, f"{fmt} file")
    source = f.function(f.importer)(path)
    if isinstance(source, dict):  # named tensors (npz)
        return assign_named(variables, source, fmt, path, scope)
    layers, notes = source
    report = assign_layers(program, variables, layers, fmt, path, scope)
    report.notes[:0] = notes
    return report


def _scope_filter(variables: Variables, scope: str | None) -> Callable[[str], bool]:
    if not scope:
        return lambda name: True
    rx = compile_pattern(scope, "scope pattern")
    if not any(rx.match(n) for n in variables):
        raise UserError(f"scope '{scope}' matches no variable of the model; its variables: "
                        + ", ".join(variables))
    return rx.match


def _numbers(value) -> bool:
    """Whether an array read from a file holds numbers (not strings, objects or structs)."""
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def _fits(value: np.ndarray, target: np.ndarray, local: str) -> np.ndarray | None:
    """The value shaped for the target, or None. A single PReLU slope (torch's default
    nn.PReLU()) is spread over all units: the same function."""
    if value.shape == target.shape:
        return value
    if local == "alpha" and value.size == 1 and target.ndim == 1:
        return np.full(target.shape, value.reshape(()), target.dtype)
    return None


def _commit(variables: Variables, planned: list[tuple[str, np.ndarray]], errors: list[str], fmt, path) -> None:
    if errors:
        raise CheckpointError(f"{path}: cannot import from {fmt}:\n  " + "\n  ".join(errors))
    for name, value in planned:
        variables[name][...] = value


def assign_named(variables: Variables, tensors: dict[str, np.ndarray], fmt: str, path,
                 scope: str | None = None) -> ImportReport:
    """Import tensors named by dnnspec scoped names (npz) into `variables` (in place)."""
    wanted = _scope_filter(variables, scope)
    report = ImportReport(fmt, str(path), scope=scope)
    planned, errors = [], []
    for name, arr in variables.items():
        if not wanted(name):
            report.kept.append(name)
        elif name not in tensors:
            errors.append(f"no tensor '{name}' in the file (it has: {', '.join(tensors) or 'nothing'})")
        elif not _numbers(tensors[name]):
            errors.append(f"tensor '{name}' holds {np.asarray(tensors[name]).dtype} values, not numbers")
        elif tensors[name].shape != arr.shape:
            errors.append(f"tensor '{name}' has shape {tensors[name].shape}, the model's variable {arr.shape}")
        else:
            planned.append((name, tensors[name]))
            report.rows.append(Transfer(name, name, arr.shape))
    used = {n for n, _ in planned}
    report.unused = [n for n in tensors if n not in used]
    _commit(variables, planned, errors, fmt, path)
    return report


def assign_layers(program: Program, variables: Variables, layers: list[SourceLayer], fmt: str, path,
                  scope: str | None = None) -> ImportReport:
    """Import layer-structured tensors: the n-th source layer of a kind fills the n-th op of that kind."""
    wanted = _scope_filter(variables, scope)
    report = ImportReport(fmt, str(path), scope=scope)
    by_kind: dict[str, list[SourceLayer]] = {}
    for layer in layers:
        by_kind.setdefault(layer.kind, []).append(layer)
    seen: dict[str, int] = {}
    used: set[int] = set()
    planned, errors = [], []
    for spec in program.ops:
        if not spec.variables:
            continue
        targets = spec.variable_names()
        kind = TARGET_KINDS.get(spec.kind)
        if kind is None:
            if any(wanted(t) for t in targets):
                errors.append(f"op '{spec.name}' ({spec.kind}) has no counterpart in {fmt} files")
            report.kept.extend(targets)
            continue
        i = seen[kind] = seen.get(kind, -1) + 1  # the i-th op of this kind
        if not any(wanted(t) for t in targets):
            report.kept.extend(targets)
            continue
        report.kept.extend(t for t in targets if not wanted(t))
        sources = by_kind.get(kind, [])
        if i >= len(sources):
            errors.append(f"op '{spec.name}' is {kind} layer #{i + 1} of the spec, but the source has only "
                          f"{len(sources)} {kind} layer{'s' * (len(sources) != 1)}")
            continue
        layer = sources[i]
        used.add(id(layer))
        errors.extend(_match_layer(variables, spec, layer, wanted, planned, report))
    for layer in layers:
        if id(layer) not in used:
            report.unused.extend(t.name for t in layer.tensors)
        report.unused.extend(layer.ignored)
    bns = [s for s in program.ops if s.kind == "batchnorm" and any(wanted(t) for t in s.variable_names())]
    if bns:
        eps = ", ".join(sorted({f"{s.build().epsilon:g}" for s in bns}))
        default = "torch's default is 1e-5" if fmt == "torch" else "Keras' default is 1e-3"
        report.notes.append(f"batch norm epsilon is not stored in {fmt} weight files: the spec's ({eps}) is used "
                            f"({default}); predictions match only if the source model used the same")
    _commit(variables, planned, errors, fmt, path)
    return report


def _match_layer(variables: Variables, spec, layer: SourceLayer, wanted, planned, report) -> list[str]:
    locals_ = list(spec.variables)
    errors = []
    if all(t.local is None for t in layer.tensors):  # positional (Keras 3): the op's variable order
        if len(layer.tensors) != len(locals_):
            return [f"source layer '{layer.name}' has {len(layer.tensors)} tensors, op '{spec.name}' needs "
                    f"{len(locals_)} ({', '.join(locals_)})"]
        pairs = list(zip(locals_, layer.tensors))
    else:
        named = {t.local: t for t in layer.tensors}
        missing = [loc for loc in locals_ if loc not in named and wanted(f"{spec.name}/{loc}")]
        if missing:
            return [f"source layer '{layer.name}' has no tensor for {', '.join(f'{spec.name}/{m}' for m in missing)}"
                    f" (it has {', '.join(t.name for t in layer.tensors)})"]
        pairs = [(loc, named[loc]) for loc in locals_ if loc in named]
        report.unused.extend(t.name for t in layer.tensors if t.local not in locals_)
    for local, t in pairs:
        target = f"{spec.name}/{local}"
        if not wanted(target):
            report.unused.append(t.name)
            continue
        arr = variables[target]
        if not _numbers(t.value):
            errors.append(f"source tensor '{t.name}' holds {np.asarray(t.value).dtype} values, not numbers")
            continue
        value = _fits(t.value, arr, local)
        if value is None:
            shown = (f"shape {t.source_shape}, transposed to {t.value.shape}" if t.transposed
                     else f"shape {t.value.shape}")
            errors.append(f"source tensor '{t.name}' has {shown}, but variable '{target}' has shape {arr.shape}")
            continue
        planned.append((target, value))
        note = "one shared slope, copied to every unit" if value is not t.value else ""
        report.rows.append(Transfer(t.name, target, arr.shape, t.transposed, note))
    return errors


# ---------------------------------------------------------------- what an existing output is
def _head(path: Path, n: int = 256) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _is_safetensors(head: bytes) -> bool:
    return len(head) > 9 and int.from_bytes(head[:8], "little") > 0 and head[8:9] == b"{"


SNIFF = {  # a file of the format (what an export may replace with --force)
    "keras": lambda h: h.startswith(b"\x89HDF\r\n\x1a\n"),
    "keras2": lambda h: h.startswith(b"\x89HDF\r\n\x1a\n"),
    "torch": _is_safetensors,
    "onnx": lambda h: b"dnnspec" in h[:64],  # dnnspec's own ONNX exports name it as producer
    "npz": lambda h: h.startswith((b"PK\x03\x04", b"PK\x05\x06")),
}


def is_export(path, fmt: str) -> bool:
    """Whether an existing file is of `fmt` (so an export with --force may replace it)."""
    return SNIFF[fmt](_head(Path(path)))


def is_generated(path) -> bool:
    """Model code (`--code`) or a Keras config (`--config`) that dnnspec wrote."""
    head = _head(Path(path), 4096).decode("utf-8", "replace")
    return head.startswith("# The dnnspec model") or (head.lstrip().startswith("{") and '"class_name"' in head)


def natural_key(text: str) -> list:
    """Sort key comparing digit runs as numbers: dense_2 < dense_10, 2.weight < 10.weight."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]
