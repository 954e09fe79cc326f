"""One optimizer step over the plan's flat trainable buffer: penalties, clipping, the update
rule (per run of variables sharing a learning-rate multiplier), constraints, weight averaging.
Slots are flat buffers too; per-variable views key them by scoped name.

The updater owns the step counter `t` (updates done); the run state (`dnnspec.runstate`) saves
and restores it together with the slots and `state_dict()`'s parts."""

from __future__ import annotations

import math

import numpy as np

from ..optim import momentum_attribute
from ..plan import Plan
from ..program import TrainConfig
from .rate import LearningRate


class Updater:
    def __init__(self, plan: Plan, cfg: TrainConfig):
        self.plan, self.cfg = plan, cfg
        self.optimizer = cfg.optimizer.build()
        self.rate = LearningRate(cfg, self.optimizer.lr)
        self._momentum_attr = momentum_attribute(self.optimizer)
        n = plan.theta.size
        self.state = {k: np.zeros(n, plan.dtype) for k in (*self.optimizer.slots, *self.optimizer.scratch)}
        names = plan.trainable_names
        self.regularizers = [(c.build(), [n for n in names if p.match(n)]) for c, p in cfg.regularize]
        self.constraints = [(c.build(), [n for n in names if p.match(n)]) for c, p in cfg.constrain]
        self.segments = self._segments()
        self.average = np.zeros(n, plan.dtype) if cfg.average else None
        self.averaged = 0  # updates folded into the average
        self._scratch = np.empty(n, plan.dtype) if cfg.average else None
        self.closure_based = getattr(self.optimizer, "closure_based", False)
        self.t = 0  # updates done

    def _segments(self) -> list[tuple[int, int, float]]:
        """(start, stop, lr multiplier) runs over theta; one run when no lr_mult is set."""
        runs: list[list] = []
        for name in self.plan.trainable_names:
            mult = 1.0
            for value, pattern in self.cfg.lr_mult:
                if pattern.match(name):
                    mult = float(value)  # the last matching line wins
            a, b = self.plan.offsets[name]
            if runs and runs[-1][2] == mult and runs[-1][1] == a:
                runs[-1][1] = b
            else:
                runs.append([a, b, mult])
        return [tuple(r) for r in runs if r[2] != 0.0]  # lr_mult 0: never updated

    def penalty(self) -> float:
        """The regularization term of the loss (reported with it, as Keras does)."""
        v = self.plan.variables
        return float(sum(reg.penalty(v[n]) for reg, names in self.regularizers for n in names))

    def add_penalty_gradients(self) -> None:
        for reg, names in self.regularizers:
            for n in names:
                reg.grad(self.plan.variables[n], self.plan.grads[n])

    def finish_gradient(self) -> None:
        """Weight penalties and clipping, applied to the raw gradient in place."""
        plan = self.plan
        self.add_penalty_gradients()
        if self.cfg.clip_value is not None:
            np.clip(plan.grad, -self.cfg.clip_value, self.cfg.clip_value, out=plan.grad)
        if self.cfg.clip_norm is not None:
            norm = math.sqrt(float(np.dot(plan.grad, plan.grad)))
            if norm > self.cfg.clip_norm:
                plan.grad *= self.cfg.clip_norm / norm

    def _begin_update(self, epoch: int) -> float:
        """The rate (and any scheduled momentum) of the next update; counts it."""
        if self._momentum_attr is not None:  # onecycle's cycle_momentum: SGD momentum or Adam's beta1
            momentum = self.rate.momentum(self.t, epoch)
            if momentum is not None:
                setattr(self.optimizer, self._momentum_attr, momentum)
        lr = self.rate.take(self.t, epoch)
        self.t += 1
        return lr

    def step(self, epoch: int) -> None:
        """One update from the gradient in plan.grad."""
        plan = self.plan
        self.finish_gradient()
        lr = self._begin_update(epoch)
        for a, b, mult in self.segments:
            state = {k: v[a:b] for k, v in self.state.items()} if (a, b) != (0, plan.theta.size) else self.state
            self.optimizer.update(plan.theta[a:b], plan.grad[a:b], state, lr * mult, self.t)
        self._after_update(epoch)

    def step_with_closure(self, epoch: int, closure) -> float:
        """One update of an optimizer that re-evaluates the loss (L-BFGS); returns the first loss."""
        lr = self._begin_update(epoch)
        loss = self.optimizer.step(self.plan.theta, self.plan.grad, closure, lr)
        self._after_update(epoch)
        return loss

    def _after_update(self, epoch: int) -> None:
        for con, names in self.constraints:
            for n in names:
                con.apply(self.plan.variables[n])
        if self.average is not None and epoch >= self.cfg.average_start:
            self._fold_average()

    def _fold_average(self) -> None:
        theta, avg = self.plan.theta, self.average
        self.averaged += 1
        if self.averaged == 1:
            np.copyto(avg, theta)
        elif self.cfg.average == "ema":  # avg = d·avg + (1-d)·theta
            d = self.cfg.average_decay
            avg *= d
            np.multiply(theta, 1.0 - d, out=self._scratch)
            avg += self._scratch
        else:  # Polyak: the running mean of every iterate so far, avg += (theta - avg)/n
            np.subtract(theta, avg, out=self._scratch)
            self._scratch *= 1.0 / self.averaged
            avg += self._scratch

    def slot_views(self) -> dict[str, dict[str, np.ndarray]]:
        """slot -> variable name -> view; what a checkpoint stores."""
        out = {}
        for slot in self.optimizer.slots:
            buf = self.state[slot]
            out[slot] = {n: buf[a:b].reshape(self.plan.infos[n].shape) for n, (a, b) in self.plan.offsets.items()}
        return out

    # ------------------------------------------------------------ the updater's part of the run state
    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able scalars, arrays) besides `t` and the slots: averaging, the schedule's
        state, and an optimizer's internal state (L-BFGS history)."""
        scalars = {"averaged": self.averaged, "schedule": self.rate.state_dict()}
        arrays = {"average": self.average} if self.averaged else {}
        if hasattr(self.optimizer, "state_dict"):
            opt_scalars, opt_arrays = self.optimizer.state_dict()
            scalars["optimizer_state"] = opt_scalars
            arrays.update({f"optimizer_{k}": v for k, v in opt_arrays.items()})
        return scalars, arrays

    def load_state_dict(self, scalars: dict, arrays: dict[str, np.ndarray]) -> None:
        self.rate.load_state_dict(scalars.get("schedule", {}))
        self.averaged = int(scalars.get("averaged", 0))
        if self.average is not None and "average" in arrays:
            self.average[...] = arrays["average"]
        if "optimizer_state" in scalars and hasattr(self.optimizer, "load_state_dict"):
            opt_arrays = {k[len("optimizer_"):]: v for k, v in arrays.items() if k.startswith("optimizer_")}
            self.optimizer.load_state_dict(scalars["optimizer_state"], opt_arrays)

