"""Tools over checkpoints: select, rename, extract, merge, diff, verify, and the reuse plan.

Pure functions over `Checkpoint` objects (the CLI in `dnnspec.cli.ckpt` reads and writes the
files); the spec-side `reuse` uses `map_names` and `plan_reuse` too, so the command line and a spec
agree on what a pattern selects.

Patterns are Python regular expressions matched **from the start** of a name (`re.match`, TF1's
`get_collection(scope=...)`): ``dnn/hidden[12]`` matches ``dnn/hidden1/kernel`` but not
``encoder/dnn/hidden1/kernel``; add ``$`` to anchor the end. The empty pattern matches everything.

Renaming (`rename`, `map_names(rename_from=, rename_to=)`) replaces the part of a name that
``rename_from`` matches at its start with ``rename_to`` (which may use ``\\1`` or ``\\g<name>``);
the rest of the name is kept: from ``dnn/`` to ``encoder/`` turns ``dnn/hidden1/kernel`` into
``encoder/hidden1/kernel``. Names the pattern does not match keep their name.

Derived files. A checkpoint written by `rename`, `extract` or `merge` keeps the ``/spec`` of its
(first) source unchanged, as provenance: it says which model the weights were trained in, not
which variables the file holds — after a rename or an extract it usually no longer does, so
such a file is meant to be loaded by name into another spec (``reuse``), not rebuilt with
``load_checkpoint``. Each derivation appends a record to ``state["derived"]`` (operation,
sources, patterns), so ``ckpt show`` tells a derived file from a training checkpoint.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from ..errors import CheckpointError, UserError
from ..program import PatternError, compile_pattern, member_of
from .hdf5 import FORMAT, FORMAT_VERSION, Checkpoint, VarRecord, reading, reason


# ---------------------------------------------------------------- patterns
def listing(names: Iterable[str], limit: int = 12, sep: str = ", ") -> str:
    """Names for an error message: all of them, or the first `limit` and a count."""
    names = list(names)
    if not names:
        return "(none)"
    if len(names) <= limit:
        return sep.join(names)
    return sep.join(names[:limit]) + f"{sep}... ({len(names)} in all)"


def _text(pattern) -> str:
    return compile_pattern(pattern).text


def select(names: Iterable[str], pattern, *, allow_empty: bool = False, where: str = "") -> list[str]:
    """The names `pattern` matches from their start, in order.

    A pattern that matches nothing is a `PatternError` listing the names that exist (unless
    `allow_empty`); `where` (e.g. a file name) is named in that message.
    """
    names = list(names)
    rx = compile_pattern(pattern)
    out = [n for n in names if rx.match(n)]
    if not out and not allow_empty:
        place = f" in {where}" if where else ""
        raise PatternError(f"pattern {_text(pattern)!r} matches no variable{place}; variables: {listing(names)}")
    return out


def _renamer(rename_from, rename_to: str):
    """name -> new name, or None when `rename_from` does not match the start of the name."""
    rx = compile_pattern(rename_from, "rename pattern")

    def apply(name: str) -> str | None:
        m = rx.regex.match(name)
        if m is None:
            return None
        try:
            head = m.expand(rename_to)
        except (re.error, IndexError) as e:
            raise PatternError(f"invalid replacement {rename_to!r} for {_text(rename_from)!r}: {e}") from None
        return head + name[m.end():]

    return apply


def _check_unique(pairs: Iterable[tuple[str, str]], what: str) -> None:
    """Refuse two sources that would get the same new name."""
    seen: dict[str, str] = {}
    for new, old in pairs:
        if new in seen and seen[new] != old:
            raise CheckpointError(f"{what}: both {seen[new]} and {old} would be named {new}")
        seen[new] = old


def map_names(source_names: Iterable[str], scope="", rename_from="", rename_to: str = "",
              mapping: Mapping[str, str] | None = None) -> dict[str, str]:
    """Target name -> source name for reusing `source_names` in another model.

    Keeps the source names that `scope` matches from the start ("" keeps all; a scope that
    matches nothing is an error listing the names), then names each one in the target:
    - `rename_from`/`rename_to`: the matched start is replaced, the rest kept (names the
      pattern does not match keep their name);
    - `mapping` (TensorFlow's `init_from_checkpoint` assignment map): a key ending in "/" is a
      source scope and its value the target scope (``{"dnn/": "encoder/"}``); any other key is
      an exact source name mapped to the exact target name. Only mapped names are kept, the
      longest matching key wins, and a key that matches no kept name is an error.
    Two sources that would get the same target name are an error.
    """
    names = list(source_names)
    if mapping and rename_from:
        raise CheckpointError("give either a rename (from/to) or an assignment map, not both")
    kept = select(names, scope, where="the source checkpoint") if _text(scope) else names
    pairs: list[tuple[str, str]] = []
    if mapping:
        used = set()
        scopes = sorted((k for k in mapping if k.endswith("/")), key=len, reverse=True)
        for n in kept:
            if n in mapping:
                pairs.append((mapping[n], n))
                used.add(n)
                continue
            key = next((k for k in scopes if n.startswith(k)), None)
            if key is not None:
                value = mapping[key]
                pairs.append(((value if value.endswith("/") or not value else value + "/") + n[len(key):], n))
                used.add(key)
        unused = [k for k in mapping if k not in used]
        if unused:
            raise PatternError(f"assignment map entries match no variable in the source checkpoint: "
                               f"{', '.join(unused)}; variables: {listing(kept)}")
    elif rename_from:
        apply = _renamer(rename_from, rename_to)
        pairs = [(apply(n) or n, n) for n in kept]
    else:
        pairs = [(n, n) for n in kept]
    _check_unique(pairs, "reuse")
    return {new: old for new, old in pairs}


# ---------------------------------------------------------------- reuse planning
class Conflict(NamedTuple):
    target: str
    source: str
    target_shape: tuple
    source_shape: tuple


@dataclass
class ReuseReport:
    """What loading a checkpoint into a model by name would do (or did)."""

    loaded: dict[str, str] = field(default_factory=dict)  # target -> source
    left_at_init: list[str] = field(default_factory=list)  # targets no source fills
    unused: list[str] = field(default_factory=list)  # source names not loaded (and not in conflict)
    conflicts: list[Conflict] = field(default_factory=list)
    no_target: dict[str, str] = field(default_factory=dict)  # source -> its target name the model lacks
    shapes: dict[str, tuple] = field(default_factory=dict)  # target -> shape, for the report
    source_path: str = ""
    description: str = ""  # scope / renaming, for the report

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def format(self) -> str:
        """The printed report: loaded, left at init, unused, conflicts."""
        head = f"reuse {self.source_path}" if self.source_path else "reuse"
        lines = [head + (f" ({self.description})" if self.description else "") + ":"]
        lines.append(f"  loaded ({len(self.loaded)}):")
        width = max((len(t) for t in self.loaded), default=0)
        swidth = max((len(_shape(self.shapes.get(t, ()))) for t in self.loaded), default=0)
        for t, s in self.loaded.items():
            origin = f"  <- {s}" if s != t else ""
            lines.append(f"    {t:<{width}}  {_shape(self.shapes.get(t, ())):<{swidth}}{origin}".rstrip())
        lines.append(f"  left at initializer ({len(self.left_at_init)}): {listing(self.left_at_init, 50)}")
        lines.append(f"  unused in the checkpoint ({len(self.unused)}): {listing(self.unused, 50)}")
        if self.no_target:
            lines.append("    selected but not in the model: "
                         + ", ".join(f"{s} -> {t}" for s, t in self.no_target.items()))
        if self.conflicts:
            lines.append(f"  shape conflicts ({len(self.conflicts)}):")
            for c in self.conflicts:
                lines.append(f"    {c.target} {_shape(c.target_shape)} in the model <- "
                             f"{c.source} {_shape(c.source_shape)} in the checkpoint")
        return "\n".join(lines)

    def raise_on_conflicts(self, path: str = "") -> None:
        """A CheckpointError naming every conflicting pair and both shapes."""
        if not self.conflicts:
            return
        where = f"{path or self.source_path}: " if (path or self.source_path) else ""
        parts = [f"variable {c.target} of the model has shape {_shape(c.target_shape)} but {c.source} in the "
                 f"checkpoint has shape {_shape(c.source_shape)}" for c in self.conflicts]
        raise CheckpointError(where + "cannot reuse: " + "; ".join(parts))

    def raise_if_empty(self, path: str = "") -> None:
        """A CheckpointError when the checkpoint would fill no variable of the model."""
        if self.loaded or self.conflicts:
            return
        where = f"{path or self.source_path}: " if (path or self.source_path) else ""
        selected = (", selected names without a variable in the model: "
                    + listing(f"{s} -> {t}" for s, t in self.no_target.items())) if self.no_target else ""
        raise CheckpointError(where + "the checkpoint fills no variable of the model" + selected)

    def apply(self, source: Checkpoint, variables: Mapping[str, np.ndarray]) -> None:
        """Copy the loaded variables into `variables` (arrays written in place), after checking."""
        self.raise_on_conflicts()
        for t, s in self.loaded.items():
            variables[t][...] = source.variables[s].value


def _shape(shape) -> str:
    return str(tuple(int(d) for d in shape))  # Python's spelling, as in the other checkpoint errors


def plan_reuse(source: Checkpoint, target_shapes: Mapping[str, tuple], scope="", rename_from="",
               rename_to: str = "", mapping: Mapping[str, str] | None = None, source_path: str = "") -> ReuseReport:
    """Which target variables `source` fills (after scope and renaming), by name and shape."""
    pairs = map_names(source.variables, scope, rename_from, rename_to, mapping)
    report = ReuseReport(source_path=source_path, description=_describe(scope, rename_from, rename_to, mapping))
    taken = set()
    for t, shape in target_shapes.items():
        shape = tuple(int(d) for d in shape)
        report.shapes[t] = shape
        s = pairs.get(t)
        if s is None:
            report.left_at_init.append(t)
            continue
        taken.add(s)
        have = tuple(source.variables[s].value.shape)
        if have != shape:
            report.conflicts.append(Conflict(t, s, shape, have))
        else:
            report.loaded[t] = s
    report.no_target = {s: t for t, s in pairs.items() if t not in target_shapes}
    report.unused = [n for n in source.variables if n not in taken]
    return report


def _describe(scope, rename_from, rename_to, mapping) -> str:
    parts = []
    if _text(scope):
        parts.append(f"scope {_text(scope)!r}")
    if rename_from:
        parts.append(f"from {_text(rename_from)!r} to {rename_to!r}")
    if mapping:
        parts.append("map " + ", ".join(f"{k!r}: {v!r}" for k, v in mapping.items()))
    return ", ".join(parts)


def target_shapes(model_or_shapes) -> dict[str, tuple]:
    """Variable shapes from a Model, a Plan, a dict of VarInfo, or a dict of shapes."""
    obj = getattr(model_or_shapes, "plan", model_or_shapes)
    obj = getattr(obj, "infos", obj)
    return {n: tuple(getattr(v, "shape", v)) for n, v in obj.items()}


def compat(program_or_model_shapes, ckpt: Checkpoint, scope="", rename_from="", rename_to: str = "",
           mapping: Mapping[str, str] | None = None, source_path: str = "") -> ReuseReport:
    """A dry run of reusing `ckpt` in a model (Model, Plan, infos or {name: shape})."""
    return plan_reuse(ckpt, target_shapes(program_or_model_shapes), scope, rename_from, rename_to, mapping,
                      source_path)


# ---------------------------------------------------------------- diff
class DiffRow(NamedTuple):
    name: str
    status: str  # "same" (bit-equal), "close" (within atol), "changed", "shape", "only_a", "only_b"
    shape_a: tuple | None
    shape_b: tuple | None
    max_abs: float | None  # max |a - b| over the variable (None unless both have the same shape)
    equal: bool  # bit-identical values (and dtype, shape)


def max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| in float64 (NaN if either has a NaN where the other differs; 0 for empty)."""
    if a.size == 0:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    same = (a == b) | (np.isnan(a) & np.isnan(b))  # inf == inf and NaN vs NaN are no difference
    d[same] = 0.0
    return float(np.max(d))


def bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == \
        np.ascontiguousarray(b).tobytes()


def diff(a: Checkpoint, b: Checkpoint, atol: float = 0.0) -> list[DiffRow]:
    """One row per variable of either checkpoint: a's order, then those only in b."""
    rows = []
    for name, ra in a.variables.items():
        va = ra.value
        if name not in b.variables:
            rows.append(DiffRow(name, "only_a", va.shape, None, None, False))
            continue
        vb = b.variables[name].value
        if va.shape != vb.shape:
            rows.append(DiffRow(name, "shape", va.shape, vb.shape, None, False))
            continue
        eq = bit_equal(va, vb)
        m = 0.0 if eq else max_abs_difference(va, vb)
        status = "same" if eq else "close" if m <= atol else "changed"  # NaN compares False: changed
        rows.append(DiffRow(name, status, va.shape, vb.shape, m, eq))
    for name, rb in b.variables.items():
        if name not in a.variables:
            rows.append(DiffRow(name, "only_b", None, rb.value.shape, None, False))
    return rows


# ---------------------------------------------------------------- derived checkpoints
def _derived(base: Checkpoint, record: dict) -> dict:
    state = copy.deepcopy(base.state)
    state["derived"] = [*state.get("derived", []), record]
    return state


def _record(rec: VarRecord, value: np.ndarray | None = None) -> VarRecord:
    return VarRecord(rec.value.copy() if value is None else value, rec.trainable, rec.role, rec.init,
                     tuple(rec.collections))


def rename(ckpt: Checkpoint, pattern, replacement: str) -> Checkpoint:
    """Rename the variables `pattern` matches (their slots and collection members too).

    A pattern that matches nothing is an error; so is a new name that another variable has.
    """
    names = list(ckpt.variables)
    select(names, pattern)
    apply = _renamer(pattern, replacement)
    new = {n: apply(n) or n for n in names}
    _check_unique(((v, k) for k, v in new.items()), "rename")
    variables = {new[n]: _record(r) for n, r in ckpt.variables.items()}
    optimizer = None
    if ckpt.optimizer is not None:
        optimizer = {k: copy.deepcopy(v) for k, v in ckpt.optimizer.items() if k != "slots"}
        optimizer["slots"] = {slot: {new.get(n, apply(n) or n): a.copy() for n, a in arrays.items()}
                              for slot, arrays in ckpt.optimizer.get("slots", {}).items()}
    # members are variables, layers (a scope) or outputs: rename whatever the pattern matches
    collections = {c: [apply(m) or m for m in members] for c, members in ckpt.collections.items()}
    state = _derived(ckpt, {"op": "rename", "from": _text(pattern), "to": replacement,
                            "renamed": sum(new[n] != n for n in names)})
    return Checkpoint(ckpt.spec, variables, optimizer, state, copy.deepcopy(ckpt.history), collections)


def _member_kept(member: str, kept: Iterable[str]) -> bool:
    return any(member_of(v, member) for v in kept)


def extract(ckpt: Checkpoint, pattern) -> Checkpoint:
    """The variables `pattern` matches, with their optimizer slots.

    Collections keep the members that name a kept variable or a scope holding one (outputs
    such as `x` or `accuracy` are dropped); collections left empty are dropped.
    """
    kept = select(ckpt.variables, pattern)
    keep = set(kept)
    variables = {n: _record(ckpt.variables[n]) for n in kept}
    optimizer = None
    if ckpt.optimizer is not None:
        optimizer = {k: copy.deepcopy(v) for k, v in ckpt.optimizer.items() if k != "slots"}
        optimizer["slots"] = {slot: {n: a.copy() for n, a in arrays.items() if n in keep}
                              for slot, arrays in ckpt.optimizer.get("slots", {}).items()}
    collections = {}
    for c, members in ckpt.collections.items():
        members = [m for m in members if _member_kept(m, kept)]
        if members:
            collections[c] = members
    for rec in variables.values():
        rec.collections = tuple(c for c in rec.collections if c in collections or c not in ckpt.collections)
    state = _derived(ckpt, {"op": "extract", "pattern": _text(pattern), "variables": len(kept)})
    return Checkpoint(ckpt.spec, variables, optimizer, state, copy.deepcopy(ckpt.history), collections)


def merge(a: Checkpoint, b: Checkpoint, allow_conflicts: bool = False, prefer: str = "a") -> Checkpoint:
    """The union of two checkpoints' variables.

    A conflict is a name both hold with different shapes or values (not bit-identical); it is
    an error listing every conflict unless `allow_conflicts`, then `prefer` ("a" or "b") wins.
    The result keeps a's spec, state and history, and a's optimizer record (name,
    hyperparameters, step; b's if a has none); each variable brings its slots from the file its
    value came from when that file's optimizer is of the same kind.
    """
    if prefer not in ("a", "b"):
        raise UserError(f"prefer must be 'a' or 'b', not {prefer!r}")
    conflicts = []
    for n in a.variables.keys() & b.variables.keys():
        va, vb = a.variables[n].value, b.variables[n].value
        if va.shape != vb.shape:
            conflicts.append(f"{n}: shape {_shape(va.shape)} in a, {_shape(vb.shape)} in b")
        elif not bit_equal(va, vb):
            conflicts.append(f"{n}: values differ (max abs difference {max_abs_difference(va, vb):.3g})")
    conflicts.sort()
    if conflicts and not allow_conflicts:
        raise CheckpointError(f"merge: {len(conflicts)} variable(s) conflict: " + listing(conflicts, sep="; ")
                              + " (allow with --allow-conflicts and choose with --prefer a|b)")
    origin = {n: "a" for n in a.variables}
    for n in b.variables:
        if n not in a.variables or (prefer == "b" and n in a.variables):
            origin[n] = "b"
    srcs = {"a": a, "b": b}
    variables = {n: _record(srcs[o].variables[n]) for n, o in origin.items()}
    base = a if a.optimizer is not None else b
    optimizer = None
    if base.optimizer is not None:
        optimizer = {k: copy.deepcopy(v) for k, v in base.optimizer.items() if k != "slots"}
        slots: dict[str, dict[str, np.ndarray]] = {}
        for n, o in origin.items():
            src = srcs[o].optimizer
            if src is None or src["name"] != optimizer["name"]:
                continue
            for slot, arrays in src.get("slots", {}).items():
                if n in arrays:
                    slots.setdefault(slot, {})[n] = arrays[n].copy()
        optimizer["slots"] = slots
    collections = {c: list(m) for c, m in a.collections.items()}
    for c, members in b.collections.items():
        have = collections.setdefault(c, [])
        have.extend(m for m in members if m not in have)
    state = _derived(a, {"op": "merge", "prefer": prefer, "conflicts": len(conflicts),
                         "from_b": sum(o == "b" for o in origin.values())})
    return Checkpoint(a.spec, variables, optimizer, state, copy.deepcopy(a.history), collections)


# ---------------------------------------------------------------- verify
def verify(path, against=None, pattern=None) -> list[str]:
    """Problems with the checkpoint at `path` (an empty list: none found).

    Checks the format version, every dataset's checksum, the spec checksum, dtypes, that slots
    belong to trainable variables of the same shape, and that no variable or slot holds NaN or
    Inf. With `against` (a path or a Checkpoint), every variable matching `pattern` ("" or None:
    all) must be bit-identical to the variable of the same name there. A missing file, a
    damaged `against` file, and a pattern that matches nothing raise instead.
    """
    from .hdf5 import existing_file, load

    path = existing_file(path, "checkpoint file")
    other = None
    if against is not None:
        other = against if isinstance(against, Checkpoint) else load(against)
    try:
        ckpt = load(path)
    except CheckpointError as e:
        return [str(e), *_damaged_datasets(path)]
    try:
        problems = _no_checksum(path)
    except CheckpointError as e:  # loaded, yet damaged where the load did not look
        problems = [str(e)]
    for name, rec in ckpt.variables.items():
        if rec.value.dtype != np.float32:
            problems.append(f"variable {name} has dtype {rec.value.dtype}, not float32")
        problems.extend(_finite(f"variable {name}", rec.value))
    if ckpt.optimizer is not None:
        for slot, arrays in ckpt.optimizer.get("slots", {}).items():
            for name, arr in arrays.items():
                rec = ckpt.variables.get(name)
                if rec is None:
                    problems.append(f"optimizer slot {slot} of {name}: no such variable")
                elif arr.shape != rec.value.shape:
                    problems.append(f"optimizer slot {slot} of {name} has shape {_shape(arr.shape)}, "
                                    f"the variable {_shape(rec.value.shape)}")
                elif not rec.trainable:
                    problems.append(f"optimizer slot {slot} of {name}: the variable is not trainable")
                problems.extend(_finite(f"optimizer slot {slot} of {name}", arr))
    if other is not None:
        where = str(against) if not isinstance(against, Checkpoint) else "the other checkpoint"
        for name in select(ckpt.variables, pattern, where=str(path)):
            mine = ckpt.variables[name].value
            if name not in other.variables:
                problems.append(f"variable {name} is not in {where}")
                continue
            theirs = other.variables[name].value
            if mine.shape != theirs.shape:
                problems.append(f"variable {name} has shape {_shape(mine.shape)}, in {where} {_shape(theirs.shape)}")
            elif not bit_equal(mine, theirs):
                problems.append(f"variable {name} differs from {where} "
                                f"(max abs difference {max_abs_difference(mine, theirs):.3g})")
    return problems


def _finite(what: str, arr: np.ndarray) -> list[str]:
    if not np.issubdtype(arr.dtype, np.floating):
        return []
    nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    if nan or inf:
        return [f"{what} holds {nan} NaN and {inf} Inf values"]
    return []


def _datasets(f):
    import h5py

    out = []
    f.visititems(lambda n, o: out.append((n, o)) if isinstance(o, h5py.Dataset) else None)
    return out


def _damaged_datasets(path) -> list[str]:
    """After a failed load: name each dataset that cannot be read (checksum failures).

    Best effort: a file too damaged to list its datasets adds nothing to the load's own error."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                return []
            bad = []
            for name, ds in _datasets(f):
                try:
                    ds[()]
                except Exception as e:  # noqa: BLE001 - any failure to read it is damage
                    bad.append(f"/{name}: cannot be read ({reason(e)})")
            return bad
    except Exception:  # noqa: BLE001 - damaged metadata (HDF5 raises RuntimeError, OSError, ...)
        return []


def _no_checksum(path) -> list[str]:
    """Arrays written without the fletcher32 filter: damage to them would go unnoticed."""
    import h5py

    with reading(path, "damaged or not a dnnspec checkpoint"):
        with h5py.File(path, "r") as f:
            if int(f.attrs.get("format_version", 0)) != FORMAT_VERSION:
                return []  # other versions may lay out differently; loading them already succeeded
            return [f"/{name}: no checksum (damage would go unnoticed)" for name, ds in _datasets(f)
                    if name.startswith(("variables/", "optimizer/")) and ds.size and ds.ndim and not ds.fletcher32]
