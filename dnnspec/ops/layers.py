"""Layers: dense and its variants (maxout, dropconnect), batch norm, and the noise layers.

Each op declares its variables (``Var``; the plan initializes and binds them), preallocates
its buffers in ``allocate`` and writes with ``out=`` in ``forward``/``backward``. Random ops
draw from ``self.rng`` (set by the plan) into preallocated buffers of the op's dtype, in one
call (one stream, drawn in order). Element-wise passes over a batch run over row blocks on the
element-wise pool (``rows``), the passes that follow one another fused per block; reductions
over the batch (``colsum``) stay whole BLAS calls.
At inference the noise layers copy their input (an op's output is always its own buffer).
"""

from typing import ClassVar

import numpy as np

from ..pool import matmul, matmuls, rows
from ..registry import Float, Int, LayerName, Ref
from .activations import SELU_ALPHA, SELU_LAMBDA, _Fill
from .base import LAYERS, Op, Var

ONES, ZEROS = _Fill(1.0), _Fill(0.0)


def _keep_mask(rng: np.random.Generator, m: np.ndarray, rate: float) -> np.ndarray:
    """Inverted-dropout mask in place: 1/(1-rate) with probability 1-rate, else 0."""
    rng.random(out=m, dtype=m.dtype)
    return _keep(m, rate)


def _keep(m: np.ndarray, rate: float) -> np.ndarray:
    """Uniform draws in m -> the inverted-dropout mask, in place (element-wise: any row block)."""
    np.greater_equal(m, rate, out=m)
    m *= 1.0 / (1.0 - rate)
    return m


# ---------------------------------------------------------------- dense family
@LAYERS.register("dense")
class Dense(Op):
    """Fully connected: y = x @ kernel + bias, kernel of shape (n_in, units) as in Keras.

    ``tied="dnn/hidden1"`` makes a decoder that uses the transpose of that layer's kernel (and
    its own bias): the op declares no kernel; the plan binds the transposed view and a gradient
    buffer of its own, and adds that buffer into the shared kernel's gradient after the encoder's
    backward (which overwrites it), so the kernel's gradient is the sum of both uses."""

    # The checker turns `activation=` into a separate activation op after this one.
    takes_activation: ClassVar[bool] = True
    n_in: int | None = None
    tied: str = ""  # the layer whose kernel this one uses transposed ("": a kernel of its own)

    def __init__(self, units: Int(ge=1), init: Ref("initializer") = "auto",
                 bias_init: Ref("initializer") = "zeros", use_bias: bool = True, tied: LayerName() = ""):
        self.units, self.init, self.bias_init, self.use_bias = units, init, bias_init, use_bias
        self.tied = tied

    def columns(self) -> int:
        """Width of the kernel (maxout has k columns per unit)."""
        return self.units

    def out_width(self, n_in):
        return self.units

    def variables(self, n_in):
        self.n_in = n_in
        v = {} if self.tied else {"kernel": Var((n_in, self.columns()), self.init, True, "kernel")}
        if self.use_bias:
            v["bias"] = Var((self.columns(),), self.bias_init, True, "bias")
        return v

    def forward(self, x, training):
        self.x = x
        return self._affine(x, self.vars["kernel"], self._y[: len(x)])

    def backward(self, dy, need_dx=True):
        return self._affine_backward(dy, self.vars["kernel"], need_dx)

    def _affine(self, x, kernel, out):
        matmul(x, kernel, out)
        if self.use_bias:
            rows(self._add_bias, out)
        return out

    def _add_bias(self, out):
        out += self.vars["bias"]

    def _affine_backward(self, dz, kernel, need_dx):
        dx = self._dx[: len(dz)] if need_dx else None
        products = [(self.x.T, dz, self.grads["kernel"])] if self.needs_grads else []
        if need_dx:  # a frozen layer above a trainable one only passes dx through
            products.append((dz, kernel.T, dx))
        matmuls(*products)  # independent GEMMs: one run of blocks on the pool where GEMMs are split
        if self.needs_grads and self.use_bias:
            self.colsum(dz, self.grads["bias"])
        return dx

    def describe(self):
        text = f"{self.registered_name} {self.n_in if self.n_in is not None else '?'}->{self.units}"
        text += f" (kernel: {self.tied}/kernel transposed)" if self.tied else ""
        return text if self.use_bias else text + " (no bias)"


