"""Weight penalties (L1, L2) and constraints (max-norm), applied to variables chosen by
scope pattern in the spec.

A regularizer adds ``penalty(w)`` to the loss and ``grad(w, g)`` into the gradient in place.
A constraint projects a variable in place after every update: ``apply(w)``.

Penalties follow Keras: ``l2(λ)`` adds λ·Σw² (no ½) and 2λw to the gradient, so it equals
torch's coupled ``weight_decay = 2λ`` on the same variables (and is not AdamW's decoupled decay).
"""


import numpy as np

from .registry import Float, Registry

REGULARIZERS = Registry("regularizer")
CONSTRAINTS = Registry("constraint")


class Regularizer:
    def penalty(self, w: np.ndarray) -> float:
        raise NotImplementedError

    def grad(self, w: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def buffer(self, w: np.ndarray) -> np.ndarray:
        """A scratch array shaped like w, allocated once per (shape, dtype) and reused."""
        bufs = self.__dict__.setdefault("_buffers", {})
        key = (w.shape, w.dtype.str)
        if key not in bufs:
            bufs[key] = np.empty_like(w)
        return bufs[key]


class Constraint:
    def apply(self, w: np.ndarray) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------- penalties
@REGULARIZERS.register("l1")
class L1(Regularizer):
    """λ·Σ|w|, gradient λ·sign(w) (sign(0) = 0, as Keras/TF) (Tibshirani 1996)."""

    def __init__(self, l: Float(ge=0) = 0.01):  # noqa: E741 (Keras' name)
        self.l = float(l)

    def penalty(self, w):
        # float64 accumulation of the float32 terms (buffered, no float64 copy of w)
        return self.l * float(np.abs(w, out=self.buffer(w)).sum(dtype=np.float64))

    def grad(self, w, g):
        s = self.buffer(w)
        np.sign(w, out=s)
        s *= self.l
        g += s


@REGULARIZERS.register("l2")
class L2(Regularizer):
    """λ·Σw², gradient 2λ·w (Keras convention: no ½; torch weight_decay = 2λ) (Hoerl & Kennard 1970)."""

    def __init__(self, l: Float(ge=0) = 0.01):  # noqa: E741
        self.l = float(l)

    def penalty(self, w):
        return self.l * float(np.square(w, out=self.buffer(w)).sum(dtype=np.float64))

    def grad(self, w, g):
        s = self.buffer(w)
        np.multiply(w, 2.0 * self.l, out=s)
        g += s


@REGULARIZERS.register("l1_l2", "elastic_net")
class L1L2(Regularizer):
    """l1·Σ|w| + l2·Σw² (Zou & Hastie 2005, elastic net; Keras L1L2)."""

    def __init__(self, l1: Float(ge=0) = 0.01, l2: Float(ge=0) = 0.01):
        self.l1, self.l2 = float(l1), float(l2)
        self._parts = (L1(self.l1), L2(self.l2))

    def penalty(self, w):
        return sum(r.penalty(w) for r in self._parts)

    def grad(self, w, g):
        for r in self._parts:
            r.grad(w, g)


# ---------------------------------------------------------------- constraints
def _norms(w: np.ndarray, axis: int) -> np.ndarray:
    """Euclidean norms of the vectors along `axis`, shaped to broadcast against w.

    A variable of fewer than two dimensions (a bias, a gamma) is one vector whatever `axis` says.
    """
    if w.ndim < 2:
        flat = w.reshape(-1)
        return np.sqrt(np.asarray(np.dot(flat, flat)))
    v = np.moveaxis(w, axis, 0)
    sq = np.einsum("i...,i...->...", v, v)  # sum of squares without a w-sized temporary
    return np.expand_dims(np.sqrt(sq, out=sq), axis)


@CONSTRAINTS.register("max_norm")
class MaxNorm(Constraint):
    """Rescale each vector along axis whose norm exceeds max_value to norm max_value (Srivastava et al. 2014)."""

    def __init__(self, max_value: Float(gt=0) = 2.0, axis: int = 0):
        # axis=0 on a (fan_in, fan_out) kernel: each unit's incoming weights (Keras' default).
        # Vectors within the bound are left exactly as they are (Keras also shrinks those by
        # norm/(norm + 1e-7)); over-long ones get norm max_value (Keras: max·norm/(norm+1e-7)).
        self.max_value, self.axis = float(max_value), int(axis)

    def apply(self, w):
        norms = _norms(w, self.axis)
        scale = np.divide(self.max_value, norms, out=np.ones_like(norms), where=norms > self.max_value)
        w *= scale


@CONSTRAINTS.register("non_neg")
class NonNeg(Constraint):
    """Negative entries set to zero (Keras NonNeg)."""

    def __init__(self):
        pass

    def apply(self, w):
        np.maximum(w, 0.0, out=w)


@CONSTRAINTS.register("unit_norm")
class UnitNorm(Constraint):
    """Each vector along axis rescaled to norm 1; all-zero vectors stay zero (Keras UnitNorm without its 1e-7)."""

    def __init__(self, axis: int = 0):
        self.axis = int(axis)

    def apply(self, w):
        norms = _norms(w, self.axis)
        scale = np.divide(1.0, norms, out=np.ones_like(norms), where=norms > 0)
        w *= scale
