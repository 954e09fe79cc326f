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
with layer structure (Keras, PyTorch, ONNX) are matched by kind and order, the way Keras' own
weight loader matches: the n-th dense layer of the source goes to the n-th dense-like op of the
spec (dense, dropconnect, maxout), the n-th batch norm to the n-th batch norm, the n-th PReLU to
the n-th PReLU. Pairing is never a guess: the order must be one the file states (Keras' layer
numbering and `layer_names`, dnnspec's safetensors metadata, `nn.Sequential` indices, the ONNX
graph); a file that states none (a torch state_dict of named modules) is paired by shape only
where the shapes leave exactly one assignment, else the caller says with `mapping` (`--map`).
Imports are strict like torch's `load_state_dict(strict=True)`: every tensor of the file used,
every variable (in the scope) filled, or a CheckpointError naming what is left over; `partial`
allows both. NaN/Inf values are refused unless `allow_nonfinite`. NumPy files are matched by
scoped name. Every import returns an `ImportReport`: which source tensor went to which variable,
transposed or not, and how layers were paired. A scope pattern (a regex matched from the start of
the dnnspec variable names, as `freeze` uses) limits the import to some layers, e.g. the lower
layers of a Keras or PyTorch model, to be frozen and reused.

`read_source` also returns what a file records beyond its weights (`describe.ModelInfo`: layers,
activations, batch-norm epsilon and momentum): `describe.compare` checks a spec against it, and
`dnnspec ckpt import --write-spec` renders it as a spec.

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
from .describe import LayerInfo, ModelInfo  # noqa: F401  (what files record beyond weights)

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
        Format("onnx", "ONNX inference graph (runs in onnxruntime)", ".onnx", "onnx", "export_onnx", "read_onnx"),
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
    if fmt != "npz":  # arrays by scoped name carry a tied kernel once, as it is
        refuse_tied(program, f"export to {fmt}")
    if f.needs_step:
        if step is None:
            raise TypeError(f"exporting to {fmt} needs step= (the number of updates done, which {fmt} files store)")
        options["step"] = int(step)
    return f.function(f.exporter)(program, variables, Path(path), **options)


def refuse_tied(program: Program, action: str) -> None:
    """Tied layers (`dense(..., tied=...)`: one kernel used twice) have no layer-by-layer
    counterpart in the other formats' files: a UserError naming them rather than a wrong model."""
    tied = [f"{op.layer} (tied to {op.component.kwargs['tied']})" for op in program.ops
            if op.kind == "dense" and op.component.kwargs.get("tied")]
    if tied:
        raise UserError(f"{action} does not support tied layers, whose kernel is another layer's transposed: "
                        f"{', '.join(tied)}; export to npz (arrays by scoped name) instead")


def model_code(program: Program, fmt: str, weights: str | None = None, probabilities: bool = False) -> str:
    """Python source defining the model equivalent to `program` in the target library."""
    f = get_format(fmt)
    if not f.code:
        raise UserError(f"{fmt} files carry their own graph: there is no model code to write")
    refuse_tied(program, f"{fmt} model code")
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
    name: str  # the layer's name in the source (what --map names it by)
    tensors: list[SourceTensor]
    ignored: list[str] = field(default_factory=list)  # tensors with no dnnspec counterpart (num_batches_tracked)
    aliases: tuple[str, ...] = ()  # other names --map accepts for it (a Keras layer's own name)

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def shapes(self) -> str:
        return ", ".join(f"{t.name} {tuple(t.source_shape or np.shape(t.value))}" for t in self.tensors)


