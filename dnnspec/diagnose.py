"""See inside training: per-layer activation and gradient statistics of a compiled model, a
verdict in plain words, variations of a spec side by side, and the hooks a training run uses to
log the same numbers (`LayerMonitor`, `tensorboard_writer`).

Everything runs on the plan training uses: `Plan.forward(training=True)` op by op (the same ops,
in the same order, over the same buffers as `Plan.forward` without `stop`), the loss, and
`Plan.backward`; training steps (``--steps``) go through `Trainer.train_step`. No op is
implemented a second time here.

What a layer is: the ops of one line of the spec (`OpSpec.layer`), e.g. ``dnn/hidden1`` =
dense + sigmoid. Its statistics:

- ``mean``/``std``/``min``/``max`` of its output (the output of its last op) over the batches;
- ``saturated``: the fraction of its sigmoid/tanh-like outputs within `SATURATION_TOL` of a bound
  (softmax aside);
- ``dead``: the fraction of its ReLU-family units whose output was never positive over all the
  batches (such a unit passes no gradient: it no longer learns);
- ``grad_norm``: the L2 norm of the data loss's gradient with respect to its kernel, the mean
  over the batches (each variable's own norm is in ``variables``); ``grad_ratio`` =
  grad_norm / ‖kernel‖;
- ``update_ratio`` (after ``--steps``): ‖Δkernel‖ / ‖kernel‖ of the last step (rule of thumb:
  about 1e-3).

Sits above `api` (it imports api, plan, check, train); nothing below imports it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .plan import Plan
from .rng import stream

SATURATING = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}
DEAD_FAMILY = {"relu", "leaky_relu", "prelu", "rrelu", "elu", "selu"}  # "never positive" = stuck
SATURATION_TOL = 1e-2  # within this of a bound counts as saturated
UPDATE_RULE = 1e-3  # the rule of thumb for update/weight ratios

# verdict thresholds
VANISHING = 1e-2  # the lowest layer's gradient below this fraction of the top one's
EXPLODING = 1e2  # ... above this multiple
SHRINKING = 1e-1  # the last hidden layer's output spread below this fraction of the first's
SATURATED_LAYER = 0.2  # a layer with this fraction of saturated outputs is named
DEAD_LAYER = 0.25  # ... of dead units
UPDATE_HIGH, UPDATE_LOW = 1e-1, 1e-5

HIST_BINS = 40
SAMPLE_CAP = 200_000  # activation values kept per layer for histograms


# ---------------------------------------------------------------- layers of a plan
@dataclass
class LayerGroup:
    """The ops of one spec line, as a diagnosis reports them."""

    layer: str  # scoped layer name, e.g. "dnn/hidden1"
    name: str  # short name for messages, e.g. "hidden1"
    ops: list[int]  # op indices in the plan
    kinds: list[str]
    activation: str | None  # the kind of its last activation op
    act_op: int | None  # that op's index
    kernel: str | None  # its (first) kernel variable, if trainable
    variables: list[str]  # its trainable variables
    units: int
    frozen: bool = False  # it has variables, none of them trained


def layer_groups(plan: Plan) -> list[LayerGroup]:
    """The plan's ops grouped by the spec line they come from, in order."""
    specs = plan.program.ops
    groups: list[LayerGroup] = []
    for i, spec in enumerate(specs):
        if groups and groups[-1].layer == spec.layer and groups[-1].ops[-1] == i - 1:
            g = groups[-1]
        else:
            g = LayerGroup(spec.layer, spec.layer, [], [], None, None, None, [], spec.n_out)
            groups.append(g)
        g.ops.append(i)
        g.kinds.append(spec.kind)
        g.units = spec.n_out
        if spec.component.kind == "activation":
            g.activation, g.act_op = spec.kind, i
        for name in spec.variable_names():
            info = plan.infos[name]
            if info.trainable:
                g.variables.append(name)
                if g.kernel is None and info.role == "kernel":
                    g.kernel = name
    names = short_names([g.layer for g in groups])
    for g, n in zip(groups, names):
        g.name = n
        declared = [v for i in g.ops for v in specs[i].variable_names()]
        g.frozen = bool(declared) and not g.variables
    return groups


