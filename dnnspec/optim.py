"""Optimizers, sorted in order of increasing complexity.

An optimizer is hyper-parameters plus a pure in-place update rule over flat arrays:

    opt.update(p, g, state, lr, t)

``p`` parameters and ``g`` gradients (same shape, float32), ``state`` a dict of arrays named by
``slots`` (persistent, saved in checkpoints, start at zero) and ``scratch`` (temporary buffers,
contents undefined between calls), ``lr`` the learning rate of this update after any schedule
and multiplier (a Python float, never a NumPy float64 scalar, which would upcast the math),
``t`` the 1-based update count. The runtime keeps ``p``, ``g`` and each slot as flat buffers
over all trainable variables, so one call updates the whole network in a few large passes.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .registry import Registry

OPTIMIZERS = Registry("optimizer")


class Optimizer:
    """Base: declare ``slots``/``scratch`` and implement ``update``."""

    slots: ClassVar[tuple[str, ...]] = ()
    scratch: ClassVar[tuple[str, ...]] = ()
    lr: float

    def update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int) -> None:
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
