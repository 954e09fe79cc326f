"""Lints: warnings about specs that are valid but probably not what the author wants.

Each lint is a function ``(program, diagnostics) -> None`` listed in `LINTS`.
"""

from __future__ import annotations

from ..errors import Diagnostics
from ..optim import momentum_attribute

SATURATING = {"sigmoid", "tanh", "softsign", "hard_sigmoid"}


def deep_saturating(program, diags: Diagnostics) -> None:
    """Many sigmoid/tanh layers without batch norm: the vanishing-gradient setting."""
    acts = [op for op in program.ops if op.component.kind == "activation" and op.kind in SATURATING]
    has_bn = any(op.kind == "batchnorm" for op in program.ops)
    if len(acts) >= 5 and not has_bn:
        diags.warning("W101", f"{len(acts)} {acts[0].kind} layers without batch norm: gradients in the lower "
                      "layers will likely vanish (Glorot & Bengio 2010)", acts[0].span,
                      hint="use relu/elu with He init, or add batchnorm")


def softmax_before_loss(program, diags: Diagnostics) -> None:
    """The loss works on logits; a softmax/sigmoid on the last layer squashes twice."""
    if not program.ops:
        return
    last = program.ops[-1]
    loss = program.train.loss.name
    pairs = {("softmax", "softmax_cross_entropy"), ("sigmoid", "sigmoid_cross_entropy")}
    if (last.kind, loss) in pairs:
        diags.warning("W102", f"the last layer applies {last.kind}, but {loss} expects logits and applies it itself",
                      last.span, hint=f"remove the final {last.kind}")


def dropout_last(program, diags: Diagnostics) -> None:
    if program.ops and program.ops[-1].kind in ("dropout", "alpha_dropout", "gaussian_noise"):
        diags.warning("W103", f"{program.ops[-1].kind} is the last layer: it perturbs the logits themselves",
                      program.ops[-1].span)


def bias_before_batchnorm(program, diags: Diagnostics) -> None:
    """A bias right before batch norm is cancelled by the mean subtraction (beta replaces it)."""
    for a, b in zip(program.ops, program.ops[1:]):
        if a.kind == "dense" and b.kind == "batchnorm" and "bias" in a.variables and "beta" in b.variables:
            diags.warning("W104", f"the bias of '{a.layer}' is cancelled by the batch norm after it",
                          a.span, hint="write use_bias=false on the dense layer")


def lbfgs_full_batch(program, diags: Diagnostics) -> None:
    """L-BFGS needs the same function at every evaluation: no noise, no clipping, no per-scope rates."""
    if program.train.optimizer.name != "lbfgs":
        return
    noisy = [op for op in program.ops if op.build().random]
    if noisy:
        diags.warning("W105", f"lbfgs re-evaluates the loss during a step, but {noisy[0].kind} makes it random",
                      noisy[0].span, hint="lbfgs is a full-batch method for deterministic models")
    t = program.train
    if t.clip_norm is not None or t.clip_value is not None or t.lr_mult:
        diags.warning("W105", "lbfgs ignores clip_norm/clip_value and lr_mult (its line search needs the true "
                      "gradient and one learning rate)", None)


def momentum_without_momentum(program, diags: Diagnostics) -> None:
    """onecycle cycles momentum (torch's default), which some optimizers do not have."""
    t = program.train
    if not getattr(t.schedule.build(), "cycle_momentum", False):
        return
    if momentum_attribute(t.optimizer.build()) is None:
        diags.warning("W106", f"onecycle's cycle_momentum has no effect: {t.optimizer.name} has no momentum to "
                      "cycle (only the learning rate cycles)", None,
                      hint="write cycle_momentum=false, or use momentum, nesterov or adam")


LINTS = (deep_saturating, softmax_before_loss, dropout_last, bias_before_batchnorm, lbfgs_full_batch,
         momentum_without_momentum)