@dataclass
class Source:
    """What a reader found in a file: its tensors (by layer, or by scoped name), whether the file
    states the order of its layers, and what it records about the model beyond the weights."""

    fmt: str = ""
    path: str = ""
    layers: list[SourceLayer] | None = None  # layer-structured files (Keras, torch, ONNX), in file order
    tensors: dict[str, np.ndarray] | None = None  # files of scoped names (npz)
    order: str | None = None  # what states the layer order (e.g. "nn.Sequential indices"); None: nothing does
    unordered: str = ""  # why nothing does, for messages
    model: ModelInfo | None = None  # the layers, activations, ... the file records (None: weights only)
    lacks: str = ""  # what the file does not record, for messages (e.g. "activations")
    notes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # tensors that are not the model's (optimizer state)


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
    unused: list[str] = field(default_factory=list)  # source tensors not imported (an error unless --partial)
    unfilled: list[str] = field(default_factory=list)  # variables in the scope the file has nothing for (--partial)
    ignored: list[str] = field(default_factory=list)  # source tensors that are not weights (counters, optimizer)
    notes: list[str] = field(default_factory=list)
    scope: str | None = None
    pairing: str = ""  # how source layers were paired with the spec's ops
    mapped: dict[str, str] = field(default_factory=dict)  # --map: source layer -> spec op

    def mapping(self) -> dict[str, str]:
        """source tensor name -> dnnspec variable name."""
        return {r.source: r.target for r in self.rows}

    def text(self) -> str:
        out = [f"imported {len(self.rows)} tensor{'s' * (len(self.rows) != 1)} from {self.fmt} file {self.path}"
               + (f" (scope '{self.scope}')" if self.scope else "") + ":"]
        if self.pairing:
            out.insert(0, f"layers paired {self.pairing}")
        if self.mapped:
            out.insert(1, "--map: " + ", ".join(f"{s}={d}" for s, d in self.mapped.items()))
        w = max((len(r.source) for r in self.rows), default=0)
        v = max((len(r.target) for r in self.rows), default=0)
        for r in self.rows:
            extra = "; ".join(x for x in ("transposed" if r.transposed else "", r.note) if x)
            out.append(f"  {r.source:<{w}} -> {r.target:<{v}} {str(r.shape):<10} {extra}".rstrip())
        if self.kept:
            out.append("kept as initialized (outside the scope): " + ", ".join(self.kept))
        if self.unfilled:
            out.append("kept as initialized (--partial; the file has nothing for them): " + ", ".join(self.unfilled))
        if self.unused:
            out.append("source tensors not imported (--partial): " + ", ".join(self.unused))
        if self.ignored:
            out.append("not weights of the model, not imported: " + ", ".join(self.ignored))
        out.extend(f"note: {n}" for n in self.notes)
        return "\n".join(out)


def read_source(fmt: str, path) -> Source:
    """Read a file of format `fmt`: its tensors and what it says about the model (CheckpointError
    naming the file if it cannot be read)."""
    f = get_format(fmt)
    if not f.importer:
        raise UserError(f"importing from {fmt} is not supported (only {', '.join(IMPORT_FORMATS)})")
    path = existing_file(path, f"{fmt} file")
    source = f.function(f.importer)(path)
    if isinstance(source, dict):  # named tensors (npz)
        source = Source(tensors=source, lacks="an .npz holds arrays named by variable only: no layers or activations")
    source.fmt, source.path = fmt, str(path)
    return source


def import_into(program: Program, variables: Variables, fmt: str, path, scope: str | None = None, *,
                partial: bool = False, mapping: dict[str, str] | None = None,
                allow_nonfinite: bool = False) -> ImportReport:
    """Fill `variables` (the model's arrays, written in place) from a file of format `fmt`.

    Strict, like torch's `load_state_dict(strict=True)`: every tensor of the file is used and every
    variable (in `scope`) filled, or it is a CheckpointError naming what is left over;
    `partial=True` allows both. Layers are paired with the spec's ops in the order the file
    states; a file that states none is paired by shape only where the shapes allow exactly one
    assignment, else `mapping` (source layer name -> dnnspec op name) must say. NaN/Inf values
    are refused unless `allow_nonfinite`. Nothing changes if anything does not fit.
    """
    if get_format(fmt).importer and fmt != "npz":
        _refuse_residual(program, fmt)
    source = read_source(fmt, path)
    return assign(program, variables, source, scope, partial=partial, mapping=mapping,
                  allow_nonfinite=allow_nonfinite)


