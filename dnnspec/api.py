"""The Python API: compile a spec into a `Model`, train it, use it, save it, load it back.

    import dnnspec
    model = dnnspec.compile_file("specs/quickstart.dnn", overrides=["train.epochs=3"])
    history = model.fit()                 # data, epochs, batch size from the spec
    probs = model.predict(x)
    model.save("checkpoints/q.h5")
    again = dnnspec.load_checkpoint("checkpoints/q.h5")
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .check import Program, check_file, check_text, data_shape_errors
from .ckpt import hdf5
from .datasets import Splits
from .errors import CheckpointError, DataError, SpecError
from .plan import Plan
from .train.loop import Trainer, evaluate, predict_logits


class Model:
    """A compiled spec: variables, training, inference, checkpoints."""

    def __init__(self, program: Program):
        self.program = program
        self.plan = Plan(program)
        self.plan.initialize()
        self.plan.seed_ops()
        self.trainer = Trainer(self.plan)
        self.reuse_reports = [self.reuse(r.path, r.scope, r.rename_from, r.rename_to) for r in program.reuse]

    def reuse(self, path, scope: str = "", rename_from: str = "", rename_to: str = "", mapping=None):
        """Load the matching variables of another checkpoint into this model (before training).

        Returns the report (loaded, left at init, unused in the source); a shape conflict is a
        CheckpointError naming both shapes, and so is a checkpoint that fills nothing.
        """
        from .ckpt.tools import plan_reuse

        source = hdf5.load(path)
        shapes = {n: i.shape for n, i in self.plan.infos.items()}
        report = plan_reuse(source, shapes, scope, rename_from, rename_to, mapping, source_path=str(path))
        report.raise_on_conflicts()
        report.raise_if_empty()
        report.apply(source, self.variables)
        return report

    # ------------------------------------------------------------ introspection
    @property
    def variables(self) -> dict[str, np.ndarray]:
        """Scoped name -> float32 array (a view: assigning in place changes the model)."""
        return self.plan.variables

    @property
    def history(self) -> list[dict]:
        return self.trainer.state.history

    def collection(self, name: str) -> list[tuple[str, Any]]:
        """The members of a named collection in order, as (name, array), the arrays being the
        model's variables (views). A layer or scope gives all its variables; an output name
        (x, logits, loss, accuracy) gives None. Built in: trainable_variables,
        non_trainable_variables, moving_statistics, regularization_targets."""
        infos = self.plan.infos
        regularized = [p for _, p in self.program.train.regularize]
        builtin = {
            "trainable_variables": [n for n, i in infos.items() if i.trainable],
            "non_trainable_variables": [n for n, i in infos.items() if not i.trainable],
            "moving_statistics": [n for n, i in infos.items() if i.role.startswith("moving")],
            "regularization_targets": [n for n in infos if any(p.match(n) for p in regularized)],
        }
        names = self.program.collections.get(name, builtin.get(name))
        if names is None:
            known = sorted({*self.program.collections, *builtin})
            raise KeyError(f"no collection '{name}'; known: {', '.join(known)}")
        return hdf5.collection_members(names, self.variables)

    # ------------------------------------------------------------ data
    def load_data(self) -> Splits:
        """The spec's `data` declaration, loaded, with the train block's validation split applied."""
        if self.program.data is None:
            raise DataError("the spec has no `data` declaration: pass arrays to fit(x, y)")
        splits = self.program.data.build().load(Path.cwd())
        errors = data_shape_errors(self.program, splits.n_features, splits.n_classes,
                                   _label_width(splits.train[1]), self.program.ops[0].span if self.program.ops else None)
        if errors:
            raise SpecError(errors, getattr(self.program, "sources", {}))
        hold = self.program.train.validation
        if splits.val is None and hold > 0:
            x, y = splits.train
            k = int(round(hold * len(x))) if hold < 1 else int(hold)
            if not 0 < k < len(x):
                raise DataError(f"validation {hold:g} leaves no training data ({len(x)} examples)")
            splits.train, splits.val = (x[:-k], y[:-k]), (x[-k:], y[-k:])
        return splits

    # ------------------------------------------------------------ training
    def fit(self, x: np.ndarray | None = None, y: np.ndarray | None = None, *, epochs: int | None = None,
            batch_size: int | None = None, validation_data: tuple[np.ndarray, np.ndarray] | None = None,
            reporter=None, on_epoch_end=None, on_step=None) -> list[dict]:
        """Train; arguments left out come from the spec. Returns the per-epoch history.

        Without `epochs`, training continues until the spec's epoch count is reached (so a model
        restored from a checkpoint finishes its run); with `epochs=n` it trains n more epochs.
        """
        if x is None:
            splits = self.load_data()
            train = splits.train
            if validation_data is None:
                validation_data = splits.val
        else:
            if y is None:
                raise ValueError("fit(x, y): y is missing")
            train = (_features(x, self.plan.dtype), np.asarray(y))
        if validation_data is not None:
            validation_data = (_features(validation_data[0], self.plan.dtype), np.asarray(validation_data[1]))
        if reporter is not None:
            self.trainer.reporter = reporter
        self.trainer.on_epoch_end = on_epoch_end
        self.trainer.on_step = on_step
        return self.trainer.fit(train, validation_data, epochs, batch_size)

    # ------------------------------------------------------------ inference
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs in inference mode: class probabilities for classification losses."""
        return self.plan.loss.predict(predict_logits(self.plan, _features(x, self.plan.dtype)))

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return predict_logits(self.plan, _features(x, self.plan.dtype))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict:
        """Mean loss and accuracy in inference mode."""
        return evaluate(self.plan, _features(x, self.plan.dtype), np.asarray(y))

    # ------------------------------------------------------------ checkpoints
    def to_checkpoint(self) -> hdf5.Checkpoint:
        plan, tr = self.plan, self.trainer
        membership: dict[str, list[str]] = {}
        for cname, names in self.program.collections.items():
            for n in names:
                for v in plan.variables:
                    if v == n or v.startswith(n + "/"):
                        membership.setdefault(v, []).append(cname)
        variables = {n: hdf5.VarRecord(plan.variables[n].copy(), i.trainable, i.role, i.init,
                                       tuple(membership.get(n, ()))) for n, i in plan.infos.items()}
        up = tr.updater
        optimizer = {"name": self.program.train.optimizer.name, "hyperparameters": up.optimizer.hyperparameters(),
                     "step": up.t, "slots": {s: {n: a.copy() for n, a in views.items()}
                                             for s, views in up.slot_views().items()}}
        state, arrays = tr.state_dict()
        history = [{k: v for k, v in row.items() if k != "best"} for row in tr.state.history]
        return hdf5.Checkpoint(self.program.canonical, variables, optimizer, state, history,
                               dict(self.program.collections), state_arrays=arrays)

    def save(self, path) -> Path:
        """Write an HDF5 checkpoint (atomically)."""
        return hdf5.save(path, self.to_checkpoint())

    def restore(self, ckpt: hdf5.Checkpoint, strict: bool = True) -> None:
        """Load weights, optimizer slots and training state from a checkpoint of this spec."""
        plan = self.plan
        missing = [n for n in plan.variables if n not in ckpt.variables]
        if strict and missing:
            raise CheckpointError(f"the checkpoint lacks variables of this model: {', '.join(missing[:8])}")
        for n, arr in plan.variables.items():
            if n in ckpt.variables:
                src = ckpt.variables[n].value
                if src.shape != arr.shape:
                    raise CheckpointError(f"variable {n}: checkpoint shape {src.shape} != model shape {arr.shape}")
                arr[...] = src
        up = self.trainer.updater
        if ckpt.optimizer is not None and ckpt.optimizer["name"] == self.program.train.optimizer.name:
            views = up.slot_views()
            for slot, arrays in ckpt.optimizer["slots"].items():
                for n, a in arrays.items():
                    if slot in views and n in views[slot]:
                        views[slot][n][...] = a
            up.t = int(ckpt.optimizer["step"])
        self.trainer.load_state_dict(ckpt.state, ckpt.state_arrays, ckpt.history)

    # ------------------------------------------------------------ reporting
    def summary(self) -> str:
        from .report import summary_table

        return summary_table(self)


