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
from .errors import CheckpointError, DataError, SpecError, UserError
from .plan import Plan, Variables
from .pretrain import Greedy
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
        # the pretraining phase, run before supervised training by `pretrain()` (`dnnspec run` does)
        self.pretraining = Greedy(self.plan, program.pretrain) if program.pretrain is not None else None
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
    def variables(self) -> Variables:
        """Scoped name -> float32 array, a view into the model: ``variables[name][...] = w`` and
        ``variables[name] = w`` both change the model (the second checks the shape and converts
        to float32); names cannot be added or deleted."""
        return self.plan.variables

    @property
    def history(self) -> list[dict]:
        """Every epoch's metrics so far, across fit calls (and restored from a checkpoint)."""
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
        if self.program.train.target == "input":  # an autoencoder: every split's target is its input
            for split in ("train", "val", "test"):
                part = getattr(splits, split)
                if part is not None:
                    setattr(splits, split, (part[0], part[0]))
            splits.n_classes = None
        n_classes, note = _classes_to_fit(self.program, splits)
        errors = data_shape_errors(self.program, splits.n_features, n_classes, _label_width(splits.train[1]),
                                   self.program.ops[0].span if self.program.ops else None, classes_note=note)
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
        """Train; arguments left out come from the spec. Returns the history rows (one dict of
        metrics per epoch) of the epochs this call ran; `history` keeps every epoch's.

        Without `epochs`, training continues until the spec's epoch count is reached (so a model
        restored from a checkpoint finishes its run); with `epochs=n` it trains n more epochs.
        Arrays are checked first (widths, lengths, labels, NaN/Inf: a `DataError` saying what was
        expected); a run that diverges raises `dnnspec.train.loop.Diverged` (a `UserError`).
        """
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < (0 if name == "epochs" else 1)):
                raise UserError(f"fit: {name} must be a whole number {'>= 0' if name == 'epochs' else '>= 1'}, "
                                f"got {value!r}")
        if x is None:
            if y is not None:
                raise DataError("fit(y=...) without x: pass both, or neither to use the spec's data")
            splits = self.load_data()  # checked as it loads
            train = splits.train
            validation_data = splits.val if validation_data is None else self._validation(validation_data)
        else:
            if y is None and self.program.train.target == "input":
                y = x  # a reconstruction: the input is the target
            if y is None:
                raise DataError("fit(x, y): y is missing (a label or target for every row of x)")
            train = self._examples(x, y, "x", "y")
            if validation_data is not None:
                validation_data = self._validation(validation_data)
        if reporter is not None:
            self.trainer.reporter = reporter
        self.trainer.on_epoch_end = on_epoch_end
        self.trainer.on_step = on_step
        return self.trainer.fit(train, validation_data, epochs, batch_size)

    def pretrain(self, x: np.ndarray | None = None, *, on_step=None, on_epoch_end=None, on_layer_end=None
                 ) -> list[dict]:
        """Run (or finish) the spec's `pretrain` phase: its dense layers one at a time, bottom up,
        on unlabeled inputs (x, or the spec's data: every training row before train_limit with
        data=unlabeled). Returns the history rows it added (one per layer and epoch); a spec
        without `pretrain`, or a phase already done, adds none."""
        if x is not None:  # checked even when there is nothing left to do: a bad x is an error either way
            x = self._inputs(x, "x")
        if self.pretraining is None or self.pretraining.done:
            return []
        if x is None:
            x = self.unlabeled_inputs(self.load_data())
        return self.pretraining.run(x, on_step=on_step, on_epoch_end=on_epoch_end, on_layer_end=on_layer_end)

    def unlabeled_inputs(self, splits: Splits) -> np.ndarray:
        """The inputs pretraining uses: every training row (before train_limit) for data=unlabeled,
        else the training set's."""
        use_all = self.program.pretrain is not None and self.program.pretrain.data == "unlabeled"
        return splits.unlabeled if use_all and splits.unlabeled is not None else splits.train[0]

    # ------------------------------------------------------------ inference
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs in inference mode: class probabilities for classification losses."""
        return self.plan.loss.predict(predict_logits(self.plan, self._inputs(x, "x", allow_empty=True)))

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return predict_logits(self.plan, self._inputs(x, "x", allow_empty=True))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict:
        """Mean loss and accuracy in inference mode."""
        return evaluate(self.plan, *self._examples(x, y, "x", "y"))

    # ------------------------------------------------------------ checking arrays
    def _inputs(self, x, what: str, allow_empty: bool = False) -> np.ndarray:
        """x as float32 [N, input width], or a DataError saying what was expected."""
        return _features_checked(x, self.program, self.plan.dtype, what, allow_empty)

    def _examples(self, x, y, x_what: str, y_what: str) -> tuple[np.ndarray, np.ndarray]:
        xs = self._inputs(x, x_what)
        return xs, _labels_checked(y, len(xs), self.program, self.plan.dtype, x_what, y_what)

    def _validation(self, data) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise DataError("validation_data must be a pair (x, y)")
        return self._examples(*data, "validation_data x", "validation_data y")

    # ------------------------------------------------------------ checkpoints
    def to_checkpoint(self) -> hdf5.Checkpoint:
        return runstate.capture(self.program, self.trainer, self.pretraining)

    def save(self, path) -> Path:
        """Write an HDF5 checkpoint (atomically) holding the whole state of the run."""
        return runstate.save(path, self.program, self.trainer, self.pretraining)

    def restore(self, ckpt: hdf5.Checkpoint, strict: bool = True) -> None:
        """Load weights, optimizer slots and training state (and the pretraining phase's) from a
        checkpoint of this spec."""
        runstate.restore(ckpt, self.program, self.trainer, strict, self.pretraining)

    # ------------------------------------------------------------ reporting
    def summary(self) -> str:
        from .report import summary_table

        return summary_table(self)


def _classes_to_fit(program: Program, splits: Splits) -> tuple[int | None, str | None]:
    """The class count the model's output must fit, and E048's hint, for data whose labels go
    beyond the output. Stray labels are the data's fault (a DataError naming file, row and
    label); with a declared class count, or labels beyond that are common, the layer is to
    blame (E048), for the classes the data has once strays are left out."""
    n_classes, note = splits.n_classes, None
    capacity = _label_capacity(program, splits.train[1].ndim == 1)
    census = splits.label_census(capacity) if capacity is not None else None
    if census is not None:  # labels beyond the output, and the class count only inferred from them
        stray = splits.stray_labels(capacity, _capacity_words(program, capacity))
        if stray:  # a few rows are wrong, not the model
            raise DataError(stray)
        if splits.train[1].ndim == 1:  # the model is too narrow for the classes the data has
            n_classes = census.classes
        note = f"the data's labels go up to {splits.n_classes - 1}"
        if census.strays:
            one = len(census.strays) == 1
            note += (f", but {'label' if one else 'labels'} {_listing(census.strays)} {'is' if one else 'are'} "
                     f"on only {census.rows} row{'s' * (census.rows > 1)} ({census.first}"
                     f"{'' if census.rows == 1 else ', ...'}): a mistake to fix in the data, not counted as "
                     f"{'a class' if one else 'classes'}")
        else:
            note += f", and many rows have labels above {capacity - 1}"
    return n_classes, note


def _array(a, what: str) -> np.ndarray:
    try:
        a = np.asarray(a)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise DataError(f"{what} is not an array of numbers: {e}") from None
    if a.dtype.kind not in "biuf":
        raise DataError(f"{what} has dtype {a.dtype}; expected numbers")
    return a


def _features_checked(x, program: Program, dtype, what: str, allow_empty: bool = False) -> np.ndarray:
    """float32 [N, input width] from [N], [N, F] or [N, ...] (flattened), checked."""
    x = _array(x, what)
    width, name = program.input_width, program.input_name
    if x.ndim == 0:
        raise DataError(f"{what} is a single number; expected rows of {width} features, shape [N, {width}]")
    shown = "[" + ", ".join(map(str, x.shape)) + "]"
    if x.ndim == 1:
        if width != 1:
            one = f" (one example? pass {what}.reshape(1, -1))" if len(x) == width else ""
            raise DataError(f"{what} has shape {shown}: one feature per row, but input '{name}' has width "
                            f"{width}; expected shape [N, {width}]{one}")
        x = x[:, None]
    elif x.ndim > 2:
        x = x.reshape(len(x), -1)
    if x.shape[1] != width:
        flat = f" ({shown} flattened)" if shown != f"[{len(x)}, {x.shape[1]}]" else ""
        raise DataError(f"{what} has {x.shape[1]} features per row{flat}, but input '{name}' has width {width}; "
                        f"expected shape [N, {width}]")
    if len(x) == 0 and not allow_empty:
        raise DataError(f"{what} is empty (shape {shown}); expected at least one example")
    _require_finite(x, what)
    if x.dtype != dtype:
        wide = x.dtype.kind == "f" and x.dtype.itemsize > np.dtype(dtype).itemsize
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes Inf: reported next
            x = x.astype(dtype)
        if wide:
            _require_finite(x, what, f"too large for {np.dtype(dtype).name}")
    return x


def _require_finite(a: np.ndarray, what: str, note: str = "", chunk: int = 4096) -> None:
    """DataError at the first NaN/Inf ("x contains NaN at row 5 (x[5, 2])"), a chunk at a time."""
    if a.size == 0 or a.dtype.kind not in "fc":
        return
    flat = a.reshape(len(a), -1)
    for start in range(0, len(flat), chunk):
        ok = np.isfinite(flat[start:start + chunk])
        if not ok.all():
            r, c = np.argwhere(~ok)[0]
            value = float(flat[start + r, c])
            kind = "NaN" if np.isnan(value) else ("Inf" if value > 0 else "-Inf")
            at = f"{what}[{start + r}, {c}]" if a.ndim == 2 else f"{what}[{start + r}]"
            raise DataError(f"{what} contains {kind} at row {start + r} ({at}"
                            + (f": {note}" if note else "") + "); expected finite numbers")


def _label_capacity(program: Program, index_labels: bool) -> int | None:
    """How many classes the model's output tells apart, for class-index labels (None: not classes)."""
    kind = program.train.loss.build().labels
    if kind == "class":
        return program.output_width
    if kind == "binary" and index_labels and program.output_width == 1:
        return 2
    return None


