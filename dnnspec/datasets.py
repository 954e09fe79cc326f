"""Data sources a spec can name in its ``data`` declaration.

A dataset entry is a class whose ``__init__`` parameters are the spec's options; ``load(base)``
reads files relative to ``base`` (the spec's folder) and returns `Splits`; ``signature()``
gives (n_features, n_classes) without any I/O when it is known statically (built-ins), so the
checker can catch a width mismatch before anything runs. Bad files raise `DataError` with a
message that names the file and what is wrong — never a bare NumPy traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .registry import Registry

DATASETS = Registry("dataset")

XY = tuple[np.ndarray, np.ndarray]


@dataclass
class Splits:
    """float32 features [N, F]; labels int64 [N] for classes, float32 [N, K] otherwise."""

    train: XY
    val: XY | None = None
    test: XY | None = None
    n_classes: int | None = None  # None for regression targets

    @property
    def n_features(self) -> int:
        return self.train[0].shape[1]


class Dataset:
    """Base of every data source."""

    def load(self, base: Path) -> Splits:
        raise NotImplementedError

    def signature(self) -> tuple[int, int | None] | None:
        return None