def short_names(layers: Sequence[str]) -> list[str]:
    """Layer names without the scope all of them share ("dnn/hidden1" -> "hidden1")."""
    parts = [name.split("/") for name in layers]
    common = 0
    if parts:
        while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
            common += 1
    return ["/".join(p[common:]) for p in parts]


# ---------------------------------------------------------------- accumulating statistics
class _Accumulator:
    """Per-layer sums over batches: outputs, saturation, dead units, gradient norms."""

    def __init__(self, groups: list[LayerGroup], plan: Plan, keep_samples: bool = True):
        self.groups, self.plan, self.keep_samples = groups, plan, keep_samples
        n = len(groups)
        self.count = [0] * n
        self.s1 = [0.0] * n
        self.s2 = [0.0] * n
        self.lo = [math.inf] * n
        self.hi = [-math.inf] * n
        self.sat = [0] * n
        self.sat_n = [0] * n
        self.alive: list[np.ndarray | None] = [None] * n
        self.samples: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.kept = [0] * n
        self.grads: dict[str, list[float]] = {}
        self.losses: list[float] = []

    def outputs(self, outs: dict[int, np.ndarray]) -> None:
        """One batch: the output of every op (by index) that a group reads."""
        for k, g in enumerate(self.groups):
            y = outs.get(g.ops[-1])
            if y is None:
                continue
            y64 = y.astype(np.float64, copy=False)
            self.count[k] += y.size
            self.s1[k] += float(y64.sum())
            self.s2[k] += float(np.square(y64).sum())
            if y.size:
                self.lo[k] = min(self.lo[k], float(y.min()))
                self.hi[k] = max(self.hi[k], float(y.max()))
            if self.keep_samples and self.kept[k] < SAMPLE_CAP:
                flat = y.reshape(-1)
                take = flat[: SAMPLE_CAP - self.kept[k]].copy()
                self.samples[k].append(take)
                self.kept[k] += take.size
            if g.act_op is None:
                continue
            a = outs.get(g.act_op)
            if a is None:
                continue
            if g.activation in SATURATING:
                low, high = SATURATING[g.activation]
                self.sat[k] += int(np.count_nonzero((a <= low + SATURATION_TOL) | (a >= high - SATURATION_TOL)))
                self.sat_n[k] += a.size
            if g.activation in DEAD_FAMILY:
                pos = (a > 0).any(axis=0)
                self.alive[k] = pos if self.alive[k] is None else (self.alive[k] | pos)

    def gradients(self) -> None:
        """One batch's gradients (after Plan.backward)."""
        for g in self.groups:
            for name in g.variables:
                self.grads.setdefault(name, []).append(_norm(self.plan.grads[name]))

    def result(self) -> list[dict]:
        plan, out = self.plan, []
        for k, g in enumerate(self.groups):
            n = self.count[k]
            mean = self.s1[k] / n if n else None
            std = math.sqrt(max(self.s2[k] / n - mean * mean, 0.0)) if n else None
            row: dict[str, Any] = {
                "layer": g.layer, "name": g.name, "ops": list(g.kinds), "activation": g.activation, "units": g.units,
                "frozen": g.frozen,
                "mean": mean, "std": std,
                "min": self.lo[k] if n else None, "max": self.hi[k] if n else None,
                "saturated": self.sat[k] / self.sat_n[k] if self.sat_n[k] else None,
                "dead": (1.0 - float(self.alive[k].mean())) if self.alive[k] is not None else None,
            }
            variables = {}
            for name in g.variables:
                norms = self.grads.get(name)
                w = _norm(plan.variables[name])
                gn = float(np.mean(norms)) if norms else None
                variables[name] = {"grad_norm": gn, "weight_norm": w, "grad_ratio": _ratio(gn, w)}
            row["variables"] = variables
            kv = variables.get(g.kernel) if g.kernel else None
            row["kernel"] = g.kernel
            row["grad_norm"] = kv["grad_norm"] if kv else None
            row["weight_norm"] = kv["weight_norm"] if kv else None
            row["grad_ratio"] = kv["grad_ratio"] if kv else None
            if self.samples[k]:
                values = np.concatenate(self.samples[k])
                row["histogram"] = _histogram(values)
                row["_values"] = values  # for plots; dropped from JSON
            out.append(row)
        return out


