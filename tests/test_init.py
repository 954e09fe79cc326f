"""Initializers against their formulas (CONVENTIONS §6): statistics, bounds, orthogonality."""

import math
import tracemalloc

import numpy as np
import pytest

from dnnspec import init
from dnnspec.init import INITIALIZERS

SHAPES = [(784, 300), (300, 100), (100, 10), (50, 2000)]
ALL = [e.name for e in INITIALIZERS.entries()]
TRUNC = 0.8796256610342398  # std of N(0,1) cut to [-2, 2], recomputed below


def make(name, **kw):
    return INITIALIZERS.get(name).cls(**kw)


def draw(name, shape, seed=0, dtype=np.float32, **kw):
    return make(name, **kw)(np.random.default_rng(seed), shape, dtype)


def test_truncated_constant_is_the_std_of_the_cut_normal():
    # Var of N(0,1) | |z|<=2 = 1 - 2·2·φ(2)/(Φ(2)-Φ(-2))
    phi = math.exp(-2.0) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    assert init.TRUNCATED_STD == pytest.approx(math.sqrt(1 - 4 * phi / mass), rel=1e-15)


# ---------------------------------------------------------------- generic, over every entry
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (2, 3, 4)])
def test_shape_dtype_finite(name, dtype, shape):
    w = draw(name, shape, dtype=dtype)
    assert w.shape == shape and w.dtype == np.dtype(dtype) and np.isfinite(w).all()


@pytest.mark.parametrize("name", [n for n in ALL if n != "orthogonal"])
def test_vectors_work(name):  # biases, batch-norm gamma/beta
    w = draw(name, (17,))
    assert w.shape == (17,) and w.dtype == np.float32


def test_orthogonal_rejects_vectors():
    with pytest.raises(ValueError, match="2 dimensions"):
        draw("orthogonal", (17,))


@pytest.mark.parametrize("name", ALL)
def test_deterministic_given_rng(name):
    a, b, c = draw(name, (40, 30), seed=1), draw(name, (40, 30), seed=1), draw(name, (40, 30), seed=2)
    assert np.array_equal(a, b)
    if name not in ("zeros", "ones", "constant"):
        assert not np.array_equal(a, c)


def test_aliases_resolve_to_the_same_entry():
    for alias, name in [("xavier_normal", "glorot_normal"), ("xavier_uniform", "glorot_uniform"),
                        ("kaiming_normal", "he_normal"), ("kaiming_uniform", "he_uniform")]:
        assert INITIALIZERS.get(alias).name == name


# ---------------------------------------------------------------- constants
def test_constants():
    assert (draw("zeros", (3, 4)) == 0).all() and (draw("ones", (3, 4)) == 1).all()
    assert (draw("constant", (3, 4), value=-0.25) == np.float32(-0.25)).all()


# ---------------------------------------------------------------- statistics against formulas
def check_stats(w, mean, std, bound=None, hits_bound=False):
    """Sample mean/std within 6 standard errors of the formula; bounds respected (and reached)."""
    x = w.astype(np.float64).ravel()
    n = x.size
    assert abs(x.mean() - mean) < 6 * std / math.sqrt(n) + 1e-12
    # se(sample std) ≈ std·sqrt((κ-1)/(4n)); κ ≤ 3 for all of these distributions
    assert abs(x.std() - std) < 6 * std * math.sqrt(0.5 / n)
    if bound is not None:
        assert np.abs(x - mean).max() <= bound * (1 + 1e-6)
        if hits_bound:  # the support really extends that far (not a narrower distribution)
            assert np.abs(x - mean).max() > bound * (1 - 20 / n)


def fan_std(mode, scale, shape):
    fi, fo = shape
    n = {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}[mode]
    return math.sqrt(scale / n)


NAMED = {  # name -> (scale, mode, distribution): Keras' definitions
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
}


def check_distribution(w, std, distribution):
    if distribution == "uniform":
        # U(-a, a), a = sqrt(3)·std: the Glorot limit sqrt(6/(fi+fo)), the He limit sqrt(6/fi)
        check_stats(w, 0.0, std, bound=math.sqrt(3) * std, hits_bound=True)
    elif distribution == "truncated_normal":
        # cut at ±2σ' where σ' = std/0.8796: the truncated samples keep std `std`
        check_stats(w, 0.0, std, bound=2 * std / TRUNC, hits_bound=True)
    else:
        check_stats(w, 0.0, std)
        # an untruncated normal exceeds 2σ' (= 2.27σ) on 2.3% of draws; a truncated one never
        p = 1 - math.erf(2 / TRUNC / math.sqrt(2))
        frac = np.mean(np.abs(w) > 2 * std / TRUNC)
        assert frac > 0 and abs(frac - p) < 6 * math.sqrt(p * (1 - p) / w.size)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_schemes(name, shape):
    scale, mode, distribution = NAMED[name]
    check_distribution(draw(name, shape), fan_std(mode, scale, shape), distribution)


