"""The training loop: seeded shuffling, minibatches (augmented when the data says so), metrics,
early stopping, frozen-layer caching, and a complete, restorable state (exact resume, even
mid-epoch). The loop knows nothing of files or terminals: checkpointing and progress reporting
are hooks."""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..augment import Augmenter
from ..errors import UserError
from ..plan import Plan
from ..pool import rows
from ..rng import get_state, set_state, stream
from . import parallel
from .updater import Updater

XY = tuple[np.ndarray, np.ndarray]
EVAL_BATCH = 2048


@dataclass
class Position:
    """Where a run stands inside an epoch: enough to redo its permutation and continue."""

    shuffle_state: dict  # the shuffle stream before this epoch's permutation was drawn
    batch: int  # batches done in this epoch
    loss_sum: float = 0.0
    correct: float = 0.0
    has_acc: bool = True
    seconds: float = 0.0


@dataclass
class TrainState:
    """Everything that changes during training besides weights and slots (saved for resume)."""

    epoch: int = 0  # completed epochs
    history: list[dict] = field(default_factory=list)
    best: float | None = None  # best value of the checkpoint metric
    best_epoch: int = 0
    es_best: float | None = None  # early stopping's own best
    es_wait: int = 0
    stopped_early: bool = False
    position: Position | None = None  # set while inside an epoch


class Diverged(UserError):
    """Training produced a non-finite loss, weight, statistic or optimizer slot (exit code 1)."""


DIVERGED_HINT = "lower the learning rate, or clip gradients with clip_norm"


class Reporter(Protocol):
    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def batch_end(self, batch: int, loss: float) -> None: ...
    def epoch_end(self, logs: dict) -> None: ...