@LAYERS.register("maxout")
class Maxout(Dense):
    """Max over k affine pieces per unit (Goodfellow et al. 2013); kernel (n_in, units*k)."""

    # A dense layer of units*k columns, then a max: piece j of unit i is column i*k + j
    # (TF's maxout layout: pieces of a unit are adjacent). The max is the nonlinearity.
    takes_activation = False

    def __init__(self, units: Int(ge=1), k: Int(ge=2) = 2, init: Ref("initializer") = "glorot_uniform",
                 bias_init: Ref("initializer") = "zeros", use_bias: bool = True):
        super().__init__(units, init, bias_init, use_bias)
        self.k = k

    def columns(self):
        return self.units * self.k

    def allocate(self, batch, n_in, dtype=np.float32):
        super().allocate(batch, n_in, dtype)
        self._z = np.empty((batch, self.columns()), dtype)  # pieces, then their gradient
        self._arg = np.empty((batch, self.units), np.intp)  # flat index of each winning piece
        self._won = np.empty((batch, self.units), bool)
        self._j = np.empty((batch, self.units), np.intp)
        self._base = np.arange(batch * self.units, dtype=np.intp).reshape(batch, self.units) * self.k

    def forward(self, x, training):
        n = len(x)
        self.x = x
        z = self._affine(x, self.vars["kernel"], self._z[:n]).reshape(n, self.units, self.k)
        y, arg, won, jw = self._y[:n], self._arg[:n], self._won[:n], self._j[:n]
        # k strided passes: much faster than max/argmax over a short last axis
        np.copyto(y, z[:, :, 0])
        arg.fill(0)
        for j in range(1, self.k):
            np.greater(z[:, :, j], y, out=won)  # strict: ties keep the first piece, as argmax
            np.multiply(won, j, out=jw)
            np.maximum(arg, jw, out=arg)  # arg < j, so this sets arg = j exactly where won
            np.maximum(y, z[:, :, j], out=y)
        arg += self._base[:n]
        return y

    def backward(self, dy, need_dx=True):
        dz = self._z[: len(dy)]  # the gradient flows to the winning piece only
        dz.fill(0.0)
        dz.reshape(-1)[self._arg[: len(dy)].reshape(-1)] = dy.reshape(-1)
        return self._affine_backward(dz, self.vars["kernel"], need_dx)

    def describe(self):
        return super().describe() + f" (k={self.k})"


@LAYERS.register("dropconnect", "drop_connect")
class DropConnect(Dense):
    """Dense layer whose weights are dropped with probability rate in training (Wan et al. 2013)."""

    # One kernel mask per batch (the paper draws one per example), inverted scaling 1/(1-rate)
    # so inference uses the full kernel (the paper's mean approximation, not its Gaussian
    # moment matching). The bias is not dropped.
    random = True

    def __init__(self, units: Int(ge=1), rate: Float(ge=0, lt=1) = 0.5, init: Ref("initializer") = "auto",
                 bias_init: Ref("initializer") = "zeros", use_bias: bool = True):
        super().__init__(units, init, bias_init, use_bias)
        self.rate = rate

    def allocate(self, batch, n_in, dtype=np.float32):
        super().allocate(batch, n_in, dtype)
        self._mask = np.empty((n_in, self.units), dtype)
        self._masked = np.empty((n_in, self.units), dtype)

    def forward(self, x, training):
        self.x, self.training = x, training
        self._kernel = self.vars["kernel"]
        if training:
            _keep_mask(self.rng, self._mask, self.rate)
            self._kernel = np.multiply(self._kernel, self._mask, out=self._masked)
        return self._affine(x, self._kernel, self._y[: len(x)])

    def backward(self, dy, need_dx=True):
        dx = self._affine_backward(dy, self._kernel, need_dx)
        if self.training:
            self.grads["kernel"] *= self._mask
        return dx

    def describe(self):
        return super().describe() + f" rate={self.rate:g}"