def _refuse_residual(program: Program, fmt: str) -> None:
    """Layer-structured imports pair chains of layers; a residual block is not one."""
    blocks = [spec.name for spec in program.ops if spec.kind == "residual"]
    if blocks:
        raise UserError(f"importing {fmt} files into a spec with residual blocks ({', '.join(blocks[:3])}"
                        f"{', ...' if len(blocks) > 3 else ''}) is not supported: the importers pair chains of "
                        "layers. Load weights by variable name instead (an .npz export, or `reuse` of a dnnspec "
                        "checkpoint)")


def assign(program: Program, variables: Variables, source: Source, scope: str | None = None, *,
           partial: bool = False, mapping: dict[str, str] | None = None,
           allow_nonfinite: bool = False) -> ImportReport:
    """Import what `read_source` read into `variables` (in place); see `import_into`."""
    if source.tensors is not None:
        report = assign_named(variables, source.tensors, source.fmt, source.path, scope, partial=partial,
                              mapping=mapping, allow_nonfinite=allow_nonfinite)
    else:
        report = assign_layers(program, variables, source, scope=scope, partial=partial, mapping=mapping,
                               allow_nonfinite=allow_nonfinite)
    report.ignored[:0] = source.ignored
    report.notes[:0] = source.notes
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


def _nonfinite(name: str, value: np.ndarray) -> str | None:
    """A message if `value` holds NaN or Inf."""
    if value.dtype.kind != "f":
        return None
    bad = int(value.size - np.count_nonzero(np.isfinite(value)))
    if not bad:
        return None
    nan = int(np.count_nonzero(np.isnan(value)))
    return (f"source tensor '{name}' holds {bad} non-finite value{'s' * (bad != 1)} ({nan} NaN, {bad - nan} Inf) "
            f"of {value.size}; --allow-nonfinite imports it anyway")


def _leftovers(report: ImportReport, partial: bool) -> list[str]:
    """The strict rule: nothing of the file unused, nothing of the spec (in scope) unfilled."""
    if partial or not (report.unused or report.unfilled):
        return []
    out = ["the file and the spec do not match one to one (--partial imports what matches and leaves the rest):"]
    if report.unused:
        out.append(f"  file tensors with no place in the spec: {', '.join(report.unused)}")
    if report.unfilled:
        out.append(f"  spec variables the file does not fill: {', '.join(report.unfilled)}")
    return ["\n  ".join(out)]


def _commit(variables: Variables, planned: list[tuple[str, np.ndarray, str]], errors: list[str], fmt, path,
            allow_nonfinite: bool = False) -> None:
    if not allow_nonfinite:
        errors = errors + [m for _, value, src in planned if (m := _nonfinite(src, value))]
    if errors:
        raise CheckpointError(f"{path}: cannot import from {fmt}:\n  " + "\n  ".join(errors))
    for name, value, _ in planned:
        variables[name][...] = value


def assign_named(variables: Variables, tensors: dict[str, np.ndarray], fmt: str, path,
                 scope: str | None = None, *, partial: bool = False, mapping: dict[str, str] | None = None,
                 allow_nonfinite: bool = False) -> ImportReport:
    """Import tensors named by dnnspec scoped names (npz) into `variables` (in place); `mapping`
    renames file tensors (file name -> variable name)."""
    wanted = _scope_filter(variables, scope)
    report = ImportReport(fmt, str(path), scope=scope)
    planned, errors = [], []
    mapping = dict(mapping or {})
    for src in mapping:
        if src not in tensors:
            errors.append(f"--map {src}={mapping[src]}: the file has no tensor '{src}'")
    by_target = {mapping.get(n, n): n for n in tensors}
    for name, arr in variables.items():
        src = by_target.get(name)
        if not wanted(name):
            report.kept.append(name)
        elif src is None:
            if partial:
                report.unfilled.append(name)
            else:
                errors.append(f"no tensor '{name}' in the file (it has: {', '.join(tensors) or 'nothing'})")
        elif not _numbers(tensors[src]):
            errors.append(f"tensor '{src}' holds {np.asarray(tensors[src]).dtype} values, not numbers")
        elif tensors[src].shape != arr.shape:
            errors.append(f"tensor '{src}' has shape {tensors[src].shape}, the model's variable {arr.shape}")
        else:
            planned.append((name, tensors[src], src))
            report.rows.append(Transfer(src, name, arr.shape))
    used = {s for _, _, s in planned}
    report.unused = [n for n in tensors if n not in used]
    if not errors:
        errors += _leftovers(report, partial)
    _commit(variables, planned, errors, fmt, path, allow_nonfinite)
    report.mapped = mapping
    return report


