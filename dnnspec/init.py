"""Weight initializers (Glorot & Bengio 2010, He et al. 2015, LeCun 1998, Saxe et al. 2014).

An initializer is called as ``init(rng, shape, dtype)`` and returns a new array. Fans follow
Keras: a kernel of shape (fan_in, fan_out); a 1-D variable has fan_in = fan_out = its length.
"""

from __future__ import annotations

import numpy as np

from .registry import Registry

INITIALIZERS = Registry("initializer")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a variable shape."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    return int(np.prod(shape[:-1])), shape[-1]


class Initializer:
    """Base: subclasses implement ``__call__(rng, shape, dtype) -> ndarray``."""

    def __call__(self, rng: np.random.Generator, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).registered_name
