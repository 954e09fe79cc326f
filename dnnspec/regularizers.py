"""Weight penalties (L1, L2) and constraints (max-norm), applied to variables chosen by
scope pattern in the spec.

A regularizer adds ``penalty(w)`` to the loss and ``grad(w, g)`` into the gradient in place.
A constraint projects a variable in place after every update: ``apply(w)``.
"""

from __future__ import annotations

import numpy as np

from .registry import Registry

REGULARIZERS = Registry("regularizer")
CONSTRAINTS = Registry("constraint")


class Regularizer:
    def penalty(self, w: np.ndarray) -> float:
        raise NotImplementedError

    def grad(self, w: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError


class Constraint:
    def apply(self, w: np.ndarray) -> None:
        raise NotImplementedError
