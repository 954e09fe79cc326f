"""Data sources a spec can name in its ``data`` declaration.

A dataset entry is a class whose ``__init__`` parameters are the spec's options; ``load(base)``
reads files relative to ``base`` (the working directory) and returns `Splits`; ``signature()``
gives (n_features, n_classes) without any I/O when it is known statically (built-ins), so the
checker can catch a width mismatch before anything runs. Bad files raise `DataError` with a
message that names the file and what is wrong — never a bare NumPy traceback.

Conventions shared by every file-based entry (`Options`, applied in one place, `finish`):

- ``validation``: 0 for none, a fraction in (0, 1), or a whole count >= 1 of examples held out
  from the END of the training set, before any shuffling (Keras ``validation_split``: the
  training part is the first ``floor(N * (1 - fraction))`` examples). Deterministic.
- ``classes="0,1,2"`` keeps only those labels (in train and test) and renumbers them 0..k-1 in
  the listed order; it runs first, so ``validation`` counts examples of the kept classes.
- ``train_limit`` keeps the first N training examples, after the validation set was taken, so
  a small-data run is still validated on the same held-out examples.
- ``flatten`` turns [N, 28, 28] into [N, 784]; features are float32, converted straight from the
  stored dtype (never via float64), then multiplied in place by ``scale``.
- Labels are int64 [N], ``n_classes`` = max label + 1 (or the number of ``classes``); with
  ``one_hot`` they become float32 one-hot rows [N, n_classes]. Regression targets are float32
  [N, K] with ``n_classes`` None.
- When ``n_classes`` is only the largest label + 1 (no declared count: not a named dataset,
  no ``classes``), `Splits.label_sources` keeps the labels as read, in file order, so a model
  whose output is narrower can tell stray labels (a few rows: the data's fault, reported by
  file and row, `Splits.label_census`) from a data set with more classes (the layer's fault).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError
from .registry import Float, Int, Refs, Registry, Shape

DATASETS = Registry("dataset")

XY = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class LabelSource:
    """Class labels as a file holds them (int64 [N], file order), to point at one row."""

    name: str  # the file (and array) the labels were read from
    y: np.ndarray
    lines: np.ndarray | None = None  # text files: the line each row was read from

    def row(self, i: int) -> str:
        if self.lines is not None:
            return f"row {i + 1} of {self.name} (line {int(self.lines[i])})"
        return f"item {i} of {self.name}"


@dataclass
class Splits:
    """float32 features [N, F]; labels int64 [N] for classes (float32 one-hot [N, K] with
    ``one_hot``), float32 [N, K] targets when ``n_classes`` is None (regression)."""

    train: XY
    val: XY | None = None
    test: XY | None = None
    n_classes: int | None = None  # None for regression targets
    # every training row's features before train_limit cut them (not validation, not test), for
    # unsupervised pretraining; None when train_limit cut nothing (then it is train's x)
    unlabeled: np.ndarray | None = None
    # set when n_classes is only the largest label + 1 (no declared class count): the labels as read
    label_sources: list[LabelSource] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return self.train[0].shape[1]

    def label_census(self, capacity: int) -> LabelCensus | None:
        """Whose fault labels beyond `capacity` classes (a model's output) are: None when they all
        fit, or when the class count is declared (a named data set, ``classes=``, a built-in:
        the data has that many classes, so the model is wrong).

        With a count inferred from the largest label, a label value >= `capacity` is a *stray*
        when it labels fewer rows than half the median in-range class (a mistake in a few rows,
        not a class of its own); a more common one is a class the model lacks."""
        if not self.label_sources or self.n_classes is None or self.n_classes <= capacity:
            return None
        counts = np.bincount(np.concatenate([s.y for s in self.label_sources]))
        inside = counts[:capacity][counts[:capacity] > 0]
        if not len(inside):
            return None
        floor = float(np.median(inside)) / 2
        beyond = [int(v) for v in np.flatnonzero(counts[capacity:]) + capacity]
        strays = [v for v in beyond if counts[v] < floor]
        classes = max([v + 1 for v in beyond if v not in strays], default=capacity)
        if not strays:
            return LabelCensus(classes, (), "", 0)
        rows = int(sum(counts[v] for v in strays))
        for source in self.label_sources:
            hit = np.flatnonzero(np.isin(source.y, strays))
            if len(hit):
                i = int(hit[0])
                return LabelCensus(classes, tuple(strays), f"{source.row(i)} has label {source.y[i]}", rows)
        raise AssertionError("a stray label without a row")  # pragma: no cover

    def stray_labels(self, capacity: int, what: str) -> str | None:
        """The DataError message when every label beyond `capacity` is a stray (the data's fault),
        else None. `what` says whose capacity it is ("for the 3 outputs of the last layer 'outputs'")."""
        census = self.label_census(capacity)
        if census is None or not census.strays or census.classes > capacity:
            return None
        more = census.rows - 1
        return (f"labels must be in 0..{capacity - 1} {what}: {census.first}"
                + (f" ({more} more row{'s' * (more > 1)} {'have' if more > 1 else 'has'} a label above "
                   f"{capacity - 1})" if more else "")
                + f"; fix the data, or if it really has {self.n_classes} classes, widen the last layer")


@dataclass(frozen=True)
class LabelCensus:
    """`Splits.label_census`: the classes the data has once stray labels are left out, the
    stray label values, the first row holding one ("row 17 of x.csv (line 18) has label 7"),
    and how many rows hold one."""

    classes: int
    strays: tuple[int, ...]
    first: str
    rows: int


class Dataset:
    """Base of every data source. File-based ones also take ``image=[h, w]`` (the shape of an
    example, channels last) and ``augment=[...]`` (dnnspec.augment): the checker lifts both into
    `Program.augment`; loading ignores them."""

    image: tuple[int, ...] = ()
    augment: tuple = ()

    def load(self, base: Path) -> Splits:
        raise NotImplementedError

    def signature(self) -> tuple[int, int | None] | None:
        return None


# ---------------------------------------------------------------- built-in (generated) data
@DATASETS.register("xor")
class Xor(Dataset):
    """The four XOR points, not linearly separable (Rumelhart, Hinton & Williams 1986)."""

    def load(self, base: Path) -> Splits:
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
        y = np.array([0, 1, 1, 0], dtype=np.int64)
        # The classic example evaluates on the very points it learns.
        return Splits(train=(x, y), test=(x.copy(), y.copy()), n_classes=2)

    def signature(self) -> tuple[int, int]:
        return 2, 2


@DATASETS.register("spirals", "spiral")
class Spirals(Dataset):
    """Interleaved noisy spiral arms in 2-D, one per class (CS231n; Lang & Witbrock 1988)."""

    # Each arm sweeps TURN radians as its radius grows from 0 to 1 (the CS231n value). Arms
    # start evenly spaced (2*pi*j/classes) so any number of classes interleaves cleanly; CS231n
    # starts arm j at 4j radians, which only works for 3 classes.
    TURN = 4.0

    def __init__(
        self,
        classes: Int(ge=2) = 3,
        samples: Int(ge=10) = 3000,
        noise: Float(ge=0) = 0.2,
        validation: Float(ge=0, lt=1) = 0.1,
        test: Float(ge=0, lt=1) = 0.2,
        seed: int = 0,
    ):
        problem = Spirals.validate(classes=classes, samples=samples, validation=validation, test=test)
        if problem:
            raise DataError(f"spirals: {problem}")
        self.classes, self.samples, self.noise = classes, samples, noise
        self.validation, self.test, self.seed = validation, test, seed

    @staticmethod
    def validate(classes=3, samples=3000, validation=0.1, test=0.2, **_) -> str | None:
        if validation + test >= 1:
            return f"validation + test must leave training examples, got {validation:g} + {test:g} >= 1"
        if samples < 5 * classes:
            return f"samples must be at least 5 per class ({5 * classes} for {classes} classes), got {samples}"
        return None

    def load(self, base: Path) -> Splits:
        rng = np.random.default_rng(self.seed)
        xs, ys = [], []
        for j in range(self.classes):
            n = self.samples // self.classes + (j < self.samples % self.classes)
            r = np.linspace(0.0, 1.0, n)
            t = 2 * np.pi * j / self.classes + self.TURN * r + self.noise * rng.standard_normal(n)
            xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
            ys.append(np.full(n, j, dtype=np.int64))
        order = rng.permutation(self.samples)
        x, y = np.concatenate(xs)[order], np.concatenate(ys)[order]
        n_test = round(self.samples * self.test)
        n_val = round(self.samples * self.validation)
        n_train = self.samples - n_val - n_test
        # Standardize with training statistics only, so val/test stay unseen.
        mean, std = x[:n_train].mean(axis=0), x[:n_train].std(axis=0)
        x = ((x - mean) / std).astype(np.float32)
        parts = np.split(np.arange(self.samples), [n_train, n_train + n_val])
        train, val, test = ((x[i], y[i]) if len(i) else None for i in parts)
        return Splits(train=train, val=val, test=test, n_classes=self.classes)

    def signature(self) -> tuple[int, int]:
        return 2, self.classes


# ---------------------------------------------------------------- the shared file options
@dataclass(frozen=True)
class Part:
    """Features and labels as read from a file, with the names its error messages use."""

    x: np.ndarray
    y: np.ndarray
    x_name: str
    y_name: str
    file: str = ""  # the file a row number refers to ("" : y_name names it)
    lines: np.ndarray | None = None  # text files: the line of each row


MAX_CLASSES = 1 << 16  # a larger "class number" is a mistake (targets, ids), not a class


@dataclass(frozen=True)
class Options:
    """The options every file-based entry shares; `finish` applies them in one place."""

    validation: float = 0
    scale: float = 1.0
    flatten: bool = True
    one_hot: bool = False
    train_limit: int = 0
    classes: str = ""

    def __post_init__(self):
        problem = Options.problem(validation=self.validation, classes=self.classes)
        if problem:
            raise DataError(problem)

    @staticmethod
    def problem(validation=0, classes="", **_) -> str | None:
        """A message if the options contradict each other (the checker shows it), else None."""
        if validation >= 1 and not float(validation).is_integer():
            return f"validation must be a fraction below 1 or a whole number of examples, got {validation:g}"
        try:
            parse_classes(classes)
        except ValueError as e:
            return str(e)
        return None

    def finish(self, train: Part, test: Part | None, n_classes: int | None = None, regression: bool = False) -> Splits:
        """Checks shapes and labels, then applies classes, validation, train_limit, flatten,
        float32 + scale and one_hot. ``n_classes`` is given by named datasets (MNIST: 10)."""
        parts = [p for p in (train, test) if p is not None]
        ys = [_check_part(p, regression) for p in parts]
        if test is not None and test.x.shape[1:] != train.x.shape[1:]:
            shapes = _shape(test.x.shape[1:]), _shape(train.x.shape[1:])
            raise DataError(f"{test.x_name}: examples of shape {shapes[0]}, but {shapes[1]} in {train.x_name}")
        keep = parse_classes(self.classes)
        if keep:
            ys, parts = _select_classes(keep, ys, parts)
            n_classes = len(keep)
        sources = []
        if regression:
            n_classes = None
        else:
            top = max(int(y.max()) for y in ys if len(y))
            if n_classes is None:
                n_classes = top + 1
                sources = [LabelSource(p.file or p.y_name, y, p.lines) for p, y in zip(parts, ys)]
            elif top >= n_classes:
                name = next(p.y_name for p, y in zip(parts, ys) if len(y) and y.max() == top)
                raise DataError(f"{name}: label {top} is out of range for {n_classes} classes")

        n = len(ys[0])
        cut = n - self._validation_count(n, train.x_name)
        limit = min(cut, self.train_limit) if self.train_limit else cut
        train_xy = self._split(parts[0], ys[0], slice(0, limit), n_classes)
        val_xy = self._split(parts[0], ys[0], slice(cut, n), n_classes) if cut < n else None
        test_xy = self._split(parts[1], ys[1], slice(None), n_classes) if test is not None else None
        unlabeled = self._features(parts[0], slice(0, cut)) if limit < cut else None
        return Splits(train=train_xy, val=val_xy, test=test_xy, n_classes=n_classes, unlabeled=unlabeled,
                      label_sources=sources)

    def _split(self, p: Part, y: np.ndarray, s: slice, n_classes: int | None) -> XY:
        y = y[s]
        if self.one_hot:
            y = np.eye(n_classes, dtype=np.float32)[y]
        return self._features(p, s), y

    def _validation_count(self, n: int, name: str) -> int:
        v = self.validation
        if v == 0:
            return 0
        # Keras validation_split: the training part is floor(N * (1 - fraction)).
        n_val = n - math.floor(n * (1.0 - v)) if v < 1 else int(v)
        if n_val >= n or n_val == 0:
            raise DataError(
                f"{name}: validation={v:g} leaves no {'training' if n_val else 'validation'} examples "
                f"out of the {n} in the training set"
            )
        return n_val

    def _features(self, p: Part, s: slice) -> np.ndarray:
        x = p.x[s]
        if x.ndim > 2:
            if not self.flatten:
                raise DataError(
                    f"{p.x_name} has shape {_shape(p.x.shape)}; a dense network needs [N, features]: set flatten=true"
                )
            x = x.reshape(len(x), -1)
        x = x.astype(np.float32)  # straight from the stored dtype: no float64 copy of the set
        if self.scale != 1.0:
            x *= float(self.scale)
        return x


def parse_classes(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2); "" -> (); ValueError with a readable message otherwise."""
    if not text.strip():
        return ()
    words = [w.strip() for w in text.split(",")]
    if not all(w.isdigit() for w in words):
        raise ValueError(f"classes must be a comma-separated list of label numbers like \"0,1,2\", got {text!r}")
    keep = tuple(int(w) for w in words)
    if len(set(keep)) != len(keep):
        raise ValueError(f"classes lists a label twice: {text!r}")
    return keep


def _check_part(p: Part, regression: bool) -> np.ndarray:
    """Rank and count checks; returns the labels as int64 [N] (float32 [N, K] for regression)."""
    x, y = p.x, p.y
    if x.ndim < 2:
        raise DataError(f"{p.x_name} has shape {_shape(x.shape)}; expected [N, features] or [N, height, width]")
    if len(x) != len(y):
        raise DataError(f"mismatched sample counts: {p.x_name} has {len(x)} examples, {p.y_name} has {len(y)}")
    if len(x) == 0:
        raise DataError(f"{p.x_name} has no examples")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{p.x_name} has dtype {x.dtype}; expected numbers")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{p.x_name} contains NaN or infinite values")
    if regression:
        return y.reshape(len(y), -1).astype(np.float32)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{p.y_name} has shape {_shape(y.shape)}; expected class numbers [N] (not one-hot rows)")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{p.y_name} has dtype {y.dtype}; expected integer class labels")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            raise DataError(f"{p.y_name}: labels must be whole numbers, item {bad[0]} is {y[bad[0]]!r}")
    bad = np.flatnonzero(y < 0)
    if len(bad):
        raise DataError(f"{p.y_name}: labels must be non-negative, item {bad[0]} is {y[bad[0]]}")
    if y.max() >= MAX_CLASSES:
        raise DataError(f"{p.y_name}: label {y.max():g} is too large for a class number (regression targets?)")
    return y.astype(np.int64)