# ---------------------------------------------------------------- pairing layers with ops
def _target_text(spec) -> str:
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in spec.variables.items())
    return f"{spec.name} ({spec.kind}: {shapes})"


def _resolve_map(mapping: dict[str, str], targets: list[tuple[int, object]], layers: list[SourceLayer],
                 errors: list[str]) -> dict[int, SourceLayer]:
    """--map SRC=DST: SRC a source layer's name, DST a spec op's name (or a scope holding exactly
    one op of that kind)."""
    fixed: dict[int, SourceLayer] = {}
    for src, dst in mapping.items():
        found = [la for la in layers if src in la.names()]
        if len(found) != 1:
            names = ", ".join(la.name for la in layers if la.kind in ("dense", "batchnorm", "prelu"))
            errors.append(f"--map {src}={dst}: the file has {'no' if not found else 'more than one'} layer named "
                          f"'{src}' (its layers: {names})")
            continue
        layer = found[0]
        same = [(i, s) for i, s in targets if TARGET_KINDS[s.kind] == layer.kind]
        hits = [(i, s) for i, s in same if s.name == dst] or \
               [(i, s) for i, s in same if s.name.startswith(dst.rstrip("/") + "/")]
        if len(hits) != 1:
            known = ", ".join(s.name for _, s in same) or "none"
            errors.append(f"--map {src}={dst}: '{src}' is a {layer.kind} layer, and "
                          f"{'no' if not hits else 'more than one'} {layer.kind} op of the spec is named "
                          f"'{dst}' or lies under it (its {layer.kind} ops: {known})")
            continue
        i = hits[0][0]
        if i in fixed or any(la is layer for la in fixed.values()):
            errors.append(f"--map {src}={dst}: pairs a layer or op a second time")
            continue
        fixed[i] = layer
    return fixed


def _unique_matching(targets: list[tuple[int, object]], layers: list[SourceLayer], fits) -> list[dict]:
    """The largest matchings of targets to layers (by `fits`), at most two of them: one means the
    shapes leave exactly one assignment."""
    best: list = [0, []]

    def walk(k: int, taken: set, current: dict) -> None:
        if len(best[1]) > 1 and len(current) + (len(targets) - k) <= best[0]:
            return  # already ambiguous at a size this branch cannot beat
        if len(current) + (len(targets) - k) < best[0]:
            return
        if k == len(targets):
            if len(current) > best[0]:
                best[0], best[1] = len(current), [dict(current)]
            elif len(current) == best[0] and len(best[1]) < 2:
                best[1].append(dict(current))
            return
        i, spec = targets[k]
        for j, layer in enumerate(layers):
            if j not in taken and fits(spec, layer):
                current[i] = layer
                walk(k + 1, taken | {j}, current)
                del current[i]
        walk(k + 1, taken, current)

    walk(0, set(), {})
    return best[1] if best[0] else [{}]