def _norm(a: np.ndarray) -> float:
    a = a.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(math.sqrt(float(np.dot(a.astype(np.float64), a.astype(np.float64))))) if a.size else 0.0


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b if b > 0 else None


def _histogram(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {"edges": [], "counts": []}
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1e-6
    counts, edges = np.histogram(finite, bins=HIST_BINS, range=(lo, hi))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


# ---------------------------------------------------------------- one model, a few batches
def probe_batches(x: np.ndarray, y: np.ndarray, batch: int, batches: int, seed: int = 0
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """`batches` batches of `batch` training examples, drawn without replacement from a fixed
    stream (the same examples for every variation of a spec with the same data)."""
    n = len(x)
    batch = max(1, min(batch, n))
    order = stream(seed, "diagnose", "batches").permutation(n)
    out = []
    for b in range(batches):
        idx = order[(b * batch) % n:][:batch]
        if len(idx) < batch:  # wrap around a small data set
            idx = np.concatenate([idx, order[: batch - len(idx)]])
        out.append((x[idx], y[idx]))
    return out


def measure(plan: Plan, batches: list[tuple[np.ndarray, np.ndarray]], keep_samples: bool = True) -> dict:
    """Forward (training mode) and backward over each batch; per-layer statistics.

    Runs `Plan.forward(training=True, start=i, stop=i+1)` op by op (the plan's own loop split at
    each op, so each op's output is seen before the next op runs), the spec's loss, and
    `Plan.backward`. Batch-norm moving statistics and dropout streams advance as in training:
    diagnose a copy of a model that is still to be used."""
    groups = layer_groups(plan)
    acc = _Accumulator(groups, plan, keep_samples)
    wanted = {i for g in groups for i in (g.ops[-1], g.act_op) if i is not None}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for xb, yb in batches:
            z = xb.astype(plan.dtype, copy=False)
            outs = {}
            for i in range(len(plan.ops)):
                z = plan.forward(z, training=True, start=i, stop=i + 1)
                if i in wanted and plan.ran(i):  # not the body of a block dropped in this batch
                    outs[i] = z
            acc.outputs(outs)
            loss = plan.loss.forward(z, yb) + plan.penalty()
            acc.losses.append(float(loss))
            plan.backward(plan.loss.backward())
            acc.gradients()
    return {"loss": float(np.mean(acc.losses)) if acc.losses else None, "layers": acc.result()}


def train_steps(model, batches: list[tuple[np.ndarray, np.ndarray]], steps: int) -> dict:
    """`steps` updates through `Trainer.train_step` (cycling over `batches`); the update/weight
    ratio of the last one per trainable variable, and the losses."""
    trainer, plan = model.trainer, model.plan
    losses, before = [], None
    per_epoch = max(1, len(batches))
    for k in range(steps):
        xb, yb = batches[k % len(batches)]
        if k == steps - 1:
            before = plan.theta.copy()
        loss, _ = trainer.train_step(xb.astype(plan.dtype, copy=False), yb, epoch=k // per_epoch)
        losses.append(float(loss))
        if not math.isfinite(loss):
            return {"losses": losses, "diverged": k + 1, "updates": {}}
    updates = {}
    for name, (a, b) in plan.offsets.items():
        delta = plan.theta[a:b] - before[a:b]
        updates[name] = _ratio(_norm(delta), _norm(before[a:b]))
    return {"losses": losses, "diverged": None, "updates": updates}


# ---------------------------------------------------------------- the verdict
@dataclass
class Finding:
    kind: str  # vanishing, exploding, shrinking, saturated, dead, updates_large, updates_small, diverged, not_finite
    message: str
    layers: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": self.kind, "message": self.message, "layers": self.layers}


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(r: float) -> str:
    """×10⁻⁴ for 1.2e-4 (×0 and ×inf at the ends)."""
    if r <= 0:
        return "×0"
    if not math.isfinite(r):
        return "×inf"
    return "×10" + str(int(round(math.log10(r)))).translate(_SUPERSCRIPT)


def _span(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]}–{names[-1]}"


def verdict(layers: list[dict], updates: bool = False) -> list[Finding]:
    """Findings in plain words, naming the layers; an empty list means healthy.

    Gradients are compared relative to the weights (‖∂L/∂W‖/‖W‖, the speed at which a layer's
    weights change under plain gradient descent), from the top layer with a trainable kernel down
    to the lowest: a lowest layer below `VANISHING` of the top one's is vanishing, above
    `EXPLODING` exploding; so is an output spread that grows more than `EXPLODING`² from the
    first hidden layer to the last one, and one that falls below `SHRINKING` of it shrinks."""
    out: list[Finding] = []
    bad = [r["name"] for r in layers
           if any(v is not None and not math.isfinite(v) for v in (r["mean"], r["std"], r["grad_norm"]))]
    if bad:
        out.append(Finding("not_finite", f"non-finite activations or gradients in {_span(bad)}", bad))
    graded = [r for r in layers if r["grad_ratio"] is not None and math.isfinite(r["grad_ratio"])]
    if len(graded) >= 2 and graded[-1]["grad_ratio"] > 0:
        top, low = graded[-1], graded[0]
        ref = top["grad_ratio"]
        ratio = low["grad_ratio"] / ref
        if ratio < VANISHING:
            weak = [r["name"] for r in graded[:-1] if r["grad_ratio"] < VANISHING * ref]
            msg = (f"vanishing gradients: the gradient norm (relative to the weights) falls "
                   f"{power_of_ten(ratio)} from {top['name']} to {low['name']}")
            if len(weak) > 1:
                msg += f"; {_span(weak)} learn less than {VANISHING:.0%} as fast as {top['name']}"
            out.append(Finding("vanishing", msg, weak or [low["name"]]))
        elif ratio > EXPLODING:
            strong = [r["name"] for r in graded[:-1] if r["grad_ratio"] > EXPLODING * ref]
            out.append(Finding("exploding", f"exploding gradients: the gradient norm (relative to the weights) "
                                            f"grows {power_of_ten(ratio)} from {top['name']} to {low['name']}",
                               strong or [low["name"]]))
    hidden = [r for r in layers[:-1] if r.get("activation")] or layers[:-1]
    spread = [r for r in hidden if r["std"] is not None and math.isfinite(r["std"]) and r["std"] > 0]
    if len(spread) >= 2:
        grow = spread[-1]["std"] / spread[0]["std"]
        words = f"from {spread[0]['name']} to {spread[-1]['name']}"
        if grow > EXPLODING ** 2 and not any(f.kind == "exploding" for f in out):
            out.append(Finding("exploding", f"exploding activations: the output spread grows {power_of_ten(grow)} "
                                            f"{words}", [spread[-1]["name"]]))
        elif grow < SHRINKING:
            out.append(Finding("shrinking", f"shrinking activations: the output spread falls {power_of_ten(grow)} "
                                            f"{words}; the signal fades with depth", [spread[-1]["name"]]))
    sat = [r for r in layers if r["saturated"] is not None and r["saturated"] >= SATURATED_LAYER]
    if sat:
        names = [r["name"] for r in sat]
        share = sum(r["saturated"] for r in sat) / len(sat)
        acts = sorted({r["activation"] for r in sat})
        bounds = " or ".join(_bound_words(a) for a in acts)
        verb, their = ("is", "its") if len(sat) == 1 else ("are", "their")
        out.append(Finding("saturated", f"{_span(names)} {verb} saturated: {share:.0%} of {their} "
                                        f"{'/'.join(acts)} outputs lie within {SATURATION_TOL:g} of {bounds}", names))
    dead = [r for r in layers if r["dead"] is not None and r["dead"] >= DEAD_LAYER]
    if dead:
        first, rest = dead[0], dead[1:]
        acts = "/".join(sorted({r["activation"] for r in dead}))
        out.append(Finding("dead", f"{first['dead']:.0%} of {first['name']}'s units are dead"
                                   + "".join(f", {r['dead']:.0%} of {r['name']}'s" for r in rest)
                                   + f" (their {acts} output was never positive)", [r["name"] for r in dead]))
    if updates:
        ups = [r for r in layers if r.get("update_ratio") is not None]
        high = [r["name"] for r in ups if r["update_ratio"] > UPDATE_HIGH]
        low = [r["name"] for r in ups if r["update_ratio"] < UPDATE_LOW]
        if high:
            worst = max(r["update_ratio"] for r in ups)
            out.append(Finding("updates_large", f"updates are large: update/weight ratio up to {worst:.1e} in "
                                                f"{_span(high)} (rule of thumb ~{UPDATE_RULE:g}): the learning rate "
                                                "is probably too high", high))
        if low:
            least = min(r["update_ratio"] for r in ups)
            out.append(Finding("updates_small", f"updates are tiny: update/weight ratio down to {least:.1e} in "
                                                f"{_span(low)} (rule of thumb ~{UPDATE_RULE:g}): these layers "
                                                "barely move", low))
    return out


def _bound_words(activation: str) -> str:
    lo, hi = SATURATING[activation]
    return f"{lo:g} or {hi:g}" if lo else f"0 or {hi:g}"


def verdict_text(findings: list[Finding]) -> str:
    return "healthy" if not findings else "; ".join(f.message for f in findings)


# ---------------------------------------------------------------- a whole diagnosis
@dataclass
class Variation:
    """One column of a comparison: a label and the checked program."""

    label: str
    program: Any  # dnnspec.program.Program
    change: str = ""  # what was changed, as typed


def diagnose_model(model, batches: list[tuple[np.ndarray, np.ndarray]], steps: int = 0) -> dict:
    """The diagnosis of `model` at its current weights (and after `steps` training steps of a copy).

    The model itself is not trained: its batch-norm moving statistics and dropout streams move
    (training-mode forward passes), its weights do not. Steps train a copy, compiled from the same
    program with the same weights."""
    from .api import Model

    copy = None
    if steps:
        copy = Model(model.program, apply_reuse=False)
        copy.plan.theta[...] = model.plan.theta
        copy.plan.fixed[...] = model.plan.fixed
    init = measure(model.plan, batches)
    init["verdict"] = [f.to_json() for f in verdict(init["layers"])]
    report = {"init": init}
    if steps:
        trained = train_steps(copy, batches, steps)
        if trained["diverged"] is not None:
            after = {"steps": steps, "losses": trained["losses"], "layers": [],
                     "verdict": [Finding("diverged", f"training diverged at step {trained['diverged']} (the loss "
                                                     "became non-finite): lower the learning rate").to_json()]}
        else:
            after = measure(copy.plan, batches)
            after["steps"], after["losses"] = steps, trained["losses"]
            for row in after["layers"]:
                for name, v in row["variables"].items():
                    v["update_ratio"] = trained["updates"].get(name)
                row["update_ratio"] = row["variables"][row["kernel"]]["update_ratio"] if row["kernel"] else None
            after["verdict"] = [f.to_json() for f in verdict(after["layers"], updates=True)]
        report["after"] = after
    return report


def training_data(model) -> tuple[np.ndarray, np.ndarray]:
    if model.program.data is None:
        raise UserError("diagnose needs data: the spec has no `data` declaration")
    return model.load_data().train


def diagnose_variations(variations: list[Variation], batches: int = 10, steps: int = 0,
                        threads: int | None = 1) -> list[dict]:
    """Each variation compiled, fed the same examples (when its data is the same), diagnosed.

    `threads`: as `dnnspec run --threads` (default 1: a few small batches run faster on one
    thread than on a pool that must wake for each product; None leaves the configuration as it is)."""
    if threads is None:
        return _diagnose_variations(variations, batches, steps)
    from .train import parallel

    before = parallel.current()
    parallel.configure(parallel.threads_config(threads))
    try:
        return _diagnose_variations(variations, batches, steps)
    finally:
        parallel.configure(before)


def _diagnose_variations(variations: list[Variation], batches: int, steps: int) -> list[dict]:
    from .api import Model

    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for v in variations:
        model = Model(v.program)
        key = str(v.program.data)
        if key not in data:
            data[key] = training_data(model)
        x, y = data[key]
        probe = probe_batches(x, y, v.program.train.batch, batches)
        report = diagnose_model(model, probe, steps)
        report["label"], report["change"] = v.label, v.change
        report["batch_size"] = len(probe[0][0])
        report["batches"] = len(probe)
        out.append(report)
    return out


# ---------------------------------------------------------------- variations of a spec
def _top_level(text: str):
    """(index, char) of the characters outside parentheses, brackets and quotes."""
    depth, quote = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quote = not quote
        elif not quote and ch in "([":
            depth += 1
        elif not quote and ch in ")]":
            depth -= 1
        elif depth == 0 and not quote:
            yield i, ch


def split_items(text: str) -> list[str]:
    """"init=normal(stddev=1),glorot_normal" -> the items, split at commas outside () [] and quotes."""
    cuts = [i for i, ch in _top_level(text) if ch == ","]
    bounds = zip([-1, *cuts], [*cuts, len(text)])
    return [item for item in (text[a + 1:b].strip() for a, b in bounds) if item]


def _top_level_eq(item: str) -> int:
    """The index of the first '=' outside parentheses and quotes, or -1."""
    return next((i for i, ch in _top_level(item) if ch == "="), -1)


def compare_items(text: str, default_key: str = "init") -> list[tuple[str, str, str]]:
    """--compare items as (label, key, value text): "KEY=VALUE", or a bare VALUE for the key of the
    item before it (the first: `init`)."""
    out, key = [], default_key
    for item in split_items(text):
        at = _top_level_eq(item)
        if at > 0 and re.fullmatch(r"[A-Za-z_]\w*", item[:at].strip()):
            key, value = item[:at].strip(), item[at + 1:].strip()
        else:
            value = item
        if not value:
            raise UserError(f"--compare: item {item!r} has no value")
        out.append((item, key, value))
    return out


def rewrite_layers(spec, key: str, value) -> tuple[Any, int]:
    """The spec AST with `key=value` set on every layer line whose kind takes `key` (dense,
    maxout, dropconnect for `init`), inside the model and every block; (new spec, lines changed)."""
    from .ops.base import LAYERS
    from .syntax import ast

    count = 0

    def layer(item):
        nonlocal count
        if isinstance(item, ast.Layer) and item.kind in LAYERS:
            entry = LAYERS.get(item.kind)
            names = [p.name for p in entry.params]
            if key in names:
                count += 1
                idx = names.index(key)
                if idx < len(item.args):  # given positionally
                    args = list(item.args)
                    args[idx] = value
                    return replace(item, args=tuple(args))
                kwargs = [k for k in item.kwargs if k.name != key] + [ast.Kwarg(key, value)]
                return replace(item, kwargs=tuple(kwargs))
            return item
        if isinstance(item, (ast.Scope, ast.Repeat, ast.Residual)):
            return replace(item, body=tuple(layer(i) for i in item.body))
        return item

    statements = []
    for st in spec.statements:
        if isinstance(st, (ast.Model, ast.Block)):
            st = replace(st, body=tuple(layer(i) for i in st.body))
        statements.append(st)
    return replace(spec, statements=tuple(statements)), count


def spec_variations(path: str, overrides: Sequence[str] = (), compare: str | None = None,
                    compare_sets: Sequence[str] = (), compare_specs: Sequence[str] = ()) -> list[Variation]:
    """The spec (with --set overrides) as one variation, or one variation per --compare item
    (a layer parameter set on every layer that takes it: a rewrite of the spec text) or per
    --compare-set override (added after the --set ones); then one per --compare-spec file (another
    model on the same footing, e.g. a plain and a residual net), with the same overrides."""
    from .check import check_file

    out = _variations(path, overrides, compare, compare_sets)
    return out + [Variation(Path(p).stem, check_file(p, overrides), f"--compare-spec {p}") for p in compare_specs]


def _variations(path: str, overrides: Sequence[str], compare: str | None, compare_sets: Sequence[str]
                ) -> list[Variation]:
    from . import catalog
    from .check import check_file, check_text, read_spec
    from .syntax.fmt import format_spec
    from .syntax.parser import parse, parse_expr

    if compare and compare_sets:
        raise UserError("give --compare or --compare-set, not both")
    if compare_sets:
        return [Variation(s, check_file(path, [*overrides, s]), f"--set {s}") for s in compare_sets]
    if not compare:
        return [Variation(Path(path).stem, check_file(path, overrides))]
    catalog.load()
    text = read_spec(path)
    tree = parse(text, str(path))
    out = []
    for label, key, value in compare_items(compare):
        src = f"{key}={value}"
        expr = parse_expr(src, f"--compare {label}", len(key) + 1)
        new, count = rewrite_layers(tree, key, expr)
        if not count:
            raise UserError(f"--compare {label}: no layer of {path} takes '{key}' (it applies to every layer line "
                            "whose kind has that parameter: init= and bias_init= of dense, maxout, dropconnect)")
        out.append(Variation(label, check_text(format_spec(new), f"{path} [--compare {label}]", overrides),
                             f"{key}={value} on {count} layer line{'s' * (count != 1)}"))
    return out


# ---------------------------------------------------------------- text and JSON
def _fmt(v, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.0%}"


def table(phase: dict, after: bool = False) -> list[str]:
    """The per-layer table of one phase."""
    rows = [("layer", "ops", "mean", "std", "saturated", "dead", "|grad|", "|grad|/|w|")
            + (("|update|/|w|",) if after else ())]
    for r in phase["layers"]:
        rows.append((r["name"], "+".join(r["ops"]) + (" (frozen)" if r.get("frozen") else ""), _fmt(r["mean"]), _fmt(r["std"]), _pct(r["saturated"]),
                     _pct(r["dead"]), _fmt(r["grad_norm"], ".2e"), _fmt(r["grad_ratio"], ".2e"))
                    + ((_fmt(r.get("update_ratio"), ".2e"),) if after else ()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def report_text(reports: list[dict]) -> str:
    lines = []
    for rep in reports:
        head = f"== {rep['label']}" + (f" ({rep['change']})" if rep.get("change") else "")
        lines.append(head)
        init = rep["init"]
        lines.append(f"at initialization: {rep['batches']} batches of {rep['batch_size']} training examples, "
                     f"training mode; loss {_fmt(init['loss'], '.4g')}")
        lines += ["  " + ln for ln in table(init)]
        lines.append("verdict: " + verdict_text([Finding(**f) for f in init["verdict"]]))
        after = rep.get("after")
        if after is not None:
            lines.append("")
            losses = after.get("losses", [])
            lines.append(f"after {after['steps']} training step{'s' * (after['steps'] != 1)}"
                         + (f": loss {_fmt(losses[0], '.4g')} -> {_fmt(losses[-1], '.4g')}" if losses else ""))
            if after["layers"]:
                lines += ["  " + ln for ln in table(after, after=True)]
            lines.append("verdict: " + verdict_text([Finding(**f) for f in after["verdict"]]))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def report_json(spec: str, reports: list[dict]) -> dict:
    """Every number, without the raw activation samples (a non-finite one as null)."""

    def clean(phase: dict) -> dict:
        return {**phase, "layers": [{k: v for k, v in r.items() if not k.startswith("_")} for r in phase["layers"]],
                "healthy": not phase["verdict"]}

    out = []
    for rep in reports:
        item = {k: v for k, v in rep.items() if k not in ("init", "after")}
        item["init"] = clean(rep["init"])
        if "after" in rep:
            item["after"] = clean(rep["after"])
        out.append(item)
    return _json_safe({"spec": spec, "saturation_tol": SATURATION_TOL, "update_rule": UPDATE_RULE,
                       "variations": out})


def _json_safe(obj):
    """NaN and infinities (a diverging variation) as null: strict JSON has no spelling for them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------- during training
def layer_stats(plan: Plan, rows: int, start: int = 0, previous: np.ndarray | None = None) -> dict[str, dict]:
    """Per-layer statistics of the step that just ran, read from the plan's buffers: each op's
    output buffer (`op._y`, first `rows` rows: the batch) and the gradient views. No forward or
    backward pass, nothing changed. `start` skips a frozen prefix that training does not run
    (frozen-layer caching); `previous` (theta before the step) adds update ratios.

    Statistics of one batch: `dead` is "never positive over this batch"."""
    groups = [g for g in layer_groups(plan) if g.ops[-1] >= start]
    acc = _Accumulator(groups, plan, keep_samples=False)
    outs = {}
    for g in groups:
        for i in (g.ops[-1], g.act_op):
            if i is not None and i >= start and plan.ran(i):  # a dropped block's body: no output this step
                buf = getattr(plan.ops[i], "_y", None)
                if buf is not None:
                    outs[i] = buf[:rows]
    acc.outputs(outs)
    acc.gradients()
    out = {}
    for row in acc.result():
        stats = {k: row[k] for k in ("mean", "std", "saturated", "dead", "grad_norm", "weight_norm", "grad_ratio")}
        if previous is not None and row["kernel"]:
            a, b = plan.offsets[row["kernel"]]
            stats["update_ratio"] = _ratio(_norm(plan.theta[a:b] - previous[a:b]), _norm(previous[a:b]))
        out[row["layer"]] = stats
    return out


class LayerMonitor:
    """The `monitor layers every=N` hook: every N updates, one row of per-layer statistics.

    Call `on_step(trainer)` from the loop's step hook (after each update); it returns None, or the
    row to append to the metrics log (with the run id added by the caller)::

        {"monitor": "layers", "epoch": 3, "step": 1200,
         "layers": {"dnn/hidden1": {"mean": ..., "std": ..., "saturated": ..., "dead": ...,
                                    "grad_norm": ..., "weight_norm": ..., "grad_ratio": ...,
                                    "update_ratio": ...}, ...}}

    The theta snapshot for update ratios is taken one step before a monitored step (one copy of
    the trainable weights every N steps)."""

    def __init__(self, plan: Plan, every: int):
        if every < 1:
            raise ValueError("monitor every must be >= 1")
        self.plan, self.every = plan, int(every)
        self._before: np.ndarray | None = None
        self._at: int | None = None

    def on_step(self, trainer) -> dict | None:
        t = trainer.updater.t
        row = None
        if t % self.every == 0:
            previous = self._before if self._at == t - 1 else None
            start = self.plan.cacheable_prefix() if trainer.cache_frozen else 0
            row = {"monitor": "layers", "epoch": trainer.state.epoch + 1, "step": t,
                   "layers": layer_stats(self.plan, trainer.cfg.batch, start, previous)}
        if (t + 1) % self.every == 0:  # the next step is monitored: keep the weights it starts from
            if self._before is None or self._before.shape != self.plan.theta.shape:
                self._before = np.empty_like(self.plan.theta)
            self._before[...] = self.plan.theta
            self._at = t
        return row


# ---------------------------------------------------------------- TensorBoard
class TensorBoardHook:
    """Epoch metrics and per-layer statistics as TensorBoard scalars (tensorboardX's writer)."""

    def __init__(self, writer):
        self.writer = writer

    def epoch_end(self, logs: dict) -> None:
        epoch = int(logs.get("epoch", 0))
        for key, value in logs.items():
            if key in ("epoch", "run", "best") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            split, _, name = key.partition("_") if key.startswith("val_") else ("train", "", key)
            self.writer.add_scalar(f"{name}/{split}" if name != "lr" else "lr", float(value), epoch)
        self.writer.flush()

    def layer_stats(self, step: int, stats: dict[str, dict]) -> None:
        for layer, values in stats.items():
            for key, value in values.items():
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(f"layers/{key}/{layer}", float(value), int(step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_writer(directory) -> TensorBoardHook:
    """A hook writing TensorBoard event files into `directory` (needs tensorboardX: the
    `tensorboard` extra). `epoch_end(logs)` adds loss/accuracy (train and val) and lr per epoch;
    `layer_stats(step, stats)` adds a `LayerMonitor` row's numbers per layer."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise UserError("TensorBoard logging needs tensorboardX: pip install 'dnnspec[tensorboard]'") from None
    from .fileio import check_writable

    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file; --tensorboard takes a folder")
    check_writable(path / "events")
    path.mkdir(parents=True, exist_ok=True)
    return TensorBoardHook(SummaryWriter(logdir=str(path)))
