"""Lints: warnings about specs that are valid but probably not what the author wants.

Each lint is a function ``(program, diagnostics) -> None`` listed in `LINTS`; each warning has a
stable code (`CODES`) that a user may silence: ``--allow W108`` on the command line (see
`without`), or an ``allow "W108"`` line in the spec once the checker records one as
``program.allow`` (a lint then does not emit it at all, see `_warn`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from functools import lru_cache

from ..errors import Diagnostics, Span, UserError
from ..init import TRUNCATED_STD, Constant, Normal, Ones, TruncatedNormal, Uniform, VarianceScaling, Zeros
from ..optim import momentum_attribute

SATURATING = {"sigmoid", "tanh", "softsign", "hard_sigmoid"}

CODES: dict[str, str] = {
    "W101": "a deep sigmoid/tanh stack without batch norm (vanishing gradients)",
    "W102": "softmax/sigmoid on the last layer before a loss that takes logits",
    "W103": "noise (dropout) on the last layer",
    "W104": "a bias right before batch norm",
    "W105": "lbfgs with a random model, clipping or lr_mult",
    "W106": "onecycle's cycle_momentum with an optimizer that has no momentum",
    "W107": "a zero or constant kernel init in a hidden layer (symmetry never breaks)",
    "W108": "a large fixed-scale init (normal σ=1) on a deep sigmoid/tanh stack (saturation)",
    "W109": "He init under sigmoid/tanh, or Glorot init under a deep ReLU stack",
    "W110": "a learning rate far outside the usual range of its optimizer",
    "W111": "AdaGrad on a long run (its rate keeps shrinking)",
    "W112": "freeze/trainable leaves nothing to train",
    "W113": "a schedule that ends before training does",
    "W114": "augmentation declared on data that is not images (no image shape)",
}

DEEP = 5  # hidden layers that make a stack "deep" (W101, W109)
DEEP_SATURATING = 3  # sigmoid/tanh layers under a large init that make W108 fire
SATURATING_GAIN = 4.0  # std·√fan_in at or above which a fixed-scale init saturates sigmoid/tanh (W108)
ADAGRAD_STEPS = 10_000  # updates after which AdaGrad's rate has shrunk ~100× (W111)
ADAGRAD_EPOCHS = 100  # ... when the data size is not known before loading
FAR = 10.0  # "far outside" the usual range: this factor beyond either end (W110)
# usual learning rates per optimizer (low, high): Hands-On ML ch. 11, the papers' and libraries' defaults
LR_RANGES = {
    "sgd": (1e-3, 0.5), "momentum": (1e-3, 0.1), "nesterov": (1e-3, 0.1), "adagrad": (1e-3, 0.5),
    "rmsprop": (1e-4, 1e-2), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2), "nadam": (1e-4, 1e-2),
    "adamax": (1e-4, 1e-2), "lbfgs": (0.1, 1.0),
}


# ---------------------------------------------------------------- allowing codes
def allowed(program) -> frozenset[str]:
    """The codes a spec allows (``program.allow``, where the checker records `allow` lines)."""
    return frozenset(getattr(program, "allow", ()) or ())


def _warn(program, diags: Diagnostics, code: str, message: str, span: Span | None, hint: str | None = None) -> None:
    if code not in allowed(program):
        diags.warning(code, message, span, hint=hint)


def check_allow(codes) -> list[str]:
    """Validate --allow IDs (case-insensitive); an unknown one is a UserError naming the known."""
    out = []
    for code in codes:
        c = str(code).strip().upper()
        if c not in CODES:
            from ..registry import suggest

            best = suggest(c, CODES)
            raise UserError(f"--allow {code}: no lint has that code" + (f" — did you mean {best}?" if best else "")
                            + "; codes: " + ", ".join(CODES))
        out.append(c)
    return out


def without(warnings, allow) -> list:
    """The warnings whose codes are not in `allow` (validated by `check_allow`)."""
    allow = set(check_allow(allow))
    return [w for w in warnings if w.code not in allow]


# ---------------------------------------------------------------- W101-W106
def deep_saturating(program, diags: Diagnostics) -> None:
    """Many sigmoid/tanh layers without batch norm: the vanishing-gradient setting."""
    acts = [op for op in program.ops if op.component.kind == "activation" and op.kind in SATURATING]
    has_bn = any(op.kind == "batchnorm" for op in program.ops)
    if len(acts) >= DEEP and not has_bn:
        _warn(program, diags, "W101", f"{len(acts)} {acts[0].kind} layers without batch norm: gradients in the "
              "lower layers will likely vanish (Glorot & Bengio 2010)", acts[0].span,
              hint="use relu/elu with He init, or add batchnorm")


def softmax_before_loss(program, diags: Diagnostics) -> None:
    """The loss works on logits; a softmax/sigmoid on the last layer squashes twice."""
    if not program.ops:
        return
    last = program.ops[-1]
    loss = program.train.loss.name
    pairs = {("softmax", "softmax_cross_entropy"), ("sigmoid", "sigmoid_cross_entropy")}
    if (last.kind, loss) in pairs:
        _warn(program, diags, "W102", f"the last layer applies {last.kind}, but {loss} expects logits and applies "
              "it itself", last.span, hint=f"remove the final {last.kind}")


def dropout_last(program, diags: Diagnostics) -> None:
    if program.ops and program.ops[-1].kind in ("dropout", "alpha_dropout", "gaussian_noise"):
        _warn(program, diags, "W103", f"{program.ops[-1].kind} is the last layer: it perturbs the logits themselves",
              program.ops[-1].span)


def bias_before_batchnorm(program, diags: Diagnostics) -> None:
    """A bias right before batch norm is cancelled by the mean subtraction (beta replaces it)."""
    for a, b in zip(program.ops, program.ops[1:]):
        if a.kind == "dense" and b.kind == "batchnorm" and "bias" in a.variables and "beta" in b.variables:
            _warn(program, diags, "W104", f"the bias of '{a.layer}' is cancelled by the batch norm after it",
                  a.span, hint="write use_bias=false on the dense layer")


def lbfgs_full_batch(program, diags: Diagnostics) -> None:
    """L-BFGS needs the same function at every evaluation: no noise, no clipping, no per-scope rates."""
    if program.train.optimizer.name != "lbfgs":
        return
    noisy = [op for op in program.ops if op.build().random]
    if noisy:
        _warn(program, diags, "W105", f"lbfgs re-evaluates the loss during a step, but {noisy[0].kind} makes it "
              "random", noisy[0].span, hint="lbfgs is a full-batch method for deterministic models")
    t = program.train
    if t.clip_norm is not None or t.clip_value is not None or t.lr_mult:
        _warn(program, diags, "W105", "lbfgs ignores clip_norm/clip_value and lr_mult (its line search needs the "
              "true gradient and one learning rate)", None)


def momentum_without_momentum(program, diags: Diagnostics) -> None:
    """onecycle cycles momentum (torch's default), which some optimizers do not have."""
    t = program.train
    if not getattr(t.schedule.build(), "cycle_momentum", False):
        return
    if momentum_attribute(t.optimizer.build()) is None:
        _warn(program, diags, "W106", f"onecycle's cycle_momentum has no effect: {t.optimizer.name} has no momentum "
              "to cycle (only the learning rate cycles)", None,
              hint="write cycle_momentum=false, or use momentum, nesterov or adam")


# ---------------------------------------------------------------- initialization (W107-W109)
@dataclass
class _Kernel:
    """A layer with a kernel, what its init is, and the nonlinearity that follows it."""

    op: object  # OpSpec
    init: object  # the initializer instance
    shape: tuple
    activation: str | None  # the first activation after it, before the next kernel
    batchnorm: bool  # a batch norm between the kernel and that activation (the init's scale is moot)
    hidden: bool  # another kernel follows (not the output layer)
    fixed: bool  # frozen, or filled by a `reuse` line: its init does not matter

    @property
    def init_text(self) -> str:
        """The init as the spec (or init=auto) resolved it: normal(stddev=1)."""
        c = self.op.component.kwargs.get("init")
        return component_text(c) if c is not None else repr(self.init)


def _kernels(program) -> list[_Kernel]:
    """One pass over the ops (a spec may have 100,000 of them): no op is built."""
    from ..ops.base import LAYERS

    ops = program.ops
    kernel_ops = [i for i, op in enumerate(ops) if "kernel" in op.variables]
    own_nonlinearity: dict[str, bool] = {}
    out = []
    for pos, i in enumerate(kernel_ops):
        op = ops[i]
        var = op.variables["kernel"]
        stop = kernel_ops[pos + 1] if pos + 1 < len(kernel_ops) else len(ops)
        activation, bn = None, False
        if op.kind not in own_nonlinearity:
            cls = LAYERS.get(op.kind).cls if op.kind in LAYERS else None
            own_nonlinearity[op.kind] = not getattr(cls, "takes_activation", True)  # maxout
        if not own_nonlinearity[op.kind]:
            for j in range(i + 1, stop):
                if ops[j].kind == "batchnorm":
                    bn = True
                elif ops[j].component.kind == "activation":
                    activation = ops[j].kind
                    break
        out.append(_Kernel(op, var.init, tuple(var.shape), activation, bn, pos + 1 < len(kernel_ops),
                           _fixed(program, f"{op.name}/kernel")))
    return out


def component_text(c, defaults: bool = False) -> str:
    """A component as a spec would write it, defaults left out (kept with `defaults`):
    normal(stddev=1)."""
    from ..registry import REGISTRIES, Component

    try:
        entry = REGISTRIES[c.kind].get(c.name)
    except Exception:  # noqa: BLE001 - a name outside the catalogue: show it whole
        return str(c)
    default_of = {p.name: p.default for p in entry.params}
    args = []
    for k, v in c.args:
        if k in default_of and default_of[k] == v and not isinstance(v, Component) and not defaults:
            continue
        args.append(f"{k}={_value_text(v, defaults)}")
    return f"{c.name}({', '.join(args)})" if args else c.name


def _value_text(v, defaults: bool) -> str:
    from ..registry import Component

    if isinstance(v, Component):
        return component_text(v, defaults)
    if isinstance(v, tuple):  # a list: augment=[shift(2)], image=[28, 28]
        return "[" + ", ".join(_value_text(x, defaults) for x in v) + "]"
    return (f"{v:g}" if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else
            f'"{v}"' if isinstance(v, str) else str(v))


def _fixed(program, name: str) -> bool:
    if not program.is_trainable(name):
        return True
    for r in program.reuse:
        source = r.rename_from + name[len(r.rename_to):] if r.rename_to and name.startswith(r.rename_to) else name
        try:
            if re.match(r.scope or "", source):
                return True
        except re.error:
            return True
    return False


def _fans(shape: tuple) -> tuple[int, int]:
    if len(shape) < 2:
        return (shape[0], shape[0]) if shape else (1, 1)
    return int(math.prod(shape[:-1])), int(shape[-1])


def _constant(init) -> float | None:
    """The value of a constant initializer (zeros, ones, constant), else None."""
    if isinstance(init, Zeros):
        return 0.0
    if isinstance(init, Ones):
        return 1.0
    if isinstance(init, Constant):
        return init.value
    return None


def _fixed_scale_std(init) -> float | None:
    """The std of an initializer whose scale does not depend on the layer's fans."""
    if isinstance(init, Normal):
        return init.stddev
    if isinstance(init, TruncatedNormal):
        return init.stddev * TRUNCATED_STD
    if isinstance(init, Uniform):
        return (init.maxval - init.minval) / math.sqrt(12.0)
    return None


def _family(init) -> str | None:
    """'he' or 'glorot' for the variance-scaling reductions (and their explicit spellings)."""
    if not isinstance(init, VarianceScaling):
        return None
    if init.mode == "fan_in" and math.isclose(init.scale, 2.0):
        return "he"
    if init.mode == "fan_avg" and math.isclose(init.scale, 1.0):
        return "glorot"
    return None


@lru_cache(maxsize=None)
def _relu_family(kind: str | None) -> bool:
    if kind is None:
        return False
    from ..ops.base import ACTIVATIONS

    return kind in ACTIVATIONS and getattr(ACTIVATIONS.get(kind).cls, "init_family", "") == "he"


def _layers_words(ks: list[_Kernel]) -> str:
    return f"'{ks[0].op.layer}'" if len(ks) == 1 else f"{len(ks)} layers (first: '{ks[0].op.layer}')"


def initialization(program, diags: Diagnostics) -> None:
    """W107-W109 over one list of the model's kernels."""
    ks = _kernels(program)
    constant_hidden_kernel(program, diags, ks)
    saturating_large_init(program, diags, ks)
    mismatched_init(program, diags, ks)


def constant_hidden_kernel(program, diags: Diagnostics, ks: list[_Kernel] | None = None) -> None:
    """W107: a hidden layer whose kernel starts constant: its units stay identical."""
    for k in _kernels(program) if ks is None else ks:
        value = _constant(k.init) if k.hidden and not k.fixed else None
        if value is not None:
            _warn(program, diags, "W107", f"the kernel of '{k.op.layer}' starts constant ({k.init_text}): all its "
                  "units compute the same function and get the same gradient, so they stay identical (the "
                  "symmetry is never broken)", k.op.span,
                  hint="use a random init (init=auto picks Glorot or He for the activation)")


def saturating_large_init(program, diags: Diagnostics, ks: list[_Kernel] | None = None) -> None:
    """W108: σ=1-like fixed-scale init on a deep sigmoid/tanh stack: saturated units."""
    sat = [k for k in (_kernels(program) if ks is None else ks) if k.hidden and k.activation in SATURATING and not k.batchnorm]
    if len(sat) < DEEP_SATURATING:
        return
    big = []
    for k in sat:
        std = _fixed_scale_std(k.init)
        if std is not None and not k.fixed and std * math.sqrt(_fans(k.shape)[0]) >= SATURATING_GAIN:
            big.append((k, std * math.sqrt(_fans(k.shape)[0])))
    if big:
        k, gain = big[0]
        _warn(program, diags, "W108", f"{k.init_text} on {len(big)} of {len(sat)} {k.activation} layers (first: "
              f"'{k.op.layer}', fan-in {_fans(k.shape)[0]}): its std makes the pre-activations ~{gain:.0f}× wider "
              f"than the inputs (std·√fan_in), far into {k.activation}'s flat tails: the units saturate and the "
              "gradients vanish", k.op.span, hint="use init=glorot_uniform (what init=auto picks for sigmoid/tanh), "
              "or batch norm before the activation")


def mismatched_init(program, diags: Diagnostics, ks: list[_Kernel] | None = None) -> None:
    """W109: He init under sigmoid/tanh; Glorot under a deep ReLU stack."""
    ks = [k for k in (_kernels(program) if ks is None else ks) if k.hidden and not k.batchnorm and not k.fixed]
    he_sat = [k for k in ks if k.activation in SATURATING and _family(k.init) == "he"]
    if he_sat:
        k = he_sat[0]
        _warn(program, diags, "W109", f"{k.init_text} (He) under {k.activation} in {_layers_words(he_sat)}: He's "
              f"variance 2/fan_in makes up for ReLU zeroing half its inputs; {k.activation} does not, so each "
              "layer widens its pre-activations toward saturation", k.op.span,
              hint="use glorot_uniform or glorot_normal for sigmoid/tanh (init=auto picks Glorot)")
    relu = [k for k in ks if _relu_family(k.activation)]
    glorot = [k for k in relu if _family(k.init) == "glorot"]
    if len(relu) >= DEEP and len(glorot) * 2 >= len(relu):
        k = glorot[0]
        _warn(program, diags, "W109", f"{k.init_text} (Glorot) under {k.activation} in {_layers_words(glorot)} of a "
              f"{len(relu)}-layer ReLU stack: Glorot's variance ignores that ReLU zeroes half its inputs, so the "
              "signal shrinks at every layer", k.op.span,
              hint="use he_normal or he_uniform for the ReLU family (init=auto picks He)")


# ---------------------------------------------------------------- training (W110-W113)
def _setting_span(program, key: str) -> Span | None:
    """Where a train setting is written (the span of its key, in the file or in a --set override),
    when the checker records them as ``program.setting_spans`` (key -> span); else None."""
    spans = getattr(program, "setting_spans", None) or {}
    return spans.get(key)


def train_size(program) -> int | None:
    """Training examples per epoch, where the spec alone tells (generated data), else None."""
    data = program.data
    if data is None:
        return None
    name = data.name
    val_split = True
    if name == "xor":
        n, val_split = 4, False
    elif name == "spirals":
        args = data.build()
        n = args.samples - round(args.samples * args.validation) - round(args.samples * args.test)
        val_split = round(args.samples * args.validation) > 0
    else:
        return None
    hold = program.train.validation
    if not val_split and hold > 0:
        k = int(round(hold * n)) if hold < 1 else int(hold)
        if 0 < k < n:
            n -= k
    return n


def steps_per_epoch(program) -> int | None:
    n = train_size(program)
    if n is None or n <= 0:
        return None
    return -(-n // min(program.train.batch, n))


def learning_rate_range(program, diags: Diagnostics) -> None:
    """W110: a base rate ten times beyond the usual range of the optimizer."""
    t = program.train
    opt = t.optimizer.name
    if opt not in LR_RANGES:
        return
    schedule = t.schedule.build()
    if t.schedule.name == "onecycle":
        lr, what, key = schedule.max_lr, "onecycle's max_lr", "schedule"
    else:
        lr, what, key = t.optimizer.build().lr, "learning rate", "optimizer"
    low, high = LR_RANGES[opt]
    if lr > high * FAR or lr < low / FAR:
        side = "above" if lr > high * FAR else "below"
        _warn(program, diags, "W110", f"{what} {lr:g} is far {side} the usual range of {opt} ({low:g} to {high:g})"
              + (": training will likely diverge" if side == "above" else ": training will barely move"),
              _setting_span(program, key), hint=f"try {opt}(lr={math.sqrt(low * high):.2g}) and tune from there")


def adagrad_long(program, diags: Diagnostics) -> None:
    """W111: AdaGrad's accumulated squares only grow, so its rate vanishes on a long run."""
    t = program.train
    if t.optimizer.name != "adagrad":
        return
    spe = steps_per_epoch(program)
    if spe is not None:
        steps = t.epochs * spe
        if steps < ADAGRAD_STEPS:
            return
        run = f"{steps:,} updates"
        shrink = f"by the end the rate is ~{math.sqrt(steps):.0f}× smaller than at the start"
    else:
        if t.epochs < ADAGRAD_EPOCHS:
            return
        run = f"{t.epochs} epochs"
        shrink = "the rate shrinks like 1/√t"
    _warn(program, diags, "W111", f"adagrad over {run}: it divides by the root of all past squared gradients, "
          f"which only grows; {shrink} and training stalls before it converges (Hands-On ML ch. 11)",
          _setting_span(program, "optimizer"), hint="use rmsprop or adam: they average recent squared gradients")


def nothing_trainable(program, diags: Diagnostics) -> None:
    """W112: freeze/trainable patterns that leave no variable to train."""
    if not (program.freeze or program.trainable):
        return
    names = program.variable_names()
    declared = [n for op in program.ops for n, v in zip(op.variable_names(), op.variables.values()) if v.trainable]
    if declared and not any(program.is_trainable(n) for n in declared):
        pattern = program.freeze[0][0] if program.freeze else program.trainable[0]
        what = "freeze" if program.freeze else "trainable"
        _warn(program, diags, "W112", f"nothing is left to train: {what} {pattern.text!r} (with the other freeze/"
              f"trainable lines) covers all {len(declared)} trainable variables of {len(names)}", pattern.span,
              hint="patterns match from the start of a name: narrow it, e.g. 'dnn/hidden[12]/'")


ENDING = {"cosine": "eta_min", "polynomial": "end_lr", "onecycle": None}


def schedule_ends_early(program, diags: Diagnostics) -> None:
    """W113: a schedule with total_steps that runs out before the last epoch."""
    t = program.train
    if t.schedule.name not in ENDING:
        return
    schedule = t.schedule.build()
    total = t.warmup + schedule.total_steps
    if t.schedule_per == "step":
        spe = steps_per_epoch(program)
        if spe is None:
            return
        run, unit = t.epochs * spe, "updates"
    else:
        run, unit = t.epochs, "epochs"
    if total >= run:
        return
    if t.schedule.name == "onecycle":
        end = schedule.max_lr / schedule.div_factor / schedule.final_div_factor
        after = f"the rate then stays at {end:.2g}"
    elif t.schedule.name == "cosine" and not schedule.clamp:
        after = "the rate then climbs back up the cosine (clamp=false)"
    else:
        end = getattr(schedule, ENDING[t.schedule.name])
        after = f"the rate then stays at {end:g}" + (" (no learning at all)" if end == 0 else "")
    _warn(program, diags, "W113", f"{t.schedule.name} ends after {total:,} {unit}"
          + (f" (warmup {t.warmup} + total_steps {schedule.total_steps})" if t.warmup else "")
          + f", but training runs {run:,}: {after} for the last {run - total:,}", _setting_span(program, "schedule"),
          hint=f"set total_steps={run - t.warmup} (epochs{' × updates per epoch' if unit == 'updates' else ''}"
               + (" - warmup" if t.warmup else "") + ")")


def augment_without_image(program, diags: Diagnostics) -> None:
    """W114: `augment` on data with no image shape: the features are not known to be pixels (the
    checker already refuses geometric augmentations there), so only noise can apply, and noise on
    tabular features is a modelling choice better made in the model (a gaussian_noise layer)."""
    aug = program.augment
    if aug is None or aug.image:
        return
    names = ", ".join(s.name for s in aug.steps)
    _warn(program, diags, "W114", f"augment=[{names}] on data that declares no image shape: its features are "
          "treated as values, not pixels", aug.span,
          hint="if the examples are images, add image=[height, width]; for noise on other features, a "
               "gaussian_noise layer after the input does the same in training")


LINTS = (deep_saturating, softmax_before_loss, dropout_last, bias_before_batchnorm, lbfgs_full_batch,
         momentum_without_momentum, initialization, learning_rate_range, adagrad_long, nothing_trainable, schedule_ends_early,
         augment_without_image)
