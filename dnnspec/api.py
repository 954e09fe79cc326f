"""The Python API: compile a spec into a `Model`, train it, use it, save it, load it back.

    import dnnspec
    model = dnnspec.compile_file("specs/quickstart.dnn", overrides=["train.epochs=3"])
    history = model.fit()                 # data, epochs, batch size from the spec
    probs = model.predict(x)
    model.save("checkpoints/q.h5")
    again = dnnspec.load_checkpoint("checkpoints/q.h5")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import runstate
from .check import check_file, check_text, data_shape_errors
from .ckpt import hdf5
from .datasets import Splits
from .errors import CheckpointError, DataError, SpecError
from .plan import Plan
from .program import Program, builtin_collections, collection
from .train.loop import Trainer, evaluate, predict_logits


class Model:
    """A compiled spec: variables, training, inference, checkpoints."""

    def __init__(self, program: Program, apply_reuse: bool = True):
        """`apply_reuse=False` skips the spec's `reuse` lines: a model about to be filled from its
        own checkpoint must not read (or need) the files its weights once came from."""
        self.program = program
        self.plan = Plan(program)
        self.plan.initialize()
        self.plan.seed_ops()
        self.trainer = Trainer(self.plan)
        self.reuse_reports = [self.reuse(r.path, r.scope, r.rename_from, r.rename_to)
                              for r in program.reuse] if apply_reuse else []

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

    @property
    def step(self) -> int:
        """Updates done so far."""
        return self.trainer.updater.t

    def collection(self, name: str) -> list[tuple[str, Any]]:
        """The members of a named collection in order, as (name, array), the arrays being the
        model's variables (views). A layer or scope gives all its variables; an output name
        (x, logits, loss, accuracy) gives None. Built in: trainable_variables,
        non_trainable_variables, moving_statistics, regularization_targets."""
        records = [(n, i.trainable, i.role) for n, i in self.plan.infos.items()]
        builtin = builtin_collections(records, [p for _, p in self.program.train.regularize])
        return collection(name, self.program.collections, builtin, self.variables)

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
        return runstate.capture(self.program, self.trainer)

    def save(self, path) -> Path:
        """Write an HDF5 checkpoint (atomically) holding the whole state of the run."""
        return runstate.save(path, self.program, self.trainer)

    def restore(self, ckpt: hdf5.Checkpoint, strict: bool = True) -> None:
        """Load weights, optimizer slots and training state from a checkpoint of this spec."""
        runstate.restore(ckpt, self.program, self.trainer, strict)

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


def compile_file(path, overrides: Sequence[str] | None = None, apply_reuse: bool = True) -> Model:
    """Parse, check and compile a .dnn file into a Model."""
    return Model(check_file(path, overrides or ()), apply_reuse)


def load_checkpoint(path) -> Model:
    """Rebuild the model a checkpoint was trained from (its stored spec) with its weights and state."""
    ckpt = hdf5.load(path)
    try:
        model = Model(check_text(ckpt.spec, f"{path}:/spec"), apply_reuse=False)
    except SpecError as e:
        raise CheckpointError(f"{path}: the spec stored in the checkpoint does not check:\n{e}") from None
    model.restore(ckpt)
    return model