def _capacity_words(program: Program, capacity: int) -> str:
    if program.train.loss.build().labels == "binary":
        return f"for {program.train.loss.name} (one output: 0 or 1)"
    last = f"the last layer '{program.ops[-1].layer}'" if program.ops else f"input '{program.input_name}'"
    return f"for the {capacity} outputs of {last}"


def _labels_checked(y, n: int, program: Program, dtype, x_what: str, what: str) -> np.ndarray:
    """Labels for n examples as the loss takes them: int64 class indices [N], or float rows [N, K]
    (one-hot / probabilities / multi-label / regression targets), checked against the output."""
    y = _array(y, what)
    kind = program.train.loss.build().labels
    width = program.output_width
    if y.ndim == 0:
        raise DataError(f"{what} is a single number; expected one label or target per row of {x_what}")
    if len(y) != n:
        raise DataError(f"{x_what} has {n} rows but {what} has {len(y)}; expected one label or target per row")
    shown = "[" + ", ".join(map(str, y.shape)) + "]"
    if kind == "class" and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and width != 1)):
        y = y.reshape(n)
        if y.dtype.kind == "f":
            _require_finite(y, what)
            bad = np.flatnonzero(y != np.round(y))
            if len(bad):
                raise DataError(f"{what} has {_num(y[bad[0]])} at row {bad[0]}; class labels are whole numbers "
                                f"0..{width - 1}")
        return _in_range(y, width, _capacity_words(program, width), what).astype(np.int64, copy=False)
    if kind == "binary" and y.ndim == 1 and width == 1:
        _require_finite(y, what)
        bad = np.flatnonzero((y < 0) | (y > 1))
        if len(bad):
            raise DataError(f"{what} has {_num(y[bad[0]])} at row {bad[0]}; {_capacity_words(program, 2)} takes "
                            "labels 0 and 1 (or probabilities between)")
        return y.astype(dtype, copy=False)
    if y.ndim == 1 and width == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != width:
        want = (f"class numbers [N] or rows of {width} probabilities [N, {width}]" if kind == "class"
                else f"[N, {width}]" + (" or [N]" if width == 1 else ""))
        raise DataError(f"{what} has shape {shown}, but the model's output has width {width}; expected {want}")
    y = y if y.dtype == dtype else y.astype(dtype)
    _require_finite(y, what)
    if kind == "binary":
        bad = np.argwhere((y < 0) | (y > 1))
        if len(bad):
            r, c = bad[0]
            raise DataError(f"{what}[{r}, {c}] is {_num(y[r, c])}; {program.train.loss.name} takes labels "
                            "0 and 1 (or probabilities between)")
    return y


def _in_range(y: np.ndarray, capacity: int, words: str, what: str) -> np.ndarray:
    bad = np.flatnonzero((y < 0) | (y >= capacity))
    if len(bad):
        i = bad[0]
        more = len(bad) - 1
        raise DataError(f"labels must be in 0..{capacity - 1} {words}: {what} has label {_num(y[i])} at row {i}"
                        + (f" ({more} more out of range)" if more else ""))
    return y


def _listing(values) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _num(v) -> str:
    """A label as a user wrote it: 7, 1.5 (not np.int64(7))."""
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


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