def _features(x, dtype) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    return x if x.dtype == dtype else x.astype(dtype)


def _label_width(y: np.ndarray) -> int | None:
    return y.shape[1] if y.ndim == 2 else None


def compile_text(src: str, overrides: Sequence[str] | None = None, file: str = "<spec>") -> Model:
    """Parse, check and compile spec text into a Model (weights initialized from the seed)."""
    return Model(check_text(src, file, overrides or ()))


def compile_file(path, overrides: Sequence[str] | None = None) -> Model:
    """Parse, check and compile a .dnn file into a Model."""
    return Model(check_file(path, overrides or ()))


def load_checkpoint(path) -> Model:
    """Rebuild the model a checkpoint was trained from (its stored spec) with its weights and state."""
    ckpt = hdf5.load(path)
    try:
        model = Model(check_text(ckpt.spec, f"{path}:/spec"))
    except SpecError as e:
        raise CheckpointError(f"{path}: the spec stored in the checkpoint does not check:\n{e}") from None
    model.restore(ckpt)
    return model


# ---------------------------------------------------------------- the `run` job
def jsonl_path(program: Program) -> Path | None:
    cfg = program.train
    if cfg.log:
        return Path(cfg.log)
    if cfg.checkpoint:
        return Path(cfg.checkpoint).with_suffix(".jsonl")
    return None


