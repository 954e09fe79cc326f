"""The training loop: seeded shuffling, minibatches, metrics, early stopping, and hooks for
checkpointing and progress reporting (the loop itself knows nothing of files or terminals)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..errors import UserError
from ..plan import Plan
from ..rng import stream
from .updater import Updater

XY = tuple[np.ndarray, np.ndarray]
EVAL_BATCH = 2048


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
    def __init__(self, plan: Plan, reporter: Reporter | None = None,
                 on_epoch_end: Callable[["Trainer", dict], None] | None = None):
        self.plan = plan
        self.cfg = plan.program.train
        self.updater = Updater(plan, self.cfg)
        self.state = TrainState()
        self.reporter = reporter or Silent()
        self.on_epoch_end = on_epoch_end
        self.shuffle_rng = stream(self.cfg.seed, "shuffle")
        self.best_weights: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------ training
    def fit(self, train: XY, val: XY | None = None, epochs: int | None = None, batch: int | None = None) -> list[dict]:
        x, y = train
        epochs = self.cfg.epochs if epochs is None else epochs
        batch = self.cfg.batch if batch is None else batch
        es = self.cfg.early_stopping
        if es is not None and es.monitor.startswith("val_") and val is None:
            raise UserError(f"early_stopping monitors {es.monitor}, but there is no validation data: "
                            "add `validation ...` to the train block or a validation split to the data")
        if self.cfg.best and self.cfg.best.startswith("val_") and val is None:
            raise UserError(f"checkpoint best={self.cfg.best} needs validation data")
        n = len(x)
        batch = min(batch, n)
        self.plan.allocate(batch)
        xb = np.empty((batch, x.shape[1]), self.plan.dtype)
        yb = np.empty((batch, *y.shape[1:]), y.dtype)
        n_batches = -(-n // batch)
        target = self.state.epoch + epochs
        while self.state.epoch < target and not self.state.stopped_early:
            epoch = self.state.epoch
            start = time.perf_counter()
            order = self.shuffle_rng.permutation(n) if self.cfg.shuffle else np.arange(n)
            self.reporter.epoch_start(epoch, target, n_batches)
            loss_sum = correct = 0.0
            has_acc = True
            for b in range(n_batches):
                idx = order[b * batch:(b + 1) * batch]
                m = len(idx)
                np.take(x, idx, axis=0, out=xb[:m])
                np.take(y, idx, axis=0, out=yb[:m])
                loss, right = self.train_step(xb[:m], yb[:m], epoch)
                if not math.isfinite(loss):
                    raise UserError(f"the loss became {loss} at epoch {epoch + 1}, batch {b + 1}: training "
                                    "diverged (lower the learning rate, or clip gradients with clip_norm)")
                loss_sum += loss * m
                if right is None:
                    has_acc = False
                else:
                    correct += right
                self.reporter.batch_end(b, loss)
            logs = {"epoch": epoch + 1, "loss": loss_sum / n}
            if has_acc:
                logs["accuracy"] = correct / n
            if self.updater.regularizers:
                logs["loss"] += self.updater.penalty()
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate(*val).items()})
            logs["lr"] = self.updater.lr(epoch)
            logs["seconds"] = time.perf_counter() - start
            self.state.epoch += 1
            self.state.history.append(logs)
            self._observe(logs)
            self.reporter.epoch_end(logs)
            if self.on_epoch_end is not None:
                self.on_epoch_end(self, logs)
        if es is not None and es.restore_best and self.best_weights is not None:
            self.plan.theta[...], self.plan.fixed[...] = self.best_weights
        return self.state.history

    def train_step(self, x: np.ndarray, y: np.ndarray, epoch: int) -> tuple[float, float | None]:
        plan = self.plan
        # A diverging run overflows somewhere; the loop reports it as such, not as a NumPy warning.
        with np.errstate(over="ignore", invalid="ignore"):
            z = plan.forward(x, training=True)
            loss = plan.loss.forward(z, y)
            right = plan.loss.correct(z, y)
            plan.backward(plan.loss.backward())
            self.updater.step(epoch)
        return loss, None if right is None else right / answers_per_row(plan, z)

    def _observe(self, logs: dict) -> None:
        """Schedules that watch a metric, early stopping, best-epoch tracking."""
        cfg = self.cfg
        monitor = cfg.early_stopping.monitor if cfg.early_stopping else ("val_loss" if "val_loss" in logs else "loss")
        if monitor in logs:
            self.updater.schedule.observe(float(logs[monitor]))
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
                self.best_weights = (self.plan.theta.copy(), self.plan.fixed.copy())
        else:
            self.state.es_wait += 1
            if self.state.es_wait >= max(es.patience, 1):  # Keras: stop after `patience` bad epochs
                self.state.stopped_early = True

    # ------------------------------------------------------------ inference
    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return predict_logits(self.plan, x)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict:
        return evaluate(self.plan, x, y)


def predict_logits(plan: Plan, x: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Inference-mode outputs in large batches (no backward work)."""
    out = np.empty((len(x), plan.program.output_width), plan.dtype)
    for i in range(0, len(x), batch):
        out[i:i + batch] = plan.forward(as_float(x[i:i + batch], plan.dtype), training=False)
    return out


def evaluate(plan: Plan, x: np.ndarray, y: np.ndarray, batch: int = EVAL_BATCH) -> dict:
    """Mean loss and (where it means something) accuracy, in inference mode."""
    loss_sum, correct, has_acc = 0.0, 0.0, True
    for i in range(0, len(x), batch):
        xb, yb = as_float(x[i:i + batch], plan.dtype), y[i:i + batch]
        with np.errstate(over="ignore", invalid="ignore"):
            z = plan.forward(xb, training=False)
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


def as_float(x: np.ndarray, dtype) -> np.ndarray:
    return x if x.dtype == dtype else x.astype(dtype)
