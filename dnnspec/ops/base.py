"""The op protocol: one small class per step of a plan, forward and backward side by side.

An op never allocates in its hot path. The plan calls, in order:

1. ``out_width(n_in)`` and ``variables(n_in)`` (shape inference, variable declaration);
2. ``bind(vars, grads)`` with arrays it owns (views into flat buffers);
3. ``allocate(batch, n_in, dtype)`` once per maximum batch size;
4. ``forward(x, training)`` / ``backward(dy, need_dx)`` per batch; ``x`` may have fewer rows
   than ``batch`` (the last batch), so ops slice their buffers with ``[:len(x)]``.

``forward`` keeps what ``backward`` needs on ``self``. ``backward`` *overwrites* (never
accumulates into) ``self.grads[...]`` and returns dL/dx, or None when ``need_dx`` is false
(the lowest trainable op does not need it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..pool import rows
from ..registry import Registry

LAYERS = Registry("layer")
ACTIVATIONS = Registry("activation")


@dataclass(frozen=True)
class Var:
    """A variable an op declares: local name, shape, initializer, trainable flag."""

    shape: tuple[int, ...]
    init: Any  # an initializer instance (callable(rng, shape, dtype) -> ndarray)
    trainable: bool = True
    role: str = "weight"  # "kernel", "bias", "gamma", "beta", "moving_mean", ... for targeting


class Op:
    """Base of every plan step. Subclasses override what they need."""

    name: str = ""  # scoped name, set by the plan (e.g. "dnn/hidden1")
    random: ClassVar[bool] = False  # draws random numbers in training (dropout, noise)
    rng: np.random.Generator | None = None  # set by the plan when `random`
    needs_grads: bool = True  # False for a frozen op: backward may skip its weight gradients

    def out_width(self, n_in: int) -> int:
        return n_in

    def variables(self, n_in: int) -> dict[str, Var]:
        return {}

    def bind(self, vars: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.vars, self.grads = vars, grads

    def allocate(self, batch: int, n_in: int, dtype=np.float32) -> None:
        self.dtype = np.dtype(dtype)
        n_out = self.out_width(n_in)
        self._y = np.empty((batch, n_out), dtype)
        self._dx = np.empty((batch, n_in), dtype)
        self._ones = np.ones(batch, dtype)

    def colsum(self, a: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Sum over the batch (rows) as ones @ a: a BLAS call, about twice as fast as a.sum(0)."""
        return np.matmul(self._ones[: len(a)], a, out=out)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        raise NotImplementedError

    def penalty(self) -> float:
        """A term this op adds to the loss for its last forward pass (activity regularization)."""
        return 0.0

    def describe(self) -> str:
        """One line for `dnnspec plan`."""
        return type(self).registered_name


class Activation(Op):
    """An element-wise activation: implement `f` and `df`; forward/backward come for free.

    ``f(x, out)`` writes f(x) into out. ``df(x, y, dy, out)`` writes dy * f'(x) into out,
    given the input x and the output y = f(x) (use whichever is cheaper). Both run over row
    blocks side by side on the element-wise pool (`dnnspec.pool.rows`), every pass over a block
    before the next block, so they must be row-wise (element-wise, or per row as softmax).
    """

    def f(self, x: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def df(self, x: np.ndarray, y: np.ndarray, dy: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self.x, self.y = x, self._y[: len(x)]
        self.training = training
        rows(self.f, x, self.y)
        return self.y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        dx = self._dx[: len(dy)]
        rows(self.df, self.x, self.y, dy, dx)
        return dx

    def describe(self) -> str:
        return type(self).registered_name
