"""Losses over the network's last output (logits), mean over the batch.

Conventions: the classification losses work from logits and stay finite for logits of any
size. softmax_cross_entropy is the mean over the batch of each example's loss (torch and
Keras agree); the element-wise losses (sigmoid_cross_entropy, mse, mae, huber) are the mean
over all N*K elements (torch ``reduction='mean'``, equal to Keras' mean over the last axis
then over the batch).

``forward(z, y)`` returns the mean loss (a Python float) and keeps what ``backward`` needs;
``backward()`` returns dL/dz in a preallocated buffer. ``predict(z)`` maps logits to outputs
(probabilities, or the values themselves for regression); ``correct(z, y)`` counts right
answers for accuracy, or is None when accuracy means nothing (regression).
"""

from typing import ClassVar

import numpy as np

from .pool import rows
from .registry import Float, Registry

LOSSES = Registry("loss")


class Loss:
    """Base of every loss."""

    labels: ClassVar[str] = "class"  # "class" (int index or one-hot), "binary", "real"

    def out_width(self, n_classes: int | None, label_width: int | None) -> int | None:
        """The output width this loss needs for the data, or None if any width works."""
        return None

    def forward(self, z: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def predict(self, z: np.ndarray) -> np.ndarray:
        return z

    def correct(self, z: np.ndarray, y: np.ndarray) -> int | None:
        return None

    def _buffer(self, name: str, like: np.ndarray) -> np.ndarray:
        """A buffer shaped and typed like ``like``, kept between calls (grown, never shrunk)."""
        bufs = self.__dict__.setdefault("_buffers", {})
        buf = bufs.get(name)
        if buf is None or buf.dtype != like.dtype or buf.shape[1:] != like.shape[1:] or len(buf) < len(like):
            buf = bufs[name] = np.empty(like.shape, like.dtype)
        return buf[: len(like)]


def _columns(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Labels of shape [N] seen as [N, 1] when the output has one column."""
    return y.reshape(len(y), 1) if y.ndim == 1 and z.shape[1] == 1 else y


# ---------------------------------------------------------------- classification
@LOSSES.register("softmax_cross_entropy", "categorical_cross_entropy", "cross_entropy")
class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits) against class indices or probability rows, mean over the batch."""

    # Targets t = (1-eps)*onehot + eps/K with eps = label_smoothing (torch and Keras).
    # loss_i = logsumexp(z_i) - sum_k t_ik z_ik, computed on z - max(z) so it never overflows.

    def __init__(self, label_smoothing: Float(ge=0, lt=1) = 0.0):
        self.label_smoothing = label_smoothing

    def out_width(self, n_classes, label_width):
        return n_classes if n_classes is not None else label_width

    # Every pass is per row, so rows of the batch run in blocks side by side (many classes);
    # only the two sums over the batch, at the end, see the whole batch.
    def forward(self, z, y):
        p = self._p = self._buffer("p", z)
        c, ts = self._buffer("c", z[:, :1]), self._buffer("ts", z[:, 0])
        rows(self._forward_rows, z, y, p, c, ts, self._buffer("g", z))
        self._y = y
        return float(c.sum() - ts.sum()) / len(z)

    def _forward_rows(self, z, y, p, c, ts, t):
        """A row block: p = softmax(z), c = logsumexp(s), ts = sum_k t_k s_k (s = z - max z)."""
        eps = self.label_smoothing
        np.max(z, axis=1, keepdims=True, out=c)
        np.subtract(z, c, out=p)  # shifted logits s
        if y.ndim == 1:  # class indices
            np.multiply(p[np.arange(len(p)), y], 1.0 - eps, out=ts)
        else:  # one-hot or probability rows
            np.multiply(p, y, out=t)
            np.multiply(t.sum(axis=1), 1.0 - eps, out=ts)
        if eps:
            ts += p.mean(axis=1) * eps
        np.exp(p, out=p)
        np.sum(p, axis=1, keepdims=True, out=c)
        p /= c  # softmax, kept for backward
        np.log(c, out=c)  # logsumexp(s)

    def backward(self):
        g = self._buffer("g", self._p)
        self._inv_n = 1.0 / len(g)
        rows(self._backward_rows, g, self._p, self._y)
        return g

    def _backward_rows(self, g, p, y):
        # the fused softmax-CE gradient: (softmax - t)/N, never through log(softmax)
        eps = self.label_smoothing
        if y.ndim == 1:
            np.copyto(g, p)
            g[np.arange(len(g)), y] -= 1.0 - eps
        else:
            np.multiply(y, eps - 1.0, out=g)
            g += p
        if eps:
            g -= eps / p.shape[1]
        g *= self._inv_n

    def predict(self, z):
        e = z - z.max(axis=1, keepdims=True)
        np.exp(e, out=e)
        e /= e.sum(axis=1, keepdims=True)
        return e

    def correct(self, z, y):
        label = y if y.ndim == 1 else y.argmax(axis=1)
        return int(np.count_nonzero(z.argmax(axis=1) == label))


@LOSSES.register("sigmoid_cross_entropy", "binary_cross_entropy")
class SigmoidCrossEntropy(Loss):
    """Binary cross-entropy of sigmoid(logits) against 0/1 labels; several columns for multi-label."""

    # max(z,0) - z*y + log1p(e^-|z|): exact, and finite for any z.
    labels = "binary"

    def __init__(self):
        pass

    def out_width(self, n_classes, label_width):
        return label_width if label_width and label_width > 1 else 1

    def forward(self, z, y):
        y = _columns(y, z)
        e, t = self._buffer("e", z), self._buffer("g", z)
        np.abs(z, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)  # e^-|z|, kept for backward
        np.log1p(e, out=t)
        total = float(t.sum())
        np.maximum(z, 0.0, out=t)
        total += float(t.sum())
        np.multiply(z, y, out=t)
        total -= float(t.sum())
        self._z, self._y, self._e = z, y, e
        return total / z.size

    def backward(self):
        # (sigmoid(z) - y)/(N*K), sigmoid(z) = e^min(z,0) / (1 + e^-|z|)
        z, e = self._z, self._e
        g = self._buffer("g", z)
        np.minimum(z, 0.0, out=g)
        np.exp(g, out=g)
        e += 1.0
        g /= e
        g -= self._y
        g *= 1.0 / z.size
        return g

    def predict(self, z):
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0, e).astype(z.dtype) / (1.0 + e)

    def correct(self, z, y):
        """Right answers per element: per example for one column, per label for multi-label."""
        return int(np.count_nonzero((z > 0) == (_columns(y, z) > 0.5)))


# ---------------------------------------------------------------- regression
class _Regression(Loss):
    """Element-wise losses of d = z - y over real targets [N, K] (or [N] for K = 1)."""

    labels = "real"

    def out_width(self, n_classes, label_width):
        return label_width

    def _diff(self, z, y):
        d = self._d = self._buffer("d", z)
        np.subtract(z, _columns(y, z), out=d)
        return d


@LOSSES.register("mse", "mean_squared_error")
class MSE(_Regression):
    """Mean squared error, mean over all elements."""

    def __init__(self):
        pass

    def forward(self, z, y):
        d = self._diff(z, y).reshape(-1)
        return float(np.dot(d, d)) / d.size

    def backward(self):
        return np.multiply(self._d, 2.0 / self._d.size, out=self._buffer("g", self._d))


@LOSSES.register("mae", "mean_absolute_error")
class MAE(_Regression):
    """Mean absolute error, mean over all elements; its gradient at d = 0 is 0."""

    def __init__(self):
        pass

    def forward(self, z, y):
        d = self._diff(z, y)
        return float(np.abs(d, out=self._buffer("g", d)).sum()) / d.size

    def backward(self):
        g = np.sign(self._d, out=self._buffer("g", self._d))
        g *= 1.0 / g.size
        return g


@LOSSES.register("huber")
class Huber(_Regression):
    """Huber loss: d²/2 where |d| <= delta, else delta*(|d| - delta/2) (Huber 1964); mean over all elements."""

    def __init__(self, delta: Float(gt=0) = 1.0):
        self.delta = delta

    def forward(self, z, y):
        # with c = min(|d|, delta): c²/2 + delta*(|d| - c) covers both branches
        d = self._diff(z, y)
        a, c = self._buffer("a", d), self._buffer("g", d)
        np.abs(d, out=a)
        np.minimum(a, self.delta, out=c)
        a -= c
        total = self.delta * float(a.sum())
        total += 0.5 * float(np.dot(c.reshape(-1), c.reshape(-1)))
        return total / d.size

    def backward(self):
        g = np.clip(self._d, -self.delta, self.delta, out=self._buffer("g", self._d))
        g *= 1.0 / g.size
        return g


class Reconstruction(Loss):
    """A loss whose target is the input itself (`loss ... target=input`: an autoencoder): the
    same values and gradients as the wrapped loss, but no accuracy, which means nothing there."""

    labels = "real"

    def __init__(self, loss: Loss):
        self.inner = loss

    def forward(self, z, y):
        return self.inner.forward(z, y)

    def backward(self):
        return self.inner.backward()

    def predict(self, z):
        return self.inner.predict(z)
