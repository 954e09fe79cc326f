"""Activations: ``f`` and its derivative ``df`` side by side, one small class per entry.

Conventions (CONVENTIONS.md §4, pinned by tests/test_ops.py):

- derivatives at exactly 0 take the branch of a ``x > 0`` test (torch's): relu'(0) = 0,
  leaky_relu'(0) = prelu'(0) = rrelu'(0) = the slope, elu'(0) = alpha, selu'(0) = lambda*alpha;
- ``f(x, out)`` may be called with ``out is x`` (in place) for every entry; ``df`` needs
  ``out`` distinct from ``dy``;
- ``needs_x`` says whether ``df`` reads the input x (False: the output y suffices, so the plan
  may run ``f`` in place); ``init_family`` is the Glorot/He/LeCun family ``init=auto`` picks;
- scalars are Python floats, so float32 arrays stay float32 (no float64 temporaries).

Every entry that needs scratch memory gets it from ``tmp``: buffers preallocated by
``allocate`` and reused, grown only if ``f``/``df`` are called directly on a larger batch; one
set per thread, since row blocks of one call run side by side on the element-wise pool.
"""

import math
import threading
from typing import ClassVar

import numpy as np

from ..registry import Float
from .base import ACTIVATIONS, Activation, Var

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946


class _Fill:
    """Initializer filling a variable with one value (private: ops do not depend on init.py)."""

    def __init__(self, value: float):
        self.value = float(value)

    def __call__(self, rng, shape, dtype=np.float32) -> np.ndarray:
        return np.full(shape, self.value, dtype)

    def __repr__(self) -> str:
        return {0.0: "zeros", 1.0: "ones"}.get(self.value, f"constant(value={self.value:g})")


class _Act(Activation):
    """Shared plumbing: the ClassVars the plan reads, scratch buffers, describe()."""

    needs_x: ClassVar[bool] = False
    init_family: ClassVar[str] = "glorot"
    n_scratch: ClassVar[int] = 0  # (batch, n_in) scratch buffers to preallocate

    def allocate(self, batch: int, n_in: int, dtype=np.float32) -> None:
        super().allocate(batch, n_in, dtype)
        me = threading.get_ident()  # the pool's workers get theirs, block-sized, on first use
        self._scratch = {(me, i): np.empty((batch, n_in), dtype) for i in range(self.n_scratch)}

    def tmp(self, like: np.ndarray, i: int = 0) -> np.ndarray:
        """Scratch buffer ``i`` of the calling thread, shaped and typed like ``like``."""
        bufs = self.__dict__.setdefault("_scratch", {})
        key = (threading.get_ident(), i)
        buf = bufs.get(key)
        if buf is None or buf.dtype != like.dtype or buf.shape[1:] != like.shape[1:] or len(buf) < len(like):
            buf = bufs[key] = np.empty(like.shape, like.dtype)
        return buf[: len(like)]

    def describe(self) -> str:
        entry = ACTIVATIONS.get(self.registered_name)
        args = ", ".join(f"{p.name}={_spec_text(getattr(self, p.name))}" for p in entry.params)
        return f"{self.registered_name}({args})" if args else self.registered_name


