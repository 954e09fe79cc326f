"""One optimizer step over the plan's flat trainable buffer: penalties, clipping, the update
rule, constraints. Slots are flat buffers too; per-variable views key them by scoped name."""

from __future__ import annotations

import math

import numpy as np

from ..check.program import TrainConfig
from ..plan import Plan
from ..schedules import Warmup


class Updater:
    def __init__(self, plan: Plan, cfg: TrainConfig):
        self.plan, self.cfg = plan, cfg
        self.optimizer = cfg.optimizer.build()
        schedule = cfg.schedule.build()
        self.schedule = Warmup(schedule, cfg.warmup, cfg.warmup_start) if cfg.warmup else schedule
        n = plan.theta.size
        self.state = {k: np.zeros(n, plan.dtype) for k in (*self.optimizer.slots, *self.optimizer.scratch)}
        names = plan.trainable_names
        self.regularizers = [(c.build(), [n for n in names if p.match(n)]) for c, p in cfg.regularize]
        self.constraints = [(c.build(), [n for n in names if p.match(n)]) for c, p in cfg.constrain]
        self.t = 0  # updates done

    @property
    def lr0(self) -> float:
        return float(self.optimizer.lr)

    def lr(self, epoch: int) -> float:
        """The learning rate of the next update."""
        k = self.t if self.cfg.schedule_per == "step" else epoch
        return float(self.schedule(self.lr0, k))

    def penalty(self) -> float:
        """The regularization term of the loss (reported with it, as Keras does)."""
        v = self.plan.variables
        return float(sum(reg.penalty(v[n]) for reg, names in self.regularizers for n in names))

    def step(self, epoch: int) -> None:
        plan = self.plan
        for reg, names in self.regularizers:
            for n in names:
                reg.grad(plan.variables[n], plan.grads[n])
        if self.cfg.clip_value is not None:
            np.clip(plan.grad, -self.cfg.clip_value, self.cfg.clip_value, out=plan.grad)
        if self.cfg.clip_norm is not None:
            norm = math.sqrt(float(np.dot(plan.grad, plan.grad)))
            if norm > self.cfg.clip_norm:
                plan.grad *= self.cfg.clip_norm / norm
        lr = self.lr(epoch)
        self.t += 1
        if plan.theta.size:
            self.optimizer.update(plan.theta, plan.grad, self.state, lr, self.t)
        for con, names in self.constraints:
            for n in names:
                con.apply(plan.variables[n])

    def slot_views(self) -> dict[str, dict[str, np.ndarray]]:
        """slot -> variable name -> view; what a checkpoint stores."""
        out = {}
        for slot in self.optimizer.slots:
            buf = self.state[slot]
            out[slot] = {n: buf[a:b].reshape(self.plan.infos[n].shape) for n, (a, b) in self.plan.offsets.items()}
        return out