# ---------------------------------------------------------------- normalization
@LAYERS.register("batchnorm", "batch_norm", "batch_normalization")
class BatchNorm(Op):
    """Normalize each unit over the batch, then scale and shift (Ioffe & Szegedy 2015)."""

    # Keras conventions: moving = momentum*moving + (1-momentum)*batch_stat with the BIASED
    # batch variance, eps inside the sqrt. update_stats=False (set by the plan) keeps batch
    # statistics in training but leaves the moving ones untouched.
    update_stats: bool = True
    n_in: int | None = None

    def __init__(self, momentum: Float(ge=0, lt=1) = 0.99, epsilon: Float(gt=0) = 1e-3,
                 center: bool = True, scale: bool = True):
        self.momentum, self.epsilon, self.center, self.scale = momentum, epsilon, center, scale

    def variables(self, n_in):
        self.n_in = n_in
        v = {}
        if self.scale:
            v["gamma"] = Var((n_in,), ONES, True, "gamma")
        if self.center:
            v["beta"] = Var((n_in,), ZEROS, True, "beta")
        v["moving_mean"] = Var((n_in,), ZEROS, False, "moving_mean")
        v["moving_variance"] = Var((n_in,), ONES, False, "moving_variance")
        return v

    def allocate(self, batch, n_in, dtype=np.float32):
        super().allocate(batch, n_in, dtype)
        self._xhat = np.empty((batch, n_in), dtype)
        self._mu, self._var, self._inv, self._t, self._dg, self._db = (np.empty(n_in, dtype) for _ in range(6))

    def forward(self, x, training):
        n, v = len(x), self.vars
        xhat, y, inv = self._xhat[:n], self._y[:n], self._inv
        self.training = training
        if training:
            mu, var = self._mu, self._var
            self.colsum(x, mu)
            mu *= 1.0 / n
            rows(self._center, x, xhat, y)
            self.colsum(y, var)
            var *= 1.0 / n  # biased: divides by n
            if self.update_stats:
                self._update(v["moving_mean"], mu)
                self._update(v["moving_variance"], var)
        else:
            mu, var = v["moving_mean"], v["moving_variance"]
            np.subtract(x, mu, out=xhat)
        np.add(var, self.epsilon, out=inv)
        np.sqrt(inv, out=inv)
        np.divide(1.0, inv, out=inv)
        rows(self._normalize, xhat, y)
        return y

    def _center(self, x, xhat, y):  # a row block: xhat = x - mu, y = xhat² (summed next into var)
        np.subtract(x, self._mu, out=xhat)
        np.multiply(xhat, xhat, out=y)

    def _normalize(self, xhat, y):  # a row block: xhat /= sqrt(var + eps), y = gamma xhat + beta
        v = self.vars
        xhat *= self._inv
        if self.scale:
            np.multiply(xhat, v["gamma"], out=y)
        else:
            np.copyto(y, xhat)
        if self.center:
            y += v["beta"]

    def _update(self, moving, stat):
        moving *= self.momentum
        np.multiply(stat, 1.0 - self.momentum, out=self._t)
        moving += self._t

    def backward(self, dy, need_dx=True):
        n = len(dy)
        xhat, dx = self._xhat[:n], self._dx[:n]
        dg = self.grads["gamma"] if self.scale else self._dg
        db = self.grads["beta"] if self.center else self._db
        rows(np.multiply, dy, xhat, dx)
        self.colsum(dx, dg)
        self.colsum(dy, db)
        if not need_dx:
            return None
        self._sums = dg, db, -1.0 / n  # read by _dx_rows
        rows(self._dx_rows, xhat, dy, dx)
        return dx

    def _dx_rows(self, xhat, dy, dx):
        """A row block of dL/dx, all passes over the block in turn."""
        if self.training:  # dx = gamma/sqrt(var+eps) * (dy - mean(dy) - xhat*mean(dy*xhat))
            dg, db, minus_inv_n = self._sums
            np.multiply(xhat, dg, out=dx)
            dx += db
            dx *= minus_inv_n
            dx += dy
        else:  # moving statistics are constants: the derivative of an affine map
            np.copyto(dx, dy)
        dx *= self._inv
        if self.scale:
            dx *= self.vars["gamma"]

    def describe(self):
        width = self.n_in if self.n_in is not None else "?"
        return f"batchnorm {width} (momentum={self.momentum:g}, epsilon={self.epsilon:g})"


# ---------------------------------------------------------------- noise
class _Noise(Op):
    """Shared by the noise layers: identity (a copy) at inference and in its backward."""

    random: ClassVar[bool] = True
    _m: np.ndarray | None = None  # dy/dx of the last training forward, if not 1

    def allocate(self, batch, n_in, dtype=np.float32):
        super().allocate(batch, n_in, dtype)
        self._mask = np.empty((batch, n_in), dtype)

    def forward(self, x, training):
        self.training = training
        y = self._y[: len(x)]
        if training:
            return self.noise(x, y)
        np.copyto(y, x)
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        dx = self._dx[: len(dy)]
        if self.training and self._m is not None:
            rows(np.multiply, dy, self._m, dx)
            return dx
        np.copyto(dx, dy)
        return dx

    def noise(self, x, y):
        raise NotImplementedError


