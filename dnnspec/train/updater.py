"""One optimizer step over the plan's flat trainable buffer: penalties, clipping, the update
rule (per run of variables sharing a learning-rate multiplier), constraints, weight averaging.
Slots are flat buffers too; per-variable views key them by scoped name.

The element-wise parts (the update rule, clipping by value, averaging) run over L2-sized chunks
of the flat buffers, every pass of the rule over one chunk before the next chunk, on the
element-wise pool of `parallel` (the caller alone when it has one thread). Element-wise
arithmetic does not depend on the cut: the result is the same bits as one call over the whole
buffer, with any number of threads. Clipping by norm (a BLAS dot), penalties and constraints
(per-variable reductions) stay whole. Each chunk also notes its largest and smallest weight
after the rule, which is the loop's per-step divergence check (`theta_finite`).

The updater owns the step counter `t` (updates done); the run state (`dnnspec.runstate`) saves
and restores it together with the slots and `state_dict()`'s parts."""

from __future__ import annotations

import math

import numpy as np

from ..optim import momentum_attribute
from ..plan import Plan
from ..program import TrainConfig
from . import parallel
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
        self.chunk = parallel.chunk_size(3 + len(self.state))  # p, g, one spare + slots and scratch
        self._items: list | None = None  # per-chunk views, built on first use
        self._items_threads = 0
        self._lr = 0.0  # the rate of the update in progress, read by _update_chunk
        # the thread configuration a fit chose or was given (parallel.choose): part of the run
        # state, so a resumed run uses the BLAS thread count whose rounding it continues
        self.threads: parallel.ThreadConfig | None = None
        self._clip = 0.0
        # The divergence check's look at theta, taken by the update's chunks while each is in the
        # L2 cache (see theta_finite): possible when the chunks cover every trainable weight and
        # nothing changes theta after them (no constraint, no lr_mult 0, no closure optimizer).
        covered = sum(e - s for s, e, _ in self.segments) == n
        self._watch = covered and not self.constraints and not self.closure_based
        self._bounds: np.ndarray | None = None  # (max, min) of each chunk after its update
        self._bounded = -1  # the update count `_bounds` belongs to

    def _chunk_items(self) -> list[tuple]:
        """(theta, grad, state views, lr multiplier, start, stop, index) per chunk of each segment:
        views into buffers allocated once, so a step builds no arrays. Rebuilt when the pool's size
        changes: chunks of at most `self.chunk` elements, as many per thread."""
        threads = parallel.pool().threads
        if self._items is None or self._items_threads != threads:
            theta, grad = self.plan.theta, self.plan.grad
            spans = [(a, b, mult) for s, e, mult in self.segments
                     for a, b in parallel.chunks(s, e, parallel.balanced(e - s, threads, self.chunk))]
            self._items = [(theta[a:b], grad[a:b], {k: v[a:b] for k, v in self.state.items()}, mult, a, b, i)
                           for i, (a, b, mult) in enumerate(spans)]
            self._bounds = np.zeros((len(spans), 2), np.float64)
            size = parallel.balanced(theta.size, threads, self.chunk)
            self._all = [(theta[a:b], grad[a:b], {}, 1.0, a, b) for a, b in parallel.chunks(0, theta.size, size)]
            self._items_threads = threads
        return self._items

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
            self._chunk_items()
            self._clip = float(self.cfg.clip_value)
            parallel.pool().run(self._clip_chunk, self._all)
        if self.cfg.clip_norm is not None:
            norm = math.sqrt(float(np.dot(plan.grad, plan.grad)))
            if norm > self.cfg.clip_norm:
                self._chunk_items()
                self._clip = self.cfg.clip_norm / norm
                parallel.pool().run(self._scale_chunk, self._all)

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
        self.finish_gradient()
        self._lr = self._begin_update(epoch)
        self.optimizer.prepare(self.t)
        parallel.pool().run(self._update_chunk, self._chunk_items())
        if self._watch:
            self._bounded = self.t
        self._after_update(epoch)

    def _update_chunk(self, item: tuple) -> None:
        p, g, state, mult, _, _, i = item
        # a worker thread has its own NumPy error state: a diverging run overflows quietly there
        # too (the loop reports it as divergence)
        with np.errstate(over="ignore", invalid="ignore"):
            self.optimizer.update(p, g, state, self._lr * mult, self.t)
            if self._watch:  # the chunk is in the L2 cache now: reading it again streams nothing from memory
                # maximum and minimum propagate a NaN, and an Inf is one of them; together they take
                # 10 µs per 64 Ki elements here against 16 µs for a sum, which can also overflow
                self._bounds[i, 0] = np.maximum.reduce(p)
                self._bounds[i, 1] = np.minimum.reduce(p)

    def theta_finite(self) -> bool | None:
        """Whether every weight in theta is finite after the last update, from the largest and
        smallest value of each of the update's chunks (their float64 total is finite exactly when
        each is). None when the update did not take them (see `_watch`): the caller checks theta
        itself."""
        if self._bounded != self.t or self._bounds is None:
            return None
        return math.isfinite(np.add.reduce(self._bounds, axis=None))

    def _scale_chunk(self, item: tuple) -> None:
        item[1].__imul__(self._clip)  # grad *= clip_norm / norm

    def _clip_chunk(self, item: tuple) -> None:
        g = item[1]
        np.clip(g, -self._clip, self._clip, out=g)

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
        self._chunk_items()
        self.averaged += 1
        parallel.pool().run(self._average_chunk, self._all)

    def _average_chunk(self, item: tuple) -> None:
        theta, a, b = item[0], item[4], item[5]
        avg, scratch = self.average[a:b], self._scratch[a:b]
        if self.averaged == 1:
            np.copyto(avg, theta)
        elif self.cfg.average == "ema":  # avg = d·avg + (1-d)·theta
            d = self.cfg.average_decay
            avg *= d
            np.multiply(theta, 1.0 - d, out=scratch)
            avg += scratch
        else:  # Polyak: the running mean of every iterate so far, avg += (theta - avg)/n
            np.subtract(theta, avg, out=scratch)
            scratch *= 1.0 / self.averaged
            avg += scratch

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
        if self.threads is not None:
            scalars["threads"] = {"blas": self.threads.blas, "pool": self.threads.pool}
            if self.threads.block is not None:
                scalars["threads"]["block"] = self.threads.block
        arrays = {"average": self.average} if self.averaged else {}
        if hasattr(self.optimizer, "state_dict"):
            opt_scalars, opt_arrays = self.optimizer.state_dict()
            scalars["optimizer_state"] = opt_scalars
            arrays.update({f"optimizer_{k}": v for k, v in opt_arrays.items()})
        return scalars, arrays

    def load_state_dict(self, scalars: dict, arrays: dict[str, np.ndarray]) -> None:
        self.rate.load_state_dict(scalars.get("schedule", {}))
        self.averaged = int(scalars.get("averaged", 0))
        threads = scalars.get("threads")
        if isinstance(threads, dict):
            block = threads.get("block")
            self.threads = parallel.ThreadConfig(int(threads["blas"]), int(threads["pool"]),
                                                 None if block is None else int(block))
        if self.average is not None and "average" in arrays:
            self.average[...] = arrays["average"]
        if "optimizer_state" in scalars and hasattr(self.optimizer, "load_state_dict"):
            opt_arrays = {k[len("optimizer_"):]: v for k, v in arrays.items() if k.startswith("optimizer_")}
            self.optimizer.load_state_dict(scalars["optimizer_state"], opt_arrays)