def _spec_text(value) -> str:
    """A parameter value as a spec writes it: 0.125, true."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _sigmoid(x: np.ndarray, out: np.ndarray, t: np.ndarray) -> None:
    """out = 1/(1+e^-x) as e^min(x,0) / (1+e^-|x|): no overflow, full relative accuracy in
    both tails. ``out`` may alias ``x``; ``t`` is scratch."""
    np.abs(x, out=t)
    np.negative(t, out=t)
    np.exp(t, out=t)
    t += 1.0
    np.minimum(x, 0.0, out=out)
    np.exp(out, out=out)
    out /= t


# ---------------------------------------------------------------- saturating
@ACTIVATIONS.register("sigmoid", "logistic")
class Sigmoid(_Act):
    """Logistic 1/(1+e^-x), computed without overflow for large |x|."""

    n_scratch = 1

    def __init__(self):
        pass

    def f(self, x, out):
        _sigmoid(x, out, self.tmp(x))

    def df(self, x, y, dy, out):  # y(1-y)
        np.subtract(1.0, y, out=out)
        out *= y
        out *= dy


@ACTIVATIONS.register("tanh")
class Tanh(_Act):
    """Hyperbolic tangent."""

    def __init__(self):
        pass

    def f(self, x, out):
        np.tanh(x, out=out)

    def df(self, x, y, dy, out):  # 1 - y²
        np.multiply(y, y, out=out)
        np.subtract(1.0, out, out=out)
        out *= dy


@ACTIVATIONS.register("softmax")
class Softmax(_Act):
    """Row-wise e^x / sum(e^x), shifted by the row max so rows of ±1000 stay finite."""

    def __init__(self):
        pass

    def f(self, x, out):
        c = self.tmp(x[:, :1])  # one column: the row max, then the row sum
        np.max(x, axis=1, keepdims=True, out=c)
        np.subtract(x, c, out=out)
        np.exp(out, out=out)
        np.sum(out, axis=1, keepdims=True, out=c)
        out /= c

    def df(self, x, y, dy, out):  # s * (dy - sum(dy * s))
        c = self.tmp(y[:, :1])
        np.multiply(dy, y, out=out)
        np.sum(out, axis=1, keepdims=True, out=c)
        np.subtract(dy, c, out=out)
        out *= y


@ACTIVATIONS.register("softplus")
class Softplus(_Act):
    """log(1 + e^x) as max(x,0) + log1p(e^-|x|); no threshold (torch's x > 20 cut-off returns x)."""

    # The stable form is exact everywhere, so no threshold is needed: in float32 it equals
    # torch's thresholded output to rounding (x + e^-x rounds to x from x ≈ 17 on).
    n_scratch = 1

    def __init__(self):
        pass

    def f(self, x, out):
        t = self.tmp(x)
        np.abs(x, out=t)
        np.negative(t, out=t)
        np.exp(t, out=t)
        np.log1p(t, out=t)
        np.maximum(x, 0.0, out=out)
        out += t

    def df(self, x, y, dy, out):  # sigmoid(x) = 1 - e^-y, accurate in both tails via expm1
        np.negative(y, out=out)
        np.expm1(out, out=out)
        np.negative(out, out=out)
        out *= dy


# ---------------------------------------------------------------- rectifiers
@ACTIVATIONS.register("relu")
class ReLU(_Act):
    """max(x, 0) (Nair & Hinton 2010); derivative at 0 is 0."""

    init_family = "he"
    n_scratch = 1

    def __init__(self):
        pass

    def f(self, x, out):  # x * (x > 0): a float mask multiply is faster than np.maximum
        m = self.tmp(x)
        np.greater(x, 0.0, out=m)
        np.multiply(x, m, out=out)

    def df(self, x, y, dy, out):  # y > 0 exactly where x > 0
        np.greater(y, 0.0, out=out)
        out *= dy


@ACTIVATIONS.register("leaky_relu")
class LeakyReLU(_Act):
    """x if x > 0 else alpha*x (Maas et al. 2013); derivative at 0 is alpha (torch default 0.01)."""

    init_family = "he"
    n_scratch = 1

    def __init__(self, alpha: Float(ge=0) = 0.01):
        self.alpha = alpha

    def f(self, x, out):  # x * (alpha + (1 - alpha)(x > 0)); correct for alpha > 1 too
        m = self.tmp(x)
        np.greater(x, 0.0, out=m)
        m *= 1.0 - self.alpha
        m += self.alpha
        np.multiply(x, m, out=out)

    def df(self, x, y, dy, out):  # alpha >= 0, so y > 0 exactly where x > 0
        np.greater(y, 0.0, out=out)
        out *= 1.0 - self.alpha
        out += self.alpha
        out *= dy


@ACTIVATIONS.register("prelu")
class PReLU(_Act):
    """x if x > 0 else a*x with a learnable slope per unit, initialised to 0.25 (He et al. 2015)."""

    # Keras' layout (one slope per unit) with the paper's and torch's initial value 0.25.
    needs_x = True  # d/d alpha needs x, and a learnt slope may be negative
    init_family = "he"
    n_scratch = 1

    def __init__(self):
        pass

    def variables(self, n_in):
        return {"alpha": Var((n_in,), _Fill(0.25), True, "alpha")}

    def f(self, x, out):  # max(x,0) + alpha*min(x,0)
        t = self.tmp(x)
        np.minimum(x, 0.0, out=t)
        t *= self.vars["alpha"]
        np.maximum(x, 0.0, out=out)
        out += t

    def df(self, x, y, dy, out):  # 1 - n + n*alpha with n = (x <= 0)
        t = self.tmp(x)
        np.less_equal(x, 0.0, out=out)
        np.multiply(out, self.vars["alpha"], out=t)
        np.subtract(1.0, out, out=out)
        out += t
        out *= dy

    def backward(self, dy, need_dx=True):
        t = self.tmp(dy)  # d/d alpha_j = sum over the batch of dy * x where x <= 0
        np.minimum(self.x, 0.0, out=t)
        t *= dy
        t.sum(axis=0, out=self.grads["alpha"])
        return super().backward(dy, need_dx)


@ACTIVATIONS.register("rrelu")
class RReLU(_Act):
    """Randomized leaky ReLU: slope ~ U(lower, upper) in training, the mean at inference (Xu et al. 2015)."""

    random = True
    needs_x = True
    init_family = "he"
    n_scratch = 1

    def __init__(self, lower: Float(ge=0, le=1) = 1 / 8, upper: Float(ge=0, le=1) = 1 / 3):
        error = self.validate(lower=lower, upper=upper)
        if error:
            raise ValueError(error)
        self.lower, self.upper = lower, upper

    @staticmethod
    def validate(lower: float = 1 / 8, upper: float = 1 / 3, **_) -> str | None:
        if lower > upper:
            return f"lower must be <= upper, got lower={lower:g}, upper={upper:g}"
        return None

    def allocate(self, batch, n_in, dtype=np.float32):
        super().allocate(batch, n_in, dtype)
        self._g = np.empty((batch, n_in), dtype)

    def _factor(self, x, g, training):
        """g = dy/dx = 1 where x > 0, else the slope: 1 + (slope - 1)*(x <= 0)."""
        n = self.tmp(x)
        np.less_equal(x, 0.0, out=n)
        if training:
            self.rng.random(out=g, dtype=g.dtype)
            g *= self.upper - self.lower
            g += self.lower - 1.0
            g *= n
        else:
            np.multiply(n, (self.lower + self.upper) / 2 - 1.0, out=g)
        g += 1.0

    def forward(self, x, training):
        self.x, self.y, self.training = x, self._y[: len(x)], training
        self.g = self._g[: len(x)]
        self._factor(x, self.g, training)
        return np.multiply(x, self.g, out=self.y)

    def backward(self, dy, need_dx=True):
        return np.multiply(dy, self.g, out=self._dx[: len(dy)]) if need_dx else None

    # f/df are the deterministic inference form, for callers that bypass forward/backward.
    def f(self, x, out):
        g = self.tmp(x, 1)
        self._factor(x, g, training=False)
        np.multiply(x, g, out=out)

    def df(self, x, y, dy, out):
        self._factor(x, out, training=False)
        out *= dy


# ---------------------------------------------------------------- exponential linear
@ACTIVATIONS.register("elu")
class ELU(_Act):
    """x if x > 0 else alpha*(e^x - 1) (Clevert et al. 2015); derivative at 0 is alpha."""

    init_family = "he"
    n_scratch = 1
    scale: float = 1.0  # SELU's lambda; 1 for plain ELU

    def __init__(self, alpha: Float(gt=0) = 1.0):
        self.alpha = alpha

    def f(self, x, out):  # scale*(max(x,0) + alpha*expm1(min(x,0)))
        t = self.tmp(x)
        np.minimum(x, 0.0, out=t)
        np.expm1(t, out=t)
        t *= self.scale * self.alpha
        np.maximum(x, 0.0, out=out)
        if self.scale != 1.0:
            out *= self.scale
        out += t

    def df(self, x, y, dy, out):  # scale if y > 0 else y + scale*alpha (= scale*alpha*e^x)
        sa, t = self.scale * self.alpha, self.tmp(y)
        np.greater(y, 0.0, out=t)
        t *= self.scale - sa
        np.minimum(y, 0.0, out=out)
        out += sa
        out += t
        out *= dy


@ACTIVATIONS.register("selu")
class SELU(ELU):
    """lambda*elu(x, alpha) with the self-normalizing constants of Klambauer et al. 2017."""

    # A reduction of ELU: fixed alpha and an output scale lambda.
    init_family = "lecun"
    scale = SELU_LAMBDA

    def __init__(self):
        self.alpha = SELU_ALPHA


# ---------------------------------------------------------------- smooth gates
@ACTIVATIONS.register("swish", "silu")
class Swish(_Act):
    """x*sigmoid(x) (Ramachandran et al. 2017; SiLU, Elfwing et al. 2018)."""

    needs_x = True
    init_family = "he"
    n_scratch = 2

    def __init__(self):
        pass

    def f(self, x, out):
        s = self.tmp(x)
        _sigmoid(x, s, self.tmp(x, 1))
        np.multiply(x, s, out=out)

    def df(self, x, y, dy, out):  # s + y(1 - s)
        t = self.tmp(x)
        _sigmoid(x, out, t)
        np.subtract(1.0, out, out=t)
        t *= y
        out += t
        out *= dy


# Cephes ndtr.c (S. Moshier, public domain): erf(w) = w T(w²)/U(w²) for |w| < 1,
# erfc(w) = e^-w² P(w)/Q(w) for 1 <= w < 8; about 1e-16 relative in float64.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)  # monic
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)  # monic