def _select_classes(keep: tuple[int, ...], ys: list[np.ndarray], parts: list[Part]):
    """Keep only the listed labels and renumber them 0..k-1 in the listed order."""
    top = max(max(keep), *(int(y.max()) for y in ys))
    code = np.full(top + 1, -1, dtype=np.int64)
    code[list(keep)] = np.arange(len(keep))
    missing = [c for c in keep if not (ys[0] == c).any()]
    if missing:
        raise DataError(f"{parts[0].y_name}: classes lists {missing[0]} but no training example has that label")
    new_ys, new_parts = [], []
    for y, p in zip(ys, parts):
        mask = code[y] >= 0
        new_ys.append(code[y[mask]])
        new_parts.append(Part(p.x[mask], p.y, p.x_name, p.y_name))
    return new_ys, new_parts


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


# ---------------------------------------------------------------- reading files
def resolve(base: Path, path: str) -> Path:
    """A spec's path option, relative to the spec's folder unless absolute; normalized for messages."""
    p = Path(path).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else Path(base) / p))


def read_bytes(path: Path, param: str) -> bytes:
    """The whole file, or a DataError that says which option named it and how to change it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"data file not found: {path} (from the `{param}` option; fix it in the spec's data "
            f"declaration or override it with --set data.{param}=...)"
        ) from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a data file (the `{param}` option)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None


def read_npz(path: Path, param: str) -> tuple[Part, Part | None]:
    """Keras ``mnist.npz`` layout: x_train, y_train and optionally x_test, y_test."""
    data = read_bytes(path, param)
    if not data.startswith(b"PK\x03\x04"):  # an .npz is a zip archive of .npy files
        what = "a single .npy array" if data.startswith(b"\x93NUMPY") else "not a zip archive"
        raise DataError(f"{path}: not an .npz file ({what}); expected arrays x_train, y_train[, x_test, y_test]")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keys = list(z.files)
            missing = [k for k in ("x_train", "y_train") if k not in keys]
            if missing or (("x_test" in keys) != ("y_test" in keys)):
                need = missing or [k for k in ("x_test", "y_test") if k not in keys]
                raise DataError(
                    f"{path}: missing array{'s' * (len(need) > 1)} {', '.join(need)}; "
                    f"found: {', '.join(keys) or 'none'} (expected x_train, y_train[, x_test, y_test])"
                )
            a = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in keys}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: damaged or unreadable .npz file ({e})") from None
    del data
    train = Part(a["x_train"], a["y_train"], f"{path}: x_train", f"{path}: y_train")
    test = Part(a["x_test"], a["y_test"], f"{path}: x_test", f"{path}: y_test") if "x_test" in a else None
    return train, test


# IDX type byte -> big-endian dtype (LeCun's MNIST format: magic = 0, 0, type, ndim).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, param: str, labels: bool) -> np.ndarray:
    """One IDX file (images 0x00000803, labels 0x00000801), gzipped or raw (told by its magic bytes)."""
    data = read_bytes(path, param)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: damaged gzip file ({e})") from None
    expect = "0x00000801 (labels)" if labels else "0x00000803 (images)"
    if len(data) < 4 or data[0] or data[1] or data[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an IDX file: magic number 0x{data[:4].hex():0>8}, expected {expect}")
    ndim = data[3]
    if (ndim == 1) != labels:
        raise DataError(
            f"{path}: wrong rank: an IDX file of {ndim} dimension{'s' * (ndim != 1)} "
            f"(magic 0x{data[:4].hex()}), expected {expect}"
        )
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataError(f"{path}: truncated IDX file: the header needs {head} bytes, the file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:head])
    dtype = np.dtype(IDX_TYPES[data[2]])
    count = math.prod(dims)
    need, have = count * dtype.itemsize, len(data) - head
    if have != need:
        raise DataError(
            f"{path}: {'truncated' if have < need else 'damaged'} IDX file: the header says "
            f"{' x '.join(map(str, dims))} values ({need} bytes), the file has {have} bytes of data"
        )
    return np.frombuffer(data, dtype, count=count, offset=head).reshape(dims)


def read_csv(path: Path, param: str, label: str, header: bool, delimiter: str, regression: bool) -> Part:
    """Numeric CSV: the ``label`` column(s) are the targets, every other column a feature."""
    try:
        text = read_bytes(path, param).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    names = [n.strip() for n in next(reader, [])] if header else None
    rows, lines, width = [], [], len(names) if names else None
    for row in reader:
        if not row or all(not c.strip() for c in row):
            continue  # blank line
        line = reader.line_num
        if width is None:
            width = len(row)
        if len(row) != width:
            raise DataError(f"{path}: line {line} has {len(row)} columns, expected {width}")
        try:
            values = [float(c) for c in row]
        except ValueError:
            col = next(i for i, c in enumerate(row) if not _is_number(c))
            raise DataError(f"{path}: line {line}, column {col + 1}: {row[col]!r} is not a number") from None
        if not all(map(math.isfinite, values)):
            col = next(i for i, v in enumerate(values) if not math.isfinite(v))
            raise DataError(f"{path}: line {line}, column {col + 1}: {row[col]!r} is not a finite number")
        rows.append(values)
        lines.append(line)
    if not rows:
        raise DataError(f"{path}: no data rows")
    cols = _label_columns(path, label, names, width, regression)
    table = np.array(rows, dtype=np.float64)
    features = [i for i in range(width) if i not in cols]
    if not features:
        raise DataError(f"{path}: no feature columns left besides the label column")
    y = table[:, cols] if regression else table[:, cols[0]]
    where = f"{path}: column {label!r}"
    return Part(table[:, features], y, f"{path}: features", where, str(path), np.array(lines))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _label_columns(path: Path, label: str, names: list[str] | None, width: int, regression: bool) -> list[int]:
    """Column numbers for ``label``: header names, or indexes like "0" and "-1" (from the end)."""
    cols = []
    for word in (w.strip() for w in label.split(",")):
        if names is not None and word in names:
            cols.append(names.index(word))
        elif word.lstrip("-").isdigit() and -width <= int(word) < width:
            cols.append(int(word) % width)
        else:
            found = f"; columns: {', '.join(names)}" if names else f" (the file has {width} columns, no header)"
            raise DataError(f"{path}: no label column {word!r}{found}")
    if not regression and len(cols) != 1:
        raise DataError(f"{path}: a classification label is one column, got {label!r} (regression=true for several)")
    return cols


# ---------------------------------------------------------------- file-based entries
class FileDataset(Dataset):
    """A data source read from files; the shared `Options` turn what was read into `Splits`."""

    options: Options
    n_classes: int | None = None  # fixed by named datasets (MNIST: 10); else inferred from labels

    @staticmethod
    def validate(**kwargs) -> str | None:
        return Options.problem(**kwargs)

    def finish(self, train: Part, test: Part | None, where: object, regression: bool = False) -> Splits:
        """Applies the options, then checks the result against the static `signature`."""
        splits = self.options.finish(train, test, self.n_classes, regression)
        sig = self.signature()
        if sig is not None and (splits.n_features, splits.n_classes) != sig:
            raise DataError(
                f"{where}: expected {sig[0]} features and {sig[1]} classes for {self.registered_name}, "
                f"found {splits.n_features} and {splits.n_classes}"
            )
        return splits


@DATASETS.register("npz")
class Npz(FileDataset):
    """Arrays x_train, y_train[, x_test, y_test] in a NumPy .npz (the Keras mnist.npz layout)."""

    def __init__(
        self,
        path: str,
        validation: Float(ge=0) = 0,
        scale: float = 1.0,
        flatten: bool = True,
        one_hot: bool = False,
        train_limit: Int(ge=0) = 0,
        classes: str = "",
        image: Shape() = (),
        augment: Refs("augmentation") = (),
    ):
        self.path, self.image, self.augment = path, tuple(image), tuple(augment)
        self.options = Options(validation, scale, flatten, one_hot, train_limit, classes)

    def load(self, base: Path) -> Splits:
        path = resolve(base, self.path)
        return self.finish(*read_npz(path, "path"), where=path)


@DATASETS.register("mnist")
class Mnist(Npz):
    """MNIST digits: npz with scale=1/255 and 5000 validation examples (LeCun et al. 1998)."""

    n_classes = 10

    def __init__(
        self,
        path: str = "../shared/data/mnist.npz",
        validation: Float(ge=0) = 5000,
        scale: float = 1 / 255,
        flatten: bool = True,
        one_hot: bool = False,
        train_limit: Int(ge=0) = 0,
        classes: str = "",
        image: Shape() = (28, 28),
        augment: Refs("augmentation") = (),
    ):
        super().__init__(path, validation, scale, flatten, one_hot, train_limit, classes, image, augment)

    def signature(self) -> tuple[int, int] | None:
        return _digits_signature(self.options)


@DATASETS.register("idx")
class Idx(FileDataset):
    """MNIST-style IDX files (images 0x00000803, labels 0x00000801), raw or gzipped."""

    def __init__(
        self,
        images: str,
        labels: str,
        test_images: str = "",
        test_labels: str = "",
        validation: Float(ge=0) = 0,
        scale: float = 1.0,
        flatten: bool = True,
        one_hot: bool = False,
        train_limit: Int(ge=0) = 0,
        classes: str = "",
        image: Shape() = (),
        augment: Refs("augmentation") = (),
    ):
        problem = Idx.validate(test_images=test_images, test_labels=test_labels)
        if problem:
            raise DataError(f"idx {images}: {problem}")
        self.files = {"images": images, "labels": labels, "test_images": test_images, "test_labels": test_labels}
        self.image, self.augment = tuple(image), tuple(augment)
        self.options = Options(validation, scale, flatten, one_hot, train_limit, classes)

    @staticmethod
    def validate(test_images="", test_labels="", **kwargs) -> str | None:
        if bool(test_images) != bool(test_labels):
            return "give both test_images and test_labels, or neither"
        return Options.problem(**kwargs)

    def load(self, base: Path) -> Splits:
        paths = {k: resolve(base, v) for k, v in self.files.items() if v}
        return self.finish(*read_idx_pairs(paths), where=paths["images"])


@DATASETS.register("fashion_mnist")
class FashionMnist(FileDataset):
    """Fashion-MNIST IDX files under root, scale=1/255, 5000 validation examples (Xiao et al. 2017)."""

    # The standard names, as Debian's dataset-fashion-mnist installs them (.gz), or unpacked.
    NAMES = {
        "images": "train-images-idx3-ubyte",
        "labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    n_classes = 10

    def __init__(
        self,
        root: str = "/usr/share/datasets/fashion-mnist",
        validation: Float(ge=0) = 5000,
        scale: float = 1 / 255,
        flatten: bool = True,
        one_hot: bool = False,
        train_limit: Int(ge=0) = 0,
        classes: str = "",
        image: Shape() = (28, 28),
        augment: Refs("augmentation") = (),
    ):
        self.root, self.image, self.augment = root, tuple(image), tuple(augment)
        self.options = Options(validation, scale, flatten, one_hot, train_limit, classes)

    def load(self, base: Path) -> Splits:
        root = resolve(base, self.root)
        paths = {}
        for key, name in self.NAMES.items():
            found = [root / f for f in (name + ".gz", name) if (root / f).is_file()]
            if not found:
                raise DataError(
                    f"Fashion-MNIST file not found: {root / name}[.gz] (Debian's dataset-fashion-mnist "
                    f"package installs the files in /usr/share/datasets/fashion-mnist; another folder "
                    f"can be given with the `root` option or --set data.root=...)"
                )
            paths[key] = found[0]
        return self.finish(*read_idx_pairs(paths), where=root)

    def signature(self) -> tuple[int, int] | None:
        return _digits_signature(self.options)


def read_idx_pairs(paths: dict[str, Path]) -> tuple[Part, Part | None]:
    """Training images+labels and, when given, test images+labels; counts are checked in `finish`."""

    def part(images: str, labels: str) -> Part:
        x = read_idx(paths[images], images, labels=False)
        y = read_idx(paths[labels], labels, labels=True)
        return Part(x, y, str(paths[images]), str(paths[labels]))

    return part("images", "labels"), part("test_images", "test_labels") if "test_images" in paths else None


def _digits_signature(o: Options) -> tuple[int, int] | None:
    """28x28 images of 10 classes (or of the chosen ones), once flattened."""
    return (784, len(parse_classes(o.classes)) or 10) if o.flatten else None


@DATASETS.register("csv")
class Csv(FileDataset):
    """Numeric CSV, one example per row; `label` names the target column (or its index)."""

    def __init__(
        self,
        path: str,
        label: str = "label",
        header: bool = True,
        delimiter: str = ",",
        test: str = "",
        validation: Float(ge=0) = 0,
        scale: float = 1.0,
        one_hot: bool = False,
        train_limit: Int(ge=0) = 0,
        classes: str = "",
        regression: bool = False,
        image: Shape() = (),
        augment: Refs("augmentation") = (),
    ):
        problem = Csv.validate(delimiter=delimiter, regression=regression, one_hot=one_hot, classes=classes)
        if problem:
            raise DataError(f"csv {path}: {problem}")
        self.path, self.label, self.header = path, label, header
        self.delimiter, self.test, self.regression = delimiter, test, regression
        self.image, self.augment = tuple(image), tuple(augment)
        self.options = Options(validation, scale, True, one_hot, train_limit, classes)

    @staticmethod
    def validate(delimiter=",", regression=False, one_hot=False, classes="", **kwargs) -> str | None:
        if len(delimiter) != 1:
            return f"delimiter must be one character, got {delimiter!r}"
        if regression and (one_hot or classes):
            return "one_hot and classes are for class labels, not with regression=true"
        return Options.problem(classes=classes, **kwargs)

    def load(self, base: Path) -> Splits:
        def read(path: str, param: str) -> Part:
            return read_csv(resolve(base, path), param, self.label, self.header, self.delimiter, self.regression)

        train = read(self.path, "path")
        test = read(self.test, "test") if self.test else None
        return self.finish(train, test, where=train.x_name, regression=self.regression)