def last_path(program: Program) -> Path | None:
    """Where the latest state goes: the checkpoint itself, or <name>.last.h5 when it keeps the best."""
    cfg = program.train
    if not cfg.checkpoint:
        return None
    path = Path(cfg.checkpoint)
    return path if cfg.best is None else path.with_name(path.stem + ".last" + path.suffix)


def snapshot_path(program: Program, i: int) -> Path:
    path = Path(program.train.checkpoint)
    return path.with_name(f"{path.stem}.snapshot{i}{path.suffix}")


def run(model: Model, reporter=None, log=print, resume=None) -> dict:
    """Train as the spec says, writing checkpoints and the metrics log; returns the final summary.

    `resume` is a checkpoint of this spec to continue from (weights, optimizer slots, schedule,
    early-stopping counters, RNG streams, position inside the epoch, history).
    """
    start = time.perf_counter()
    cfg = model.program.train
    if resume is not None:
        ckpt = hdf5.load(resume)
        if ckpt.state.get("derived"):
            raise CheckpointError(f"{resume}: a file made by `ckpt rename/extract/merge` holds no training run to "
                                  "resume; use it with `reuse` instead")
        model.restore(ckpt)
    splits = model.load_data()
    log_path = jsonl_path(model.program)
    run_id = time.strftime("%Y%m%dT%H%M%S")
    best_path = Path(cfg.checkpoint) if cfg.checkpoint and cfg.best is not None else None
    latest = last_path(model.program)
    snapshots: list[Path] = []

    def on_epoch_end(trainer, logs):
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"run": run_id, **{k: v for k, v in logs.items() if k != "best"}}) + "\n")
        if best_path is not None and logs.get("best"):
            model.save(best_path)
        if latest is not None:
            model.save(latest)
        last_epoch = trainer.state.epoch >= cfg.epochs or trainer.state.stopped_early
        if cfg.snapshots and (trainer.updater.restarts_next(trainer.state.epoch - 1) or last_epoch):
            snapshots.append(model.save(snapshot_path(model.program, len(snapshots) + 1)))

    def on_step(trainer):
        if cfg.every_steps and latest is not None and trainer.updater.t % cfg.every_steps == 0:
            model.save(latest)

    history = model.fit(splits.train[0], splits.train[1], validation_data=splits.val, reporter=reporter,
                        on_epoch_end=on_epoch_end, on_step=on_step)
    es = cfg.early_stopping
    if latest is not None and history and (cfg.average or (es is not None and es.restore_best)):
        model.save(latest)  # now holding the restored (or averaged) weights the run ends with
    if model.trainer.cache_report:
        log(model.trainer.cache_report)
    if best_path is not None and best_path.is_file():
        best = hdf5.load(best_path)  # the run's result is the best checkpoint's weights
        for n, arr in model.variables.items():
            arr[...] = best.variables[n].value
    last = history[-1] if history else {}
    result = {
        "epochs_run": len(history),
        "train_loss": last.get("loss"),  # running averages over the last epoch, as Keras reports them
        "train_accuracy": last.get("accuracy"),
        "val_loss": None,  # val and test: the final weights (the best checkpoint's, if best= is set)
        "val_accuracy": None,
        "test_loss": None,
        "test_accuracy": None,
        "stopped_early": model.trainer.state.stopped_early,
        "checkpoint": str(best_path or latest) if (best_path or latest) is not None else None,
        "log": str(log_path) if log_path is not None else None,
        "frozen_cache": model.trainer.cache_report,
        "snapshots": [str(p) for p in snapshots],
    }
    for split in ("val", "test"):
        data = getattr(splits, split)
        if data is not None:
            metrics = model.evaluate(*data)
            result[f"{split}_loss"] = metrics["loss"]
            result[f"{split}_accuracy"] = metrics.get("accuracy")
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result
