"""Weight initializers (Glorot & Bengio 2010, He et al. 2015, LeCun 1998, Saxe et al. 2014).

An initializer is called as ``init(rng, shape, dtype)`` and returns a new array. Fans follow
Keras: a kernel of shape (fan_in, fan_out); a 1-D variable has fan_in = fan_out = its length.

Conventions (docs/conventions.md): the named initializers are Keras' reductions of
`variance_scaling`, so ``glorot_normal``, ``he_normal`` and ``lecun_normal`` draw from a
normal **truncated at ±2σ'** and rescaled to the target std (Keras); torch's ``xavier_normal_``
and ``kaiming_normal_`` are untruncated, which is ``variance_scaling(distribution=normal)``.
Random draws happen directly in float32 (or float64) so no float64 copy of a big matrix is made.
"""


import math

import numpy as np

from .registry import Choice, Float, Registry

INITIALIZERS = Registry("initializer")

# std of N(0, 1) truncated to [-2, 2]: Keras divides by it so truncated draws keep the target std
TRUNCATED_STD = 0.87962566103423978


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


# ---------------------------------------------------------------- sampling helpers
def _draw_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype NumPy's Generator can draw in directly (float32/float64); others cast after."""
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)


def _finish(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return x if x.dtype == dtype else x.astype(dtype)


def standard_normal(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """N(0, 1) drawn in ``dtype`` (float32 stays float32: no float64 temporary)."""
    return rng.standard_normal(shape, dtype=_draw_dtype(np.dtype(dtype)))


def truncated_standard_normal(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """N(0, 1) conditioned on |z| <= 2: out-of-range draws are redrawn (Keras/TF semantics)."""
    z = standard_normal(rng, shape, dtype)
    flat = z.reshape(-1)
    out = flat > 2.0  # boolean masks, not a float temporary of the whole matrix
    out |= flat < -2.0
    bad = np.flatnonzero(out)
    del out
    while bad.size:  # ~4.6% redrawn per round, so a handful of rounds
        flat[bad] = rng.standard_normal(bad.size, dtype=flat.dtype)
        bad = bad[np.abs(flat[bad]) > 2.0]
    return z


def standard_uniform(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """U[0, 1) drawn in ``dtype``."""
    return rng.random(shape, dtype=_draw_dtype(np.dtype(dtype)))


# ---------------------------------------------------------------- constants
@INITIALIZERS.register("zeros")
class Zeros(Initializer):
    """All zeros (the default for biases)."""

    def __call__(self, rng, shape, dtype=np.float32):
        return np.zeros(shape, dtype)


@INITIALIZERS.register("ones")
class Ones(Initializer):
    """All ones (the default for batch-norm gamma)."""

    def __call__(self, rng, shape, dtype=np.float32):
        return np.ones(shape, dtype)


@INITIALIZERS.register("constant")
class Constant(Initializer):
    """Every element equal to `value`."""

    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def __call__(self, rng, shape, dtype=np.float32):
        return np.full(shape, self.value, dtype)


# ---------------------------------------------------------------- fixed-scale random
@INITIALIZERS.register("normal", "random_normal")
class Normal(Initializer):
    """N(mean, stddev²), untruncated."""

    def __init__(self, mean: float = 0.0, stddev: Float(gt=0) = 0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, rng, shape, dtype=np.float32):
        dtype = np.dtype(dtype)
        x = standard_normal(rng, shape, dtype)
        x *= self.stddev
        x += self.mean
        return _finish(x, dtype)


@INITIALIZERS.register("truncated_normal")
class TruncatedNormal(Initializer):
    """N(mean, stddev²) cut at mean ± 2·stddev and redrawn (Keras: stddev is before truncation)."""

    def __init__(self, mean: float = 0.0, stddev: Float(gt=0) = 0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, rng, shape, dtype=np.float32):
        dtype = np.dtype(dtype)
        x = truncated_standard_normal(rng, shape, dtype)
        x *= self.stddev
        x += self.mean
        return _finish(x, dtype)


@INITIALIZERS.register("uniform", "random_uniform")
class Uniform(Initializer):
    """U[minval, maxval)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    @staticmethod
    def validate(minval: float = -0.05, maxval: float = 0.05, **_) -> str | None:
        if not minval < maxval:
            return f"minval must be < maxval, got minval={minval:g}, maxval={maxval:g}"
        return None

    def __call__(self, rng, shape, dtype=np.float32):
        dtype = np.dtype(dtype)
        x = standard_uniform(rng, shape, dtype)
        x *= self.maxval - self.minval
        x += self.minval
        return _finish(x, dtype)


# ---------------------------------------------------------------- fan-scaled random
@INITIALIZERS.register("variance_scaling")
class VarianceScaling(Initializer):
    """Zero-mean draws with variance scale/n, n = fan_in, fan_out or their mean (Keras VarianceScaling)."""

    def __init__(
        self,
        scale: Float(gt=0) = 1.0,
        mode: Choice("fan_in", "fan_out", "fan_avg") = "fan_in",
        distribution: Choice("normal", "truncated_normal", "uniform", "untruncated_normal") = "truncated_normal",
    ):
        # "untruncated_normal" is Keras 3's spelling of "normal"
        self.scale, self.mode = float(scale), mode
        self.distribution = "normal" if distribution == "untruncated_normal" else distribution

    def std(self, shape: tuple[int, ...]) -> float:
        """The target standard deviation sqrt(scale / n) for a variable of this shape."""
        fan_in, fan_out = fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return math.sqrt(self.scale / max(1.0, n))  # Keras' max(1, n): empty shapes stay finite

    def __call__(self, rng, shape, dtype=np.float32):
        dtype, std = np.dtype(dtype), self.std(tuple(shape))
        if self.distribution == "uniform":
            limit = math.sqrt(3.0) * std  # U(-a, a) has std a/sqrt(3)
            x = standard_uniform(rng, shape, dtype)
            x *= 2.0 * limit
            x -= limit
        elif self.distribution == "truncated_normal":
            x = truncated_standard_normal(rng, shape, dtype)
            x *= std / TRUNCATED_STD  # so the truncated draws have std `std`
        else:
            x = standard_normal(rng, shape, dtype)
            x *= std
        return _finish(x, dtype)


# The named schemes are reductions of variance_scaling (Keras' definitions, CONVENTIONS §6).
@INITIALIZERS.register("glorot_normal", "xavier_normal")
class GlorotNormal(VarianceScaling):
    """Truncated normal, std sqrt(2/(fan_in+fan_out)) (Glorot & Bengio 2010; Keras, truncated)."""

    def __init__(self):
        super().__init__(1.0, "fan_avg", "truncated_normal")


@INITIALIZERS.register("glorot_uniform", "xavier_uniform")
class GlorotUniform(VarianceScaling):
    """U(±sqrt(6/(fan_in+fan_out))) (Glorot & Bengio 2010)."""

    def __init__(self):
        super().__init__(1.0, "fan_avg", "uniform")


@INITIALIZERS.register("he_normal", "kaiming_normal")
class HeNormal(VarianceScaling):
    """Truncated normal, std sqrt(2/fan_in) (He et al. 2015; Keras, truncated)."""

    def __init__(self):
        super().__init__(2.0, "fan_in", "truncated_normal")


@INITIALIZERS.register("he_uniform", "kaiming_uniform")
class HeUniform(VarianceScaling):
    """U(±sqrt(6/fan_in)) (He et al. 2015)."""

    def __init__(self):
        super().__init__(2.0, "fan_in", "uniform")


@INITIALIZERS.register("lecun_normal")
class LecunNormal(VarianceScaling):
    """Truncated normal, std sqrt(1/fan_in) (LeCun et al. 1998; Keras, truncated; for SELU)."""

    def __init__(self):
        super().__init__(1.0, "fan_in", "truncated_normal")


@INITIALIZERS.register("lecun_uniform")
class LecunUniform(VarianceScaling):
    """U(±sqrt(3/fan_in)) (LeCun et al. 1998)."""

    def __init__(self):
        super().__init__(1.0, "fan_in", "uniform")


@INITIALIZERS.register("orthogonal")
class Orthogonal(Initializer):
    """A random orthogonal matrix times gain (Saxe et al. 2014; Keras/torch QR algorithm)."""

    def __init__(self, gain: Float(gt=0) = 1.0):
        self.gain = float(gain)

    def __call__(self, rng, shape, dtype=np.float32):
        dtype, shape = np.dtype(dtype), tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"orthogonal needs a variable of at least 2 dimensions, got shape {shape}")
        rows, cols = fans(shape)
        a = standard_normal(rng, (max(rows, cols), min(rows, cols)), dtype)
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diagonal(r))  # makes Q uniform over the orthogonal group (Mezzadri 2007)
        if rows < cols:
            q = q.T
        q *= self.gain
        return _finish(np.ascontiguousarray(q).reshape(shape), dtype)