@LAYERS.register("dropout")
class Dropout(_Noise):
    """Inverted dropout (Srivastava et al. 2014): zero units with probability rate, scale the rest by 1/(1-rate)."""

    def __init__(self, rate: Float(ge=0, lt=1) = 0.5):
        self.rate = rate

    def noise(self, x, y):
        m = self._m = self._mask[: len(x)]  # dy/dx
        self.rng.random(out=m, dtype=m.dtype)
        rows(self._apply, m, x, y)
        return y

    def _apply(self, m, x, y):  # a row block: the mask from the draws, then y = x * mask
        _keep(m, self.rate)
        np.multiply(x, m, out=y)

    def describe(self):
        return f"dropout rate={self.rate:g}"


@LAYERS.register("alpha_dropout")
class AlphaDropout(_Noise):
    """Dropout for SELU networks (Klambauer et al. 2017): keeps mean 0 and variance 1 (alpha dropout)."""

    # Dropped units are set to alpha' = -lambda*alpha, SELU's saturation value, then the
    # affine map a*x + b restores mean 0 and variance 1 for inputs with mean 0, variance 1.
    ALPHA_P = -SELU_LAMBDA * SELU_ALPHA  # -1.7581

    def __init__(self, rate: Float(ge=0, lt=1) = 0.1):
        self.rate = rate
        q = 1.0 - rate  # keep probability, the paper's q
        self.a = (q + self.ALPHA_P**2 * q * (1.0 - q)) ** -0.5
        self.b = -self.a * (1.0 - q) * self.ALPHA_P

    def noise(self, x, y):
        # y = a*(x*keep + alpha'*(1-keep)) + b = M*(x - alpha') + a*alpha' + b with M = a*keep
        m = self._m = self._mask[: len(x)]
        self.rng.random(out=m, dtype=m.dtype)
        rows(self._apply, m, x, y)
        return y

    def _apply(self, m, x, y):  # a row block: M from the draws, then y
        np.greater_equal(m, self.rate, out=m)
        m *= self.a
        np.subtract(x, self.ALPHA_P, out=y)
        y *= m
        y += self.a * self.ALPHA_P + self.b

    def describe(self):
        return f"alpha_dropout rate={self.rate:g}"


@LAYERS.register("gaussian_noise")
class GaussianNoise(_Noise):
    """Adds zero-mean Gaussian noise of standard deviation stddev, in training only."""

    def __init__(self, stddev: Float(ge=0) = 0.1):
        self.stddev = stddev

    def noise(self, x, y):
        self.rng.standard_normal(out=y, dtype=y.dtype)
        rows(self._apply, y, x)
        return y

    def _apply(self, y, x):  # a row block: y = stddev * draws + x
        y *= self.stddev
        y += x

    def describe(self):
        return f"gaussian_noise stddev={self.stddev:g}"


@LAYERS.register("activity_regularization")
class ActivityRegularization(Op):
    """Adds (l1·Σ|x| + l2·Σx²)/batch to the loss in training, passing x through (Keras' layer)."""

    # Divided by the batch size like the mean loss it is added to (Keras' sum_over_batch_size).
    has_penalty: ClassVar[bool] = True

    def __init__(self, l1: Float(ge=0) = 0.0, l2: Float(ge=0) = 0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def forward(self, x, training):
        self.x, self.training = x, training
        y = self._y[: len(x)]
        np.copyto(y, x)
        return y

    def penalty(self):
        if not self.training:
            return 0.0
        x = self.x
        return (self.l1 * float(np.abs(x).sum()) + self.l2 * float(np.square(x).sum())) / len(x)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        dx = self._dx[: len(dy)]
        np.copyto(dx, dy)
        if self.training:
            scale = 1.0 / len(dy)
            if self.l2:
                dx += (2.0 * self.l2 * scale) * self.x
            if self.l1:
                dx += (self.l1 * scale) * np.sign(self.x)
        return dx

    def describe(self):
        return f"{self.registered_name} l1={self.l1:g} l2={self.l2:g}"