def assign_layers(program: Program, variables: Variables, source: Source | list, fmt: str | None = None,
                  path=None, scope: str | None = None, *, partial: bool = False,
                  mapping: dict[str, str] | None = None, allow_nonfinite: bool = False) -> ImportReport:
    """Import layer-structured tensors: the n-th source layer of a kind fills the n-th op of that
    kind when the file states its order; otherwise by the one assignment the shapes allow, or by
    `mapping`."""
    if not isinstance(source, Source):  # a plain list of layers in a stated order
        source = Source(fmt or "", str(path), layers=source, order="the order given")
    refuse_tied(program, f"importing layers from {source.fmt or 'a file'}")
    fmt, path = source.fmt, source.path
    wanted = _scope_filter(variables, scope)
    report = ImportReport(fmt, str(path), scope=scope)
    layers = source.layers or []
    errors: list[str] = []
    targets: list[tuple[int, object]] = []
    for i, spec in enumerate(program.ops):
        if not spec.variables:
            continue
        if TARGET_KINDS.get(spec.kind) is None:
            if any(wanted(t) for t in spec.variable_names()):
                errors.append(f"op '{spec.name}' ({spec.kind}) has no counterpart in {fmt} files")
            report.kept.extend(spec.variable_names())
            continue
        targets.append((i, spec))

    def in_scope(spec) -> bool:
        return any(wanted(t) for t in spec.variable_names())

    pairs = _resolve_map(dict(mapping or {}), targets, layers, errors)
    report.mapped = dict(mapping or {})
    rest_t = [(i, s) for i, s in targets if i not in pairs]
    rest_l = [la for la in layers if not any(la is p for p in pairs.values())]
    if source.order is not None:
        report.pairing = f"in the order the file states ({source.order})" + (" and by --map" if pairs else "")
        for kind in ("dense", "batchnorm", "prelu"):
            ts = [(i, s) for i, s in rest_t if TARGET_KINDS[s.kind] == kind]
            ls = [la for la in rest_l if la.kind == kind]
            for n, (i, spec) in enumerate(ts):
                if n < len(ls):
                    pairs[i] = ls[n]
                elif in_scope(spec) and not partial:
                    errors.append(f"op '{spec.name}' is {kind} layer #{n + 1} of the spec, but the source has only "
                                  f"{len(ls)} {kind} layer{'s' * (len(ls) != 1)}"
                                  + (" left after --map" if mapping else ""))
    else:
        def fits(spec, layer) -> bool:
            return TARGET_KINDS[spec.kind] == layer.kind and not _plan_layer(variables, spec, layer, wanted,
                                                                             partial)[3]
        for kind in ("dense", "batchnorm", "prelu"):
            ts = [(i, s) for i, s in rest_t if TARGET_KINDS[s.kind] == kind and in_scope(s)]
            ls = [la for la in rest_l if la.kind == kind]
            if not ts or not ls:
                continue
            found = _unique_matching(ts, ls, fits)
            if len(found) > 1:
                choices = "\n    ".join(f"{la.name}: {la.shapes()}" for la in ls)
                ops = "\n    ".join(_target_text(s) for _, s in ts)
                example = " ".join(f"--map {la.name}=OP" for la in ls[:3])
                errors.append(
                    f"the file does not state the order of its layers ({source.unordered or 'no order recorded'}), "
                    f"and the shapes of its {kind} layers fit the spec's {kind} ops in more than one way; "
                    f"pairing would be a guess. Say which goes where with --map SOURCE=OP (repeatable) or "
                    f"--map-file mapping.json (a JSON object {{\"SOURCE\": \"OP\"}}), e.g. {example}\n"
                    f"  the file's {kind} layers:\n    {choices}\n  the spec's {kind} ops:\n    {ops}")
            pairs.update(found[0])
            missing = [(i, s) for i, s in ts if i not in pairs]
            if missing and len(found) == 1 and not partial:
                if len(ts) == 1 and len(ls) == 1:  # one op, one layer: say why they do not fit
                    errors += _plan_layer(variables, ts[0][1], ls[0], wanted, partial)[3]
                else:
                    have = "\n    ".join(f"{la.name}: {la.shapes()}" for la in ls)
                    errors += [f"no {kind} layer of the file fits op {_target_text(s)}; the file's {kind} "
                               f"layers:\n    {have}" for _, s in missing]
        by_shape = [i for i, s in rest_t if in_scope(s) and i in pairs]
        how = [f"by --map ({len(mapping)})"] if mapping else []
        if by_shape or not mapping:
            how.append(f"by shape: the file states no order ({source.unordered or 'none recorded'}), and the "
                       "shapes allow exactly one assignment")
        report.pairing = " and ".join(how)
    planned = []
    for i, spec in sorted(targets, key=lambda t: t[0]):
        layer = pairs.get(i)
        if layer is None:
            if in_scope(spec):
                if partial or source.order is None:
                    report.unfilled.extend(t for t in spec.variable_names() if wanted(t))
                report.kept.extend(t for t in spec.variable_names() if not wanted(t))
            else:
                report.kept.extend(spec.variable_names())
            continue
        if not in_scope(spec):
            report.kept.extend(spec.variable_names())
            report.unused.extend(t.name for t in layer.tensors)
            report.ignored.extend(layer.ignored)
            continue
        report.kept.extend(t for t in spec.variable_names() if not wanted(t))
        rows, unused, unfilled, errs, ignored = _plan_layer(variables, spec, layer, wanted, partial)
        report.ignored.extend(ignored)
        errors.extend(errs)
        for target, value, tensor, note in rows:
            planned.append((target, value, tensor.name))
            report.rows.append(Transfer(tensor.name, target, variables[target].shape, tensor.transposed, note))
        report.unused.extend(unused)
        report.unfilled.extend(unfilled)
        report.ignored.extend(layer.ignored)
    paired = {id(la) for la in pairs.values()}
    for layer in layers:
        if id(layer) not in paired:
            report.unused.extend(t.name for t in layer.tensors)
            report.ignored.extend(layer.ignored)
    bns = [s for s in program.ops if s.kind == "batchnorm" and any(wanted(t) for t in s.variable_names())]
    if bns and source.model is None and fmt in ("keras", "keras2", "torch"):
        eps = ", ".join(sorted({f"{s.build().epsilon:g}" for s in bns}))
        default = "torch's default is 1e-5" if fmt == "torch" else "Keras' default is 1e-3"
        report.notes.append(f"batch norm epsilon is not stored in {fmt} weight files: the spec's ({eps}) is used "
                            f"({default}); predictions match only if the source model used the same")
    if not errors:
        errors += _leftovers(report, partial)
    _commit(variables, planned, errors, fmt, path, allow_nonfinite)
    return report