def _poly(z, coefs, out, monic=False):
    """Horner: out = coefs[0] z^n + ... (with a leading 1 z^(n+1) when monic)."""
    if monic:
        np.add(z, coefs[0], out=out)
    else:
        np.multiply(z, coefs[0], out=out)
        out += coefs[1]
    for c in coefs[1:] if monic else coefs[2:]:
        out *= z
        out += c


def _ndtr(x, out, a, b, c):
    """out = Phi(x), the standard normal CDF, = erfc(w)/2 with w = -x/sqrt(2).

    NumPy has no erf; this is Cephes' piecewise rational form: float64-accurate for
    x > -11.3, a few ulp in float32. Further left Cephes switches to a third fit; we keep
    P/Q at |w| = 8 instead, so Phi (< 1e-29 there) is right to within 1e-30 absolute. Both
    pieces are evaluated everywhere on clipped arguments, so nothing overflows, then blended
    with a 0/1 mask (exact: one term is always 0). a, b, c: scratch.
    """
    # |w| < 1: erfc(w) = 1 - w T(w²)/U(w²)
    np.multiply(x, -math.sqrt(0.5), out=a)
    np.clip(a, -1.0, 1.0, out=a)
    np.multiply(a, a, out=b)
    _poly(b, _ERF_T, c)
    _poly(b, _ERF_U, out, monic=True)
    c /= out
    c *= a
    np.subtract(1.0, c, out=out)
    # |w| >= 1: E = erfc(|w|) = e^-w² P(|w|)/Q(|w|); erfc(w) = E for w > 0, 2 - E for w < 0
    np.abs(x, out=a)
    a *= math.sqrt(0.5)
    np.clip(a, 1.0, 8.0, out=a)
    _poly(a, _ERFC_P, b)
    _poly(a, _ERFC_Q, c, monic=True)
    b /= c
    np.multiply(x, x, out=c)
    c *= -0.5
    np.exp(c, out=c)
    b *= c
    np.greater(x, 0.0, out=a)  # w < 0
    np.multiply(a, -2.0, out=c)
    c += 1.0
    c *= b
    a *= 2.0
    c += a  # c = E(1 - 2s) + 2s
    # blend: mask 1 where |w| < 1, i.e. |x| < sqrt(2)
    np.abs(x, out=a)
    np.less(a, math.sqrt(2.0), out=a)
    out *= a
    np.subtract(1.0, a, out=a)
    c *= a
    out += c
    out *= 0.5