@pytest.mark.parametrize("shape", SHAPES)
def test_named_formulas_spelled_out(shape):
    fi, fo = shape
    assert make("glorot_normal").std(shape) == pytest.approx(math.sqrt(2 / (fi + fo)))
    assert make("he_normal").std(shape) == pytest.approx(math.sqrt(2 / fi))
    assert make("lecun_normal").std(shape) == pytest.approx(math.sqrt(1 / fi))
    lim = np.abs(draw("glorot_uniform", shape)).max()
    assert math.sqrt(6 / (fi + fo)) * 0.99 < lim <= math.sqrt(6 / (fi + fo)) * (1 + 1e-6)
    lim = np.abs(draw("he_uniform", shape)).max()
    assert math.sqrt(6 / fi) * 0.99 < lim <= math.sqrt(6 / fi) * (1 + 1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
def test_variance_scaling(shape, mode, distribution):
    w = draw("variance_scaling", shape, scale=3.0, mode=mode, distribution=distribution)
    check_distribution(w, fan_std(mode, 3.0, shape), distribution)


def test_untruncated_normal_is_keras3_spelling_of_normal():
    a = draw("variance_scaling", (50, 40), distribution="untruncated_normal")
    assert np.array_equal(a, draw("variance_scaling", (50, 40), distribution="normal"))


def test_fans_of_higher_rank_kernels():
    assert init.fans((3, 4, 5)) == (12, 5) and init.fans((7,)) == (7, 7) and init.fans(()) == (1, 1)
    w = draw("he_uniform", (20, 30, 40))
    check_stats(w, 0.0, math.sqrt(2 / 600), bound=math.sqrt(6 / 600), hits_bound=True)


def test_normal_truncated_uniform():
    check_stats(draw("normal", (500, 400), mean=0.3, stddev=0.2), 0.3, 0.2)
    # Keras TruncatedNormal: stddev is that of the normal before the cut at ±2·stddev
    w = draw("truncated_normal", (500, 400), mean=-1.0, stddev=0.5)
    check_stats(w, -1.0, 0.5 * TRUNC, bound=1.0, hits_bound=True)
    w = draw("uniform", (500, 400), minval=-0.1, maxval=0.3)
    check_stats(w, 0.1, 0.4 / math.sqrt(12), bound=0.2, hits_bound=True)
    assert w.min() >= np.float32(-0.1) and w.max() <= np.float32(0.3)


def test_uniform_validates_bounds():
    validate = INITIALIZERS.get("uniform").cls.validate
    assert validate(minval=-1.0, maxval=1.0) is None
    assert "minval" in validate(minval=1.0, maxval=1.0)
    assert "minval" in validate(minval=2.0, maxval=1.0)


@pytest.mark.parametrize("name", ["normal", "truncated_normal", "uniform", "glorot_normal", "he_uniform"])
def test_no_float64_copy_of_the_matrix(name):
    # numpy reports its buffers to tracemalloc: a float64 temporary would double the peak
    shape = (784, 300)
    tracemalloc.start()
    try:
        w = draw(name, shape)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert w.dtype == np.float32 and peak < 1.8 * w.nbytes


# ---------------------------------------------------------------- orthogonal
@pytest.mark.parametrize("shape", SHAPES + [(10, 10), (4, 5, 6)])
@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_orthogonal(shape, gain):
    w = draw("orthogonal", shape, gain=gain).astype(np.float64)
    m = w.reshape(-1, shape[-1])
    rows, cols = m.shape
    gram = m.T @ m if rows >= cols else m @ m.T  # columns orthonormal, or rows when wide
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=2e-5 * gain**2)


def test_orthogonal_matches_keras_algorithm():
    # Keras: QR of an (rows, cols) N(0,1) draw (rows ≥ cols), columns signed by diag(R)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((30, 20), dtype=np.float32).astype(np.float64)
    q, r = np.linalg.qr(a)
    expect = q * np.sign(np.diag(r))
    np.testing.assert_allclose(draw("orthogonal", (30, 20), seed=5), expect, atol=1e-5)
    np.testing.assert_allclose(draw("orthogonal", (20, 30), seed=5), expect.T, atol=1e-5)