class Silent:
    def epoch_start(self, epoch, epochs, batches):
        pass

    def batch_end(self, batch, loss):
        pass

    def epoch_end(self, logs):
        pass


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return not math.isnan(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


class Trainer:
    def __init__(self, plan: Plan, reporter: Reporter | None = None):
        self.plan = plan
        self.cfg = plan.program.train
        self.updater = Updater(plan, self.cfg)
        self.state = TrainState()
        self.reporter = reporter or Silent()
        self.on_epoch_end: Callable[[Trainer, dict], None] | None = None
        self.on_step: Callable[[Trainer], None] | None = None
        self.shuffle_rng = stream(self.cfg.seed, "shuffle")
        aug = plan.program.augment  # training batches only: evaluation never sees it
        self.augmenter = (Augmenter.of(aug, plan.program.input_width, stream(self.cfg.seed, "augment"))
                          if aug is not None else None)
        self.best_weights: tuple[np.ndarray, np.ndarray] | None = None
        self.cache_frozen = self.cfg.cache_frozen
        self.cache_report: str | None = None
        self.thread_report: str | None = None  # the thread configuration of the last fit (parallel.choose)
        # the epoch of the last update whose optimizer slots are not checked yet (see check_finite)
        self._unchecked_epoch: int | None = None
        self.sums_finite = True  # set by train_step: the flat buffers' sums are finite
        self._slot_buffers: list[np.ndarray] | None = None

    # ------------------------------------------------------------ training
    def fit(self, train: XY, val: XY | None = None, epochs: int | None = None, batch: int | None = None) -> list[dict]:
        """Train `epochs` more epochs, or (None) until the spec's epoch count is reached; returns
        the history rows of the epochs this call ran (`state.history` keeps them all).

        A non-finite loss, weight or moving statistic stops training with `Diverged` at the step
        it appears, before any hook runs; optimizer slots and averaged weights are checked at the
        end of every epoch and whenever the state is captured (a hook saving a checkpoint), so a
        non-finite state is never saved.
        """
        done = len(self.state.history)
        self._fit(train, val, epochs, batch)
        return self.state.history[done:]

    def _fit(self, train: XY, val: XY | None, epochs: int | None, batch: int | None) -> None:
        x, y = train
        target = self.cfg.epochs if epochs is None else self.state.epoch + epochs
        batch = min(self.cfg.batch if batch is None else batch, len(x))
        self._require_validation(val)
        start_op = 0
        if self.cache_frozen and target > self.state.epoch:
            x, val, start_op = self._cache_prefix(x, val)
        n, n_batches = len(x), -(-len(x) // batch)
        self.plan.allocate(batch)
        if target > self.state.epoch:  # BLAS x element-wise threads: forced, kept from the run, or timed
            self.thread_report = parallel.choose(self, x, y, batch, start_op,
                                                 steps_planned=(target - self.state.epoch) * n_batches)
        xb = np.empty((batch, x.shape[1]), self.plan.dtype)
        yb = np.empty((batch, *y.shape[1:]), y.dtype)
        if self.augmenter is not None:
            self.augmenter.allocate(batch)

        def gather(out, idx):  # a row block of the batch: rows idx of x (blocks side by side on the pool)
            np.take(x, idx, axis=0, out=out)

        while self.state.epoch < target and not self.state.stopped_early:
            epoch = self.state.epoch
            pos = self.state.position or Position(copy.deepcopy(get_state(self.shuffle_rng)), 0)
            set_state(self.shuffle_rng, copy.deepcopy(pos.shuffle_state))
            order = self.shuffle_rng.permutation(n) if self.cfg.shuffle else np.arange(n)
            self.state.position = pos
            self.reporter.epoch_start(epoch, target, n_batches)
            for b in range(pos.batch, n_batches):
                tick = time.perf_counter()
                idx = order[b * batch:(b + 1) * batch]
                m = len(idx)
                rows(gather, xb[:m], idx)
                np.take(y, idx, axis=0, out=yb[:m])
                if self.augmenter is not None:
                    self.augmenter(xb[:m])
                loss, right = self.train_step(xb[:m], yb[:m], epoch, start_op)
                self._unchecked_epoch = epoch
                if not math.isfinite(loss):
                    raise self._diverged(epoch, f"the loss became {_spell(loss)}")
                if not self.sums_finite:  # a NaN/Inf somewhere (or a sum that merely overflowed)
                    self.check_finite(epoch)
                pos.loss_sum += loss * m
                if right is None:
                    pos.has_acc = False
                else:
                    pos.correct += right
                pos.batch = b + 1
                pos.seconds += time.perf_counter() - tick
                self.reporter.batch_end(b, loss)
                if self.on_step is not None and pos.batch < n_batches:
                    self.on_step(self)
            logs = self._epoch_logs(epoch, pos, n, val, start_op)
            self.check_finite(epoch, full=True)  # before anything (early stopping, hooks) keeps the state
            bad = [k for k, v in logs.items() if k.startswith("val_") and not math.isfinite(v)]
            if bad:
                raise self._diverged(epoch, f"the validation {bad[0][4:]} became {_spell(logs[bad[0]])}")
            self.state.position = None
            self.state.epoch += 1
            self.state.history.append(logs)
            self._observe(logs)
            self.reporter.epoch_end(logs)
            if self.on_epoch_end is not None:
                self.on_epoch_end(self, logs)
        es = self.cfg.early_stopping
        if es is not None and es.restore_best and self.best_weights is not None:
            self.plan.theta[...], self.plan.fixed[...] = self.best_weights
        elif self.updater.averaged:  # like Keras' use_ema: the model ends with the averaged weights
            self.plan.theta[...] = self.updater.average

    # ------------------------------------------------------------ divergence
    def check_finite(self, epoch: int, full: bool = False) -> None:
        """Raise `Diverged` naming the first non-finite variable (in the plan's order).

        Every step, `train_step` sums each flat buffer (theta: every trainable weight; fixed:
        frozen weights and moving statistics: `buffer_sums_finite`); only when that fails does the
        loop call this, to name the variable (or to find that a sum of finite values merely
        overflowed). `full` (the end of an epoch, a checkpoint being captured) adds the optimizer
        slots and the averaged weights, checked directly: a second-moment slot can overflow to Inf
        while the weights stay finite (its updates become 0)."""
        if full:
            up = self.updater
            if self._slot_buffers is None:
                self._slot_buffers = [up.state[s] for s in up.optimizer.slots]
            extra = self._slot_buffers + ([up.average] if up.averaged and up.average is not None else [])
            # theta and fixed passed the last step's sums (the loop stops otherwise)
            if self.sums_finite and all(np.isfinite(b).all() for b in extra):
                self._unchecked_epoch = None
                return
        for name, value in self._checked_arrays(full):
            if not np.isfinite(value).all():
                raise self._diverged(epoch, _became(name, value))
        if full:
            self._unchecked_epoch = None

    def buffer_sums_finite(self) -> bool:
        """The divergence check's per-step part (train_step calls it, under its errstate): one
        sum over each flat buffer, theta and fixed; a NaN or Inf anywhere makes a sum
        non-finite. Theta's check comes from the update's chunks where they made it (each chunk's
        largest and smallest value, read while the chunk was in the L2 cache:
        `Updater.theta_finite`), else it is one sum here. No allocation."""
        plan = self.plan
        theta = self.updater.theta_finite()
        if theta is None:
            theta = math.isfinite(np.add.reduce(plan.theta))
        return theta and (not plan.fixed.size or math.isfinite(np.add.reduce(plan.fixed)))

    def _checked_arrays(self, full: bool):
        plan, up = self.plan, self.updater
        yield from plan.variables.items()
        if not full:
            return
        opt = self.cfg.optimizer.name
        for slot, views in up.slot_views().items():
            for name, value in views.items():
                yield f"{opt} slot {slot!r} of {name}", value
        if up.averaged and up.average is not None:
            for name, (a, b) in plan.offsets.items():
                yield f"the averaged {name}", up.average[a:b]

    def _diverged(self, epoch: int, what: str) -> Diverged:
        return Diverged(f"training diverged at epoch {epoch + 1}, step {self.updater.t}: {what} ({DIVERGED_HINT})")

    @contextmanager
    def evaluation_weights(self):
        """Evaluate with the averaged weights while averaging is on (then put the trained ones back)."""
        if not self.updater.averaged:
            yield
            return
        trained = self.plan.theta.copy()
        self.plan.theta[...] = self.updater.average
        try:
            yield
        finally:
            self.plan.theta[...] = trained

    def _require_validation(self, val: XY | None) -> None:
        es = self.cfg.early_stopping
        if es is not None and es.monitor.startswith("val_") and val is None:
            raise UserError(f"early_stopping monitors {es.monitor}, but there is no validation data: "
                            "add `validation ...` to the train block or a validation split to the data")
        if self.cfg.best and self.cfg.best.startswith("val_") and val is None:
            raise UserError(f"checkpoint best={self.cfg.best} needs validation data")

    def _cache_prefix(self, x: np.ndarray, val: XY | None) -> tuple[np.ndarray, XY | None, int]:
        """Frozen-layer caching: the frozen, deterministic prefix runs once over the data set."""
        k = self.plan.cacheable_prefix()
        if k == 0:
            if self.augmenter is not None and 0 < self.plan.first_trainable < len(self.plan.ops):
                self.cache_report = "frozen-layer cache: off (the inputs are augmented, so they change every batch)"
            return x, val, 0
        tick = time.perf_counter()
        x = prefix_outputs(self.plan, x, k)
        if val is not None:
            val = (prefix_outputs(self.plan, val[0], k), val[1])
        spec = self.plan.program.ops[k - 1]
        self.cache_report = (f"frozen-layer cache: ops 1-{k} (up to {spec.name}) computed once for {len(x)} examples "
                             f"in {time.perf_counter() - tick:.2f}s; training runs ops {k + 1}-{len(self.plan.ops)}")
        return x, val, k

    def _epoch_logs(self, epoch: int, pos: Position, n: int, val: XY | None, start_op: int) -> dict:
        logs = {"epoch": epoch + 1, "loss": pos.loss_sum / n}
        if pos.has_acc:
            logs["accuracy"] = pos.correct / n
        tick = time.perf_counter()
        if val is not None:
            with self.evaluation_weights():
                logs.update({f"val_{k}": v for k, v in evaluate(self.plan, *val, start=start_op).items()})
        logs["lr"] = self.updater.rate.used  # the rate the epoch's (last) update used
        logs["seconds"] = pos.seconds + time.perf_counter() - tick
        return logs

    def train_step(self, x: np.ndarray, y: np.ndarray, epoch: int, start_op: int = 0) -> tuple[float, float | None]:
        """One update; returns the loss at the weights the step started from (data loss plus
        activity and weight penalties, as Keras reports it) and the number of right answers."""
        plan, up = self.plan, self.updater
        first: list = []

        def loss_and_gradient() -> float:
            z = plan.forward(x, training=True, start=start_op)
            loss = plan.loss.forward(z, y) + plan.penalty()
            if not first:  # accuracy at the point the step started from
                first.append(plan.loss.correct(z, y))
            plan.backward(plan.loss.backward())
            if up.regularizers:  # the weight penalty at the same weights as the data loss
                loss += up.penalty()
            if up.closure_based:  # L-BFGS sees the whole objective, penalties included, unclipped
                up.add_penalty_gradients()
            return loss

        # A diverging run overflows somewhere; the loop reports it as such, not as a NumPy warning.
        with np.errstate(over="ignore", invalid="ignore"):
            if up.closure_based:
                loss = up.step_with_closure(epoch, loss_and_gradient)
            else:
                loss = loss_and_gradient()
                up.step(epoch)
            self.sums_finite = self.buffer_sums_finite()  # in this errstate: Inf - Inf stays quiet
        right = first[0]
        return loss, None if right is None else right / answers_per_row(plan, z_rows(plan, x, start_op))

    def _observe(self, logs: dict) -> None:
        """Schedules that watch a metric, early stopping, best-epoch tracking."""
        cfg = self.cfg
        monitor = cfg.early_stopping.monitor if cfg.early_stopping else ("val_loss" if "val_loss" in logs else "loss")
        if monitor in logs:
            self.updater.rate.observe(float(logs[monitor]))
        if cfg.best and cfg.best in logs and improved(logs[cfg.best], self.state.best, cfg.best_mode):
            self.state.best, self.state.best_epoch = float(logs[cfg.best]), self.state.epoch
            logs["best"] = True
        es = cfg.early_stopping
        if es is None or es.monitor not in logs:
            return
        value = float(logs[es.monitor])
        if improved(value, self.state.es_best, es.mode, es.min_delta):
            self.state.es_best, self.state.es_wait = value, 0
            if es.restore_best:
                with self.evaluation_weights():  # the weights that scored `value`
                    self.best_weights = (self.plan.theta.copy(), self.plan.fixed.copy())
        else:
            self.state.es_wait += 1
            if self.state.es_wait >= max(es.patience, 1):  # Keras: stop after `patience` bad epochs
                self.state.stopped_early = True

    # ------------------------------------------------------------ the loop's part of the run state
    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able scalars, arrays): epoch, best-epoch and early-stopping counters, the
        position inside the epoch, every RNG stream, early stopping's best weights.

        When updates were made since the last full check (a hook saving mid-epoch, a save after
        an interrupted or diverged fit), it first checks the whole state, optimizer slots
        included, and raises `Diverged` rather than hand over a non-finite state."""
        if self._unchecked_epoch is not None:
            self.check_finite(self._unchecked_epoch, full=True)
        st = self.state
        state = {k: v for k, v in asdict(st).items() if k not in ("history", "position")}
        state["position"] = asdict(st.position) if st.position is not None else None
        state["rng_shuffle"] = get_state(self.shuffle_rng)
        if self.augmenter is not None:
            state["rng_augment"] = get_state(self.augmenter.rng)
        state["rng_ops"] = {_op_key(op): get_state(op.rng) for op in self.plan.ops if op.rng is not None}
        arrays = {}
        if self.best_weights is not None:
            arrays["best_theta"], arrays["best_fixed"] = self.best_weights
        return state, arrays

    def load_state_dict(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        self._unchecked_epoch = None  # the state is now the restored one, whatever it holds
        st = self.state
        for key in ("epoch", "best", "best_epoch", "es_best", "es_wait", "stopped_early"):
            if key in state:
                setattr(st, key, state[key])
        st.position = Position(**state["position"]) if state.get("position") else None
        if "rng_shuffle" in state:
            set_state(self.shuffle_rng, state["rng_shuffle"])
        if self.augmenter is not None and "rng_augment" in state:
            set_state(self.augmenter.rng, state["rng_augment"])
        for op in self.plan.ops:
            if op.rng is not None and _op_key(op) in state.get("rng_ops", {}):
                set_state(op.rng, state["rng_ops"][_op_key(op)])
        if "best_theta" in arrays and arrays["best_theta"].shape == self.plan.theta.shape:
            self.best_weights = (arrays["best_theta"].copy(), arrays["best_fixed"].copy())


def _spell(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _became(name: str, value: np.ndarray) -> str:
    """'dnn/bn/moving_variance became inf in 39 of 64 values'."""
    nan, pos = np.isnan(value), np.isposinf(value)
    bad = int(np.count_nonzero(~np.isfinite(value)))
    kind = "nan" if nan.any() else ("inf" if pos.any() else "-inf")
    return f"{name} became {kind}" + (f" in {bad} of {value.size} values" if value.size > 1 else "")


def _op_key(op) -> str:
    return f"{op.name}:{type(op).registered_name}"


# ---------------------------------------------------------------- inference
def prefix_outputs(plan: Plan, x: np.ndarray, stop: int, batch: int = EVAL_BATCH) -> np.ndarray:
    """The output of ops[:stop] in inference mode for a whole data set."""
    out = np.empty((len(x), plan.program.ops[stop - 1].n_out), plan.dtype)
    for i in range(0, len(x), batch):
        out[i:i + batch] = plan.forward(as_float(x[i:i + batch], plan.dtype), training=False, stop=stop)
    return out


def predict_logits(plan: Plan, x: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Inference-mode outputs in large batches (no backward work)."""
    return prefix_outputs(plan, x, len(plan.ops), batch) if plan.ops else as_float(x, plan.dtype)


def evaluate(plan: Plan, x: np.ndarray, y: np.ndarray, batch: int = EVAL_BATCH, start: int = 0) -> dict:
    """Mean loss and (where it means something) accuracy, in inference mode."""
    loss_sum, correct, has_acc = 0.0, 0.0, True
    for i in range(0, len(x), batch):
        xb, yb = as_float(x[i:i + batch], plan.dtype), y[i:i + batch]
        with np.errstate(over="ignore", invalid="ignore"):
            z = plan.forward(xb, training=False, start=start)
            loss_sum += plan.loss.forward(z, yb) * len(xb)
            right = plan.loss.correct(z, yb)
        if right is None:
            has_acc = False
        else:
            correct += right / answers_per_row(plan, z)
    out = {"loss": loss_sum / len(x)}
    if has_acc:
        out["accuracy"] = correct / len(x)
    return out


def answers_per_row(plan: Plan, z: np.ndarray) -> int:
    """Multi-label sigmoid outputs give one right-or-wrong answer per column, others one per row."""
    return z.shape[1] if plan.loss.labels == "binary" else 1


def z_rows(plan: Plan, x: np.ndarray, start: int) -> np.ndarray:
    """A stand-in with the output's shape (answers_per_row needs only its width)."""
    return np.empty((0, plan.program.output_width))


def as_float(x: np.ndarray, dtype) -> np.ndarray:
    return x if x.dtype == dtype else x.astype(dtype)