@ACTIVATIONS.register("gelu")
class GELU(_Act):
    """x*Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel 2016); approximate=true uses the tanh form."""

    # Exact form by default (torch approximate='none', keras.activations.gelu); Phi via Cephes'
    # erfc, accurate to float64 rounding, so gradient checks and torch comparisons are tight.
    needs_x = True
    init_family = "he"
    n_scratch = 4
    K = math.sqrt(2.0 / math.pi)
    C = 0.044715
    XMAX = 25.0  # tanh form: |x| beyond which z = 2K(x + C x³) > 1150 and e^-|z| = 0 in float64

    def __init__(self, approximate: bool = False):
        self.approximate = approximate

    def f(self, x, out):
        t = self.tmp(x)
        if self.approximate:  # x σ(z), z = 2K(x + C x³): 0.5(1 + tanh(z/2)) without tanh's cancellation
            self._tanh_form(x, t, self.tmp(x, 1), self.tmp(x, 2))
        else:
            _ndtr(x, t, self.tmp(x, 1), self.tmp(x, 2), self.tmp(x, 3))
        np.multiply(x, t, out=out)

    def df(self, x, y, dy, out):
        t = self.tmp(x)
        if self.approximate:  # σ(z) + x z'(x) σ(z)σ(-z), i.e. 0.5(1+th) + 0.5 x (1-th²) K (1 + 3C x²)
            self._tanh_form(x, t, self.tmp(x, 1), self.tmp(x, 2), out)
        else:  # Phi(x) + x phi(x)
            _ndtr(x, out, t, self.tmp(x, 1), self.tmp(x, 2))
            np.multiply(x, x, out=t)
            t *= -0.5
            np.exp(t, out=t)
            t *= x
            t *= 1.0 / math.sqrt(2.0 * math.pi)
            out += t
        out *= dy

    def _tanh_form(self, x, s, a, b, d=None):
        """s = σ(z) = 0.5(1 + tanh(z/2)) with z = 2K(x + C x³); also d = σ(z) + x z'(x) σ(z)σ(-z),
        the derivative of x σ(z), when given. a, b: scratch.

        With e = e^-|z| and r = e/(1+e) = σ(-|z|): σ(z) = H + (1-2H) r, H = (z > 0), and
        σ(z)σ(-z) = r/(1+e). Nothing cancels (float32 tanh is ±(1-2^-24) from |x| ≈ 5 on, where
        1 + tanh and 1 - tanh² lose all their digits) and nothing overflows: each tail is 0 or 1
        plus r times a factor, so values tending to 0 keep their relative accuracy (up to the
        rounding of z, which e^-|z| amplifies |z|-fold) and those tending to 1 round once there
        (float32 f' within 1.3e-7 of exact on |x| <= 10, 6e-8 beyond |x| = 3: tests/test_ops.py).
        x is clipped to ±XMAX first, so x³ stays finite: beyond it e^-|z| is 0 even in float64,
        σ(z) exactly 0 or 1 and the x z' σσ term exactly 0, as for the unclipped x.
        """
        np.clip(x, -self.XMAX, self.XMAX, out=a)
        np.multiply(a, a, out=b)
        if d is not None:  # x z'(x) = x (2K + 6KC x²)
            np.multiply(b, 6.0 * self.K * self.C, out=d)
            d += 2.0 * self.K
            d *= a
        np.multiply(b, 2.0 * self.K * self.C, out=s)  # z = x (2K + 2KC x²)
        s += 2.0 * self.K
        s *= a
        np.abs(s, out=a)
        np.negative(a, out=a)
        np.exp(a, out=a)  # e
        np.add(a, 1.0, out=b)
        a /= b  # r = e/(1+e)
        if d is not None:
            d /= b
        np.greater(s, 0.0, out=b)  # H
        np.multiply(b, -2.0, out=s)
        s += 1.0  # 1 - 2H: ±1
        if d is not None:  # H + r((1 - 2H) + x z'/(1+e))
            d += s
            d *= a
            d += b
        s *= a
        s += b  # H + (1 - 2H) r


@ACTIVATIONS.register("linear", "identity")
class Linear(_Act):
    """The identity: no activation."""

    def __init__(self):
        pass

    def f(self, x, out):
        if out is not x:
            np.copyto(out, x)

    def df(self, x, y, dy, out):
        np.copyto(out, dy)