def _plan_layer(variables: Variables, spec, layer: SourceLayer, wanted, partial: bool):
    """(rows [(variable, value, source tensor, note)], unused source tensors, unfilled variables,
    errors, ignored source tensors) of filling op `spec` from `layer`; changes nothing."""
    locals_ = list(spec.variables)
    rows, unused, unfilled, errors, ignored = [], [], [], [], []
    if all(t.local is None for t in layer.tensors):  # positional (Keras 3): the op's variable order
        if len(layer.tensors) != len(locals_):
            return [], [], [], [f"source layer '{layer.name}' has {len(layer.tensors)} tensors, op '{spec.name}' "
                                f"needs {len(locals_)} ({', '.join(locals_)})"], []
        pairs = list(zip(locals_, layer.tensors))
    else:
        named = {t.local: t for t in layer.tensors}
        missing = [loc for loc in locals_ if loc not in named and wanted(f"{spec.name}/{loc}")]
        if missing and not partial:
            return [], [], [], [f"source layer '{layer.name}' has no tensor for "
                                f"{', '.join(f'{spec.name}/{m}' for m in missing)} "
                                f"(it has {', '.join(t.name for t in layer.tensors)})"], []
        unfilled += [f"{spec.name}/{m}" for m in missing]
        pairs = [(loc, named[loc]) for loc in locals_ if loc in named]
        for t in layer.tensors:
            if t.local not in locals_:
                if _identity(t):  # the ones/zeros a format writes where the op has no gamma/beta
                    ignored.append(f"{t.name} ({'ones' if t.local == 'gamma' else 'zeros'}; the op has no {t.local})")
                else:
                    unused.append(t.name)
    for local, t in pairs:
        target = f"{spec.name}/{local}"
        if not wanted(target):
            unused.append(t.name)
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
        note = "one shared slope, copied to every unit" if value is not t.value else ""
        rows.append((target, value, t, note))
    return rows, unused, unfilled, errors, ignored


def _identity(t: SourceTensor) -> bool:
    """A batch-norm gamma of ones or beta of zeros: what torch and ONNX hold for an op without them."""
    want = {"gamma": 1.0, "beta": 0.0}.get(t.local)
    return want is not None and _numbers(t.value) and bool(np.all(t.value == want))


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
