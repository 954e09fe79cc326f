"""Every activation and layer: finite-difference gradients, formulas, conventions, statistics.

Tests iterate the registries, so a new entry is gradient-checked without touching this file
(and the formula tables below fail until the new entry is added to them).
"""

import math

import numpy as np
import pytest

from dnnspec.ops import activations, layers  # noqa: F401  (fills the registries)
from dnnspec.ops.base import ACTIVATIONS, LAYERS
from dnnspec.registry import Float, Int
from helpers_gradcheck import assert_grad_close, away_from_kinks, numeric_grad

REQUIRED_ARGS = {"units": 3}  # values for parameters without a default
TEST_ARGS = {"activity_regularization": {"l1": 0.3, "l2": 0.2}}  # defaults that would test nothing
N_IN, BATCH, ALLOC = 4, 5, 7  # x has fewer rows than the op allocated for
SELU_ALPHA = 1.6732632423543772848170429916717  # CONVENTIONS.md §4
SELU_LAMBDA = 1.0507009873554804934193349852946

ENTRIES = [pytest.param(e, id=e.name) for e in ACTIVATIONS.entries() + LAYERS.entries()]
ACTIVATION_ENTRIES = [pytest.param(e, id=e.name) for e in ACTIVATIONS.entries()]


def build(entry_or_name, **kwargs):
    entry = entry_or_name
    if isinstance(entry, str):
        entry = ACTIVATIONS.get(entry) if entry in ACTIVATIONS else LAYERS.get(entry)
    args = {p.name: REQUIRED_ARGS[p.name] for p in entry.params if p.required}
    args.update(TEST_ARGS.get(entry.name, {}))
    args.update(kwargs)
    return entry.cls(**args)


def setup(op, dtype=np.float64, n_in=N_IN, batch=ALLOC, seed=0):
    """Declare, create (random values), bind and allocate, as the plan would."""
    rng = np.random.default_rng(seed)
    decl = op.variables(n_in)
    values = {}
    for name, var in decl.items():
        if var.role == "moving_variance":
            values[name] = rng.uniform(0.5, 2.0, var.shape).astype(dtype)
        else:
            values[name] = (rng.normal(0.0, 0.7, var.shape) + (var.role == "gamma")).astype(dtype)
    # NaN-filled: an op that accumulates into grads instead of overwriting them fails
    grads = {k: np.full(v.shape, np.nan, dtype) for k, v in decl.items() if v.trainable}
    op.bind(values, grads)
    op.allocate(batch, n_in, dtype)
    return values, grads


def run(op, x, training, seed=123):
    """Forward with a freshly seeded rng, so random ops draw the same mask every call."""
    if op.random:
        op.rng = np.random.default_rng(seed)
    return op.forward(x, training)


def inputs(rows=BATCH, cols=N_IN, seed=1, scale=1.5):
    return away_from_kinks(np.random.default_rng(seed).normal(0.0, scale, (rows, cols)))


# ---------------------------------------------------------------- registry hygiene
@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_is_well_formed(entry):
    assert entry.doc, "the first docstring line is the --list description"
    for p in entry.params:
        assert not isinstance(p.type, str), f"{p.name}: string annotation (from __future__ import annotations?)"
        if isinstance(p.type, (Float, Int)) and not p.required:
            p.type.convert(p.default)  # defaults respect their own bounds
    op = build(entry)
    op.variables(N_IN)
    text = op.describe()
    assert text and "\n" not in text


INIT_FAMILY = {
    "sigmoid": "glorot", "tanh": "glorot", "softmax": "glorot", "linear": "glorot", "softplus": "glorot",
    "relu": "he", "leaky_relu": "he", "prelu": "he", "rrelu": "he", "elu": "he", "gelu": "he",
    "swish": "he", "selu": "lecun",
}


def test_init_families_cover_every_activation():
    assert set(INIT_FAMILY) == set(ACTIVATIONS.names())
    for e in ACTIVATIONS.entries():
        assert e.cls.init_family == INIT_FAMILY[e.name], e.name
        assert isinstance(e.cls.needs_x, bool)


def test_aliases():
    for alias, name in [("logistic", "sigmoid"), ("silu", "swish"), ("identity", "linear")]:
        assert ACTIVATIONS.get(alias).name == name
    for alias in ("batch_norm", "batch_normalization"):
        assert LAYERS.get(alias).name == "batchnorm"


# ---------------------------------------------------------------- gradient checks
def assert_op_gradients(op, values, grads, x, w, training):
    """dx and every variable gradient of L = sum(w * y) against central differences."""

    def loss():
        return float(np.sum(op.forward(x, training) * w)) + op.penalty()

    loss()
    dx = op.backward(w.copy()).copy()
    analytic = {k: g.copy() for k, g in grads.items()}
    assert_grad_close(dx, numeric_grad(loss, x), what="dx")
    for name in grads:
        assert_grad_close(analytic[name], numeric_grad(loss, values[name]), what=name)


@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_gradients(entry, training):
    op = build(entry)
    values, grads = setup(op)
    x = inputs()
    w = np.random.default_rng(2).normal(size=(BATCH, op.out_width(N_IN)))

    def loss():  # L = sum(w * y) + the op's own penalty, so dL/dy = w
        return float(np.sum(run(op, x, training) * w)) + op.penalty()

    loss()
    dx = op.backward(w.copy(), need_dx=True).copy()
    analytic = {k: g.copy() for k, g in grads.items()}
    assert_grad_close(dx, numeric_grad(loss, x), what="dx")
    for name in grads:
        assert_grad_close(analytic[name], numeric_grad(loss, values[name]), what=name)
    # need_dx=False: no dx, the same variable gradients
    loss()
    for g in grads.values():
        g.fill(np.nan)
    assert op.backward(w.copy(), need_dx=False) is None
    for name in grads:
        np.testing.assert_allclose(grads[name], analytic[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("center,scale", [(False, True), (True, False), (False, False)])
def test_batchnorm_variants_gradients(center, scale):
    op = build("batchnorm", center=center, scale=scale)
    values, grads = setup(op)
    assert ("gamma" in values) == scale and ("beta" in values) == center
    x, w = inputs(), np.random.default_rng(2).normal(size=(BATCH, N_IN))
    for training in (True, False):
        assert_op_gradients(op, values, grads, x, w, training)


def test_maxout_gradients_with_k3():
    op = build("maxout", units=2, k=3)
    values, grads = setup(op)
    x, w = inputs(), np.random.default_rng(2).normal(size=(BATCH, 2))
    assert_op_gradients(op, values, grads, x, w, True)


# ---------------------------------------------------------------- dtype, batch, in place
@pytest.mark.parametrize("entry", ENTRIES)
def test_float32_preserved_and_close_to_float64(entry):
    ops, outs = {}, {}
    x64 = inputs()
    for dtype in (np.float32, np.float64):
        op = ops[dtype] = build(entry)
        setup(op, dtype=dtype)
        modes = (False,) if op.random else (True, False)  # float32 and float64 draws differ
        outs[dtype] = []
        for training in modes:
            y = run(op, x64.astype(dtype), training)
            dx = op.backward(np.ones_like(y))
            assert y.dtype == dtype and dx.dtype == dtype
            outs[dtype].append((y.copy(), dx.copy()))
    for (y32, dx32), (y64, dx64) in zip(outs[np.float32], outs[np.float64]):
        np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx32, dx64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("entry", ENTRIES)
def test_smaller_batch_than_allocated(entry):
    op = build(entry)
    setup(op, batch=ALLOC)
    x = inputs(rows=ALLOC)
    full = op.forward(x, False).copy()  # inference: row-independent for every op
    dfull = op.backward(np.ones_like(full)).copy()
    part = op.forward(x[:3], False)
    assert part.shape == (3, op.out_width(N_IN))
    np.testing.assert_allclose(part, full[:3], rtol=1e-12)
    np.testing.assert_allclose(op.backward(np.ones_like(part)), dfull[:3], rtol=1e-12)


@pytest.mark.parametrize("entry", ACTIVATION_ENTRIES)
def test_activation_in_place(entry):
    op = build(entry)
    setup(op)
    x = inputs()
    expected = np.empty_like(x)
    op.f(x, expected)
    op.f(x, x)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("entry", ACTIVATION_ENTRIES)
def test_needs_x_is_truthful(entry):
    """An activation declaring needs_x=False must compute df from y alone."""
    if entry.cls.needs_x:
        pytest.skip("reads x")
    op = build(entry)
    setup(op)
    x, dy = inputs(), inputs(seed=3)
    y, a, b = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    op.f(x, y)
    op.df(x, y, dy, a)
    op.df(np.full_like(x, np.nan), y, dy, b)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- formulas (float64, independent)
def _erf(x):
    return np.vectorize(math.erf)(x)


def _sig(x):
    return 0.5 * (1.0 + np.tanh(x / 2))  # a different form from the implementation's


def _prelu_slope(op):
    return op.vars["alpha"]


# name -> (f, f') for the default parameters; x a float64 array, op the built op
FORMULAS = {
    "sigmoid": (lambda x, op: _sig(x), lambda x, op: _sig(x) * _sig(-x)),
    "tanh": (lambda x, op: np.tanh(x), lambda x, op: 1.0 / np.cosh(x) ** 2),
    "relu": (lambda x, op: np.where(x > 0, x, 0.0), lambda x, op: np.where(x > 0, 1.0, 0.0)),
    "leaky_relu": (lambda x, op: np.where(x > 0, x, 0.01 * x), lambda x, op: np.where(x > 0, 1.0, 0.01)),
    "prelu": (lambda x, op: np.where(x > 0, x, _prelu_slope(op) * x),
              lambda x, op: np.where(x > 0, 1.0, _prelu_slope(op) + 0 * x)),
    "rrelu": (lambda x, op: np.where(x > 0, x, (1 / 8 + 1 / 3) / 2 * x),
              lambda x, op: np.where(x > 0, 1.0, (1 / 8 + 1 / 3) / 2)),
    "elu": (lambda x, op: np.where(x > 0, x, np.exp(x) - 1), lambda x, op: np.where(x > 0, 1.0, np.exp(x))),
    "selu": (lambda x, op: SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)),
             lambda x, op: SELU_LAMBDA * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(x))),
    "softplus": (lambda x, op: np.log(1 + np.exp(x)), lambda x, op: _sig(x)),
    "gelu": (lambda x, op: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
             lambda x, op: 0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "swish": (lambda x, op: x * _sig(x), lambda x, op: _sig(x) + x * _sig(x) * _sig(-x)),
    "linear": (lambda x, op: x + 0.0, lambda x, op: np.ones_like(x)),
}
# value and derivative at exactly 0 (CONVENTIONS.md §4; prelu at its initial slope 0.25)
AT_ZERO = {
    "sigmoid": (0.5, 0.25), "tanh": (0.0, 1.0), "relu": (0.0, 0.0), "leaky_relu": (0.0, 0.01),
    "prelu": (0.0, 0.25), "rrelu": (0.0, (1 / 8 + 1 / 3) / 2), "elu": (0.0, 1.0),
    "selu": (0.0, 1.0507009873554805 * 1.6732632423543772), "softplus": (math.log(2), 0.5),
    "gelu": (0.0, 0.5), "swish": (0.0, 0.5), "linear": (0.0, 1.0), "softmax": (0.25, None),
}


def test_formula_tables_cover_every_activation():
    assert set(FORMULAS) | {"softmax"} == set(ACTIVATIONS.names())
    assert set(AT_ZERO) == set(ACTIVATIONS.names())


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_formula(name):
    op = build(name)
    setup(op, n_in=6, batch=8)
    grid = np.array([-30.0, -6.0, -1.5, -1e-3, 1e-3, 1.5, 6.0, 30.0])
    x = np.stack([np.roll(grid, i)[:6] for i in range(8)])  # (8, 6): every value in every column
    f, df = FORMULAS[name]
    y, d = np.empty_like(x), np.empty_like(x)
    op.f(x, y)
    op.df(x, y, np.ones_like(x), d)
    np.testing.assert_allclose(y, f(x, op), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d, df(x, op), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(AT_ZERO))
def test_value_and_derivative_at_zero(name):
    op = build(name)
    setup(op, n_in=4)
    if name == "prelu":
        op.vars["alpha"][:] = op.variables(4)["alpha"].init(None, (4,), np.float64)  # the declared init
    x = np.zeros((2, 4))
    y, d = np.empty_like(x), np.empty_like(x)
    op.f(x, y)
    op.df(x, y, np.ones_like(x), d)
    value, slope = AT_ZERO[name]
    np.testing.assert_allclose(y, value, rtol=1e-15, atol=0)
    if slope is not None:
        np.testing.assert_allclose(d, slope, rtol=1e-15, atol=0)


def test_gelu_tanh_approximation():
    op = build("gelu", approximate=True)
    setup(op)
    x = inputs(scale=3)
    k = math.sqrt(2 / math.pi)
    y, d = np.empty_like(x), np.empty_like(x)
    op.f(x, y)
    op.df(x, y, np.ones_like(x), d)
    u = k * (x + 0.044715 * x**3)
    np.testing.assert_allclose(y, 0.5 * x * (1 + np.tanh(u)), rtol=1e-12)
    du = k * (1 + 3 * 0.044715 * x**2)
    np.testing.assert_allclose(d, 0.5 * (1 + np.tanh(u)) + 0.5 * x * du / np.cosh(u) ** 2, rtol=1e-12)


def test_gelu_tanh_float32_against_float64():
    # Regression: float32 tanh is ±(1-2^-24) from |x| ≈ 5 on, and 0.5(1 + tanh), 1 - tanh² cancel
    # there (f' was 1.2e-6 off, f relatively wrong in the left tail). Measured with the sigmoid form,
    # 2M points: f 3.7e-7 absolute (0.8 ulp), 1.3e-5 relative (x ≈ -10, e^-|z| amplifying z's
    # rounding); f' 1.2e-7 absolute (x ≈ 1.5, f' ≈ 1.1: the result's own rounding is 6e-8), 6.7e-8
    # for |x| >= 3.
    op = build("gelu", approximate=True)
    x = np.linspace(-10, 10, 2_000_001).astype(np.float32).reshape(-1, 1)
    y, d = np.empty_like(x), np.empty_like(x)
    op.f(x, y)
    op.df(x, y, np.ones_like(x), d)
    k, c, a = math.sqrt(2 / math.pi), 0.044715, x.astype(np.float64)
    u = k * (a + c * a**3)
    f_ref = a / (1 + np.exp(-2 * u))  # 0.5(1 + tanh u), relative-accurate in float64 in both tails
    np.testing.assert_allclose(f_ref, 0.5 * a * (1 + np.tanh(u)), rtol=0, atol=1e-14)
    df_ref = 0.5 * (1 + np.tanh(u)) + 0.5 * a * k * (1 + 3 * c * a**2) / np.cosh(u) ** 2
    np.testing.assert_allclose(y, f_ref, rtol=2e-5, atol=0)  # the old code: 13.5 relative at x = -5.4
    assert np.abs(y - f_ref).max() <= 5e-7  # half a float32 ulp at |f| = 10
    tails = np.abs(a) >= 3
    assert np.abs(d - df_ref)[tails].max() <= 1e-7  # the old code: 1.2e-6
    np.testing.assert_allclose(d, df_ref, rtol=2**-24, atol=1e-7)  # 1e-7 plus the rounding of f' itself
    # exact limits where e^-|z| underflows (float32 from |x| ≈ 11), past the clip at 25 where x³ would overflow
    for dtype, start in ((np.float32, 12.0), (np.float64, 25.5)):
        big = np.array([[start, 25.5, 1000.0, 1e30, 3e38]], dtype)
        big = np.concatenate([-big, big], axis=1)
        y, d = np.empty_like(big), np.empty_like(big)
        op.f(big, y)
        op.df(big, y, np.ones_like(big), d)
        assert np.array_equal(y, np.where(big > 0, big, 0.0)) and np.array_equal(d, big > 0)


def test_gelu_exact_matches_erf_over_a_wide_range():
    # float64: relative 1e-13 down to the deep tail; float32: absolute, as float32 allows
    for dtype, rtol, atol in ((np.float64, 1e-13, 1e-30), (np.float32, 1e-6, 1e-6)):
        op = build("gelu")
        x = np.linspace(-12, 12, 4801).reshape(-1, 1).astype(dtype)
        y = np.empty_like(x)
        op.f(x, y)
        ref = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64).ravel()])
        np.testing.assert_allclose(y.ravel(), ref, rtol=rtol, atol=atol)


def test_elu_alpha_and_leaky_slope_parameters():
    x = inputs()
    op = build("elu", alpha=0.5)
    y = np.empty_like(x)
    op.f(x, y)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.5 * (np.exp(x) - 1)), rtol=1e-13)
    op = build("leaky_relu", alpha=2.5)  # slopes above 1 are allowed and still x > 0 -> x
    op.f(x, y)
    np.testing.assert_allclose(y, np.where(x > 0, x, 2.5 * x), rtol=1e-15)


# name -> (f(-1000), f(1000), f'(-1000), f'(1000)) for the default parameters
LIMITS = {
    "sigmoid": (0, 1, 0, 0), "tanh": (-1, 1, 0, 0), "relu": (0, 1000, 0, 1),
    "leaky_relu": (-10, 1000, 0.01, 1), "rrelu": (-1000 * 11 / 48, 1000, 11 / 48, 1),
    "elu": (-1, 1000, 0, 1), "selu": (-SELU_LAMBDA * SELU_ALPHA, SELU_LAMBDA * 1000, 0, SELU_LAMBDA),
    "softplus": (0, 1000, 0, 1), "gelu": (0, 1000, 0, 1), "swish": (0, 1000, 0, 1),
    "linear": (-1000, 1000, 1, 1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(LIMITS))
def test_stable_for_large_inputs(name, dtype):
    op = build(name)
    x = np.array([[-1000.0, 1000.0]], dtype)
    y, d = np.empty_like(x), np.empty_like(x)
    op.f(x, y)  # RuntimeWarnings (overflow, invalid) are errors under pytest's config
    op.df(x, y, np.ones_like(x), d)
    lo, hi, dlo, dhi = LIMITS[name]
    np.testing.assert_allclose(y[0], [lo, hi], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(d[0], [dlo, dhi], rtol=1e-6, atol=1e-30)


def test_softmax_rows():
    op = build("softmax")
    x = np.array([[1000.0, -1000.0, 0.0, 0.0], [-1000.0, -1000.0, -1000.0, -1000.0], [1.0, 2.0, 3.0, 4.0]])
    y = np.empty_like(x)
    op.f(x, y)
    e = np.exp(np.arange(1.0, 5.0))
    np.testing.assert_allclose(y, [[1, 0, 0, 0], [0.25] * 4, e / e.sum()], rtol=1e-14, atol=1e-300)
    # backward against the explicit Jacobian diag(s) - s s^T
    x, dy = inputs(), inputs(seed=4)
    y, dx = np.empty_like(x), np.empty_like(x)
    op.f(x, y)
    op.df(x, y, dy, dx)
    for s, g, row in zip(y, dy, dx):
        np.testing.assert_allclose(row, (np.diag(s) - np.outer(s, s)) @ g, rtol=1e-12, atol=1e-15)


def test_prelu_one_slope_per_unit():
    op = build("prelu")
    decl = op.variables(5)
    assert decl["alpha"].shape == (5,) and decl["alpha"].role == "alpha" and decl["alpha"].trainable
    np.testing.assert_array_equal(decl["alpha"].init(None, (5,), np.float32), np.full(5, 0.25, np.float32))
    values, grads = setup(op, n_in=5)
    x, dy = inputs(cols=5), inputs(cols=5, seed=5)
    y = op.forward(x, True)
    np.testing.assert_allclose(y, np.where(x > 0, x, values["alpha"] * x), rtol=1e-15)
    op.backward(dy)
    np.testing.assert_allclose(grads["alpha"], np.sum(np.where(x <= 0, dy * x, 0), axis=0), rtol=1e-13)


def test_rrelu_slopes():
    op = build("rrelu")
    setup(op, n_in=100, batch=400)
    x = np.concatenate([-np.ones((200, 100)), np.ones((200, 100))])
    slope_inf = (1 / 8 + 1 / 3) / 2
    np.testing.assert_allclose(op.forward(x, False)[:200], -slope_inf, rtol=1e-15)
    op.rng = np.random.default_rng(0)
    y = op.forward(x, True)
    slopes = -y[:200]
    assert np.all(y[200:] == 1.0)
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3
    assert slopes.min() < 1 / 8 + 1e-3 and slopes.max() > 1 / 3 - 1e-3
    assert abs(slopes.mean() - slope_inf) < 2e-3  # 20000 draws, std of the mean 4e-4
    assert abs(slopes.std() - (1 / 3 - 1 / 8) / math.sqrt(12)) < 2e-3  # uniform's std
    dx = op.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx[:200], slopes)  # the same slopes in backward
    assert RReLU_validate(1 / 3, 1 / 8) is not None and RReLU_validate(0.1, 0.1) is None
    with pytest.raises(ValueError):
        build("rrelu", lower=0.5, upper=0.2)


def RReLU_validate(lower, upper):
    return ACTIVATIONS.get("rrelu").cls.validate(lower=lower, upper=upper)


# ---------------------------------------------------------------- layers: formulas and statistics
def test_dense_formula_and_variables():
    for use_bias in (True, False):
        op = build("dense", units=3, use_bias=use_bias)
        decl = op.variables(N_IN)
        assert decl["kernel"].shape == (N_IN, 3) and decl["kernel"].role == "kernel"
        assert ("bias" in decl) == use_bias
        if use_bias:
            assert decl["bias"].shape == (3,) and decl["bias"].role == "bias"
        values, _ = setup(op)
        x = inputs()
        expected = x @ values["kernel"] + (values["bias"] if use_bias else 0.0)
        np.testing.assert_allclose(op.forward(x, True), expected, rtol=1e-13)
        assert op.describe() == "dense 4->3" + ("" if use_bias else " (no bias)")


def test_maxout_formula():
    op = build("maxout", units=2, k=3)
    assert op.out_width(N_IN) == 2 and op.variables(N_IN)["kernel"].shape == (N_IN, 6)
    values, _ = setup(op)
    x = inputs()
    z = x @ values["kernel"] + values["bias"]
    expected = np.stack([z[:, 0:3].max(1), z[:, 3:6].max(1)], axis=1)  # pieces of a unit adjacent
    np.testing.assert_allclose(op.forward(x, True), expected, rtol=1e-13)


def test_batchnorm_training_and_moving_statistics():
    op = build("batchnorm", momentum=0.9, epsilon=1e-3)
    values, _ = setup(op, batch=16)
    mm0, mv0 = values["moving_mean"].copy(), values["moving_variance"].copy()
    x = np.random.default_rng(6).normal(3.0, 2.0, (16, N_IN))
    y = op.forward(x, True)
    mean, var = x.mean(0), x.var(0)  # biased variance (ddof=0): Keras
    expected = values["gamma"] * (x - mean) / np.sqrt(var + 1e-3) + values["beta"]
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_allclose(values["moving_mean"], 0.9 * mm0 + 0.1 * mean, rtol=1e-13)
    np.testing.assert_allclose(values["moving_variance"], 0.9 * mv0 + 0.1 * var, rtol=1e-13)
    # inference uses the moving statistics and leaves them alone
    mm1, mv1 = values["moving_mean"].copy(), values["moving_variance"].copy()
    y = op.forward(x, False)
    np.testing.assert_allclose(y, values["gamma"] * (x - mm1) / np.sqrt(mv1 + 1e-3) + values["beta"], rtol=1e-12)
    np.testing.assert_array_equal(values["moving_mean"], mm1)
    # update_stats=False (frozen statistics): batch statistics in training, no update
    op.update_stats = False
    y = op.forward(x, True)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_array_equal(values["moving_mean"], mm1)
    np.testing.assert_array_equal(values["moving_variance"], mv1)


def test_batchnorm_declares_keras_variables():
    decl = build("batchnorm").variables(3)
    assert list(decl) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [v.trainable for v in decl.values()] == [True, True, False, False]
    assert [v.role for v in decl.values()] == list(decl)
    inits = [v.init(None, (3,), np.float32) for v in decl.values()]
    np.testing.assert_array_equal(np.stack(inits), [[1] * 3, [0] * 3, [0] * 3, [1] * 3])


def test_dropout_statistics():
    rate = 0.3
    op = build("dropout", rate=rate)
    setup(op, dtype=np.float32, n_in=50, batch=2000)
    op.rng = np.random.default_rng(0)
    x = np.ones((2000, 50), np.float32)
    y = op.forward(x, True).copy()
    assert abs(np.mean(y == 0) - rate) < 0.01  # 100000 draws: std 0.0015
    assert abs(y.mean() - 1.0) < 0.01  # expectation preserved
    np.testing.assert_allclose(y[y != 0], 1 / (1 - rate), rtol=1e-6)
    dx = op.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(dx, 2.0 * y)  # the same mask in backward
    assert not np.array_equal(op.forward(x, True), y)  # a new mask per batch
    np.testing.assert_array_equal(op.forward(x, False), x)  # identity at inference


def test_alpha_dropout_keeps_mean_and_variance():
    rate = 0.2
    op = build("alpha_dropout", rate=rate)
    setup(op, n_in=50, batch=4000)
    op.rng = np.random.default_rng(0)
    x = np.random.default_rng(1).normal(size=(4000, 50))
    y = op.forward(x, True)
    assert abs(y.mean()) < 0.02 and abs(y.var() - 1.0) < 0.02  # the paper's fixed point
    alpha_p = -SELU_LAMBDA * SELU_ALPHA
    q = 1 - rate
    a = (q + alpha_p**2 * q * (1 - q)) ** -0.5
    b = -a * (1 - q) * alpha_p
    dropped = np.isclose(y, a * alpha_p + b, rtol=0, atol=1e-12)
    assert abs(dropped.mean() - rate) < 0.01
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(op.forward(x, False), x)


def test_gaussian_noise_statistics():
    op = build("gaussian_noise", stddev=0.5)
    setup(op, n_in=50, batch=2000)
    op.rng = np.random.default_rng(0)
    x = np.random.default_rng(1).normal(size=(2000, 50))
    noise = op.forward(x, True) - x
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.5) < 0.01
    np.testing.assert_array_equal(op.backward(x), x)  # additive: dx = dy
    np.testing.assert_array_equal(op.forward(x, False), x)


def test_dropconnect_drops_weights_not_units():
    rate, n_in, units = 0.4, 50, 40
    op = build("dropconnect", units=units, rate=rate)
    values, _ = setup(op, n_in=n_in, batch=n_in)
    op.rng = np.random.default_rng(0)
    eye = np.eye(n_in)  # row i of the output is row i of the effective kernel (+ bias)
    w1 = op.forward(eye, True) - values["bias"]
    kept = w1 != 0
    assert abs(kept.mean() - (1 - rate)) < 0.05  # 2000 weights: std 0.011
    np.testing.assert_allclose(w1[kept], values["kernel"][kept] / (1 - rate), rtol=1e-13)
    w2 = op.forward(eye, True) - values["bias"]
    assert not np.array_equal(w1 != 0, w2 != 0)  # a new mask per batch
    np.testing.assert_allclose(op.forward(eye, False), values["kernel"] + values["bias"], rtol=1e-13)


def test_noise_layers_describe():
    assert build("dropout", rate=0.25).describe() == "dropout rate=0.25"
    op = build("batchnorm")
    op.variables(300)
    assert op.describe().startswith("batchnorm 300")


# ---------------------------------------------------------------- torch as an oracle
TORCH_ACTIVATIONS = {  # name -> torch expression of (torch, x, op), default parameters
    "sigmoid": lambda torch, x, op: torch.sigmoid(x),
    "tanh": lambda torch, x, op: torch.tanh(x),
    "relu": lambda torch, x, op: torch.nn.functional.relu(x),
    "leaky_relu": lambda torch, x, op: torch.nn.functional.leaky_relu(x, 0.01),
    "prelu": lambda torch, x, op: torch.nn.functional.prelu(x, torch.tensor(op.vars["alpha"])),
    "rrelu": lambda torch, x, op: torch.nn.functional.rrelu(x, 1 / 8, 1 / 3, training=False),
    "elu": lambda torch, x, op: torch.nn.functional.elu(x),
    "selu": lambda torch, x, op: torch.nn.functional.selu(x),
    "softplus": lambda torch, x, op: torch.nn.functional.softplus(x),
    "gelu": lambda torch, x, op: torch.nn.functional.gelu(x),
    "swish": lambda torch, x, op: torch.nn.functional.silu(x),
    "linear": lambda torch, x, op: x * 1.0,
    "softmax": lambda torch, x, op: torch.softmax(x, dim=1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_match_torch(dtype):
    torch = pytest.importorskip("torch")
    assert set(TORCH_ACTIVATIONS) == set(ACTIVATIONS.names())
    x = np.random.default_rng(7).normal(0, 3, (16, 8)).astype(dtype)
    x[0, :4] = 0.0  # the conventions at 0
    dy = np.random.default_rng(8).normal(size=x.shape).astype(dtype)
    for name, fn in TORCH_ACTIVATIONS.items():
        op = build(name)
        setup(op, dtype=dtype, n_in=8, batch=16)
        y = op.forward(x, False)
        dx = op.backward(dy)
        tx = torch.tensor(x, requires_grad=True)
        ty = fn(torch, tx, op)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)


def test_batchnorm_matches_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    op = build("batchnorm", momentum=0.9, epsilon=1e-5)
    values, grads = setup(op, batch=16)
    x = np.random.default_rng(9).normal(1, 2, (16, N_IN))
    dy = np.random.default_rng(10).normal(size=x.shape)
    rm = torch.tensor(values["moving_mean"].copy())
    rv = torch.tensor(values["moving_variance"].copy())
    y = op.forward(x, True)
    dx = op.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    g = torch.tensor(values["gamma"], requires_grad=True)
    b = torch.tensor(values["beta"], requires_grad=True)
    ty = F.batch_norm(tx, rm, rv, g, b, training=True, momentum=0.1, eps=1e-5)  # torch m = 1 - Keras M
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["gamma"], g.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(grads["beta"], b.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(values["moving_mean"], rm.numpy(), rtol=1e-12)
    # the moving variance differs on purpose: torch averages the unbiased batch variance
    np.testing.assert_allclose(rv.numpy() - values["moving_variance"], 0.1 * x.var(0) * (16 / 15 - 1), rtol=1e-9)


def test_activity_regularization_penalty_formula():
    op = build("activity_regularization", l1=0.5, l2=0.25)
    setup(op)
    x = inputs()
    y = run(op, x, True)
    np.testing.assert_array_equal(y, x)
    expected = (0.5 * np.abs(x).sum() + 0.25 * (x**2).sum()) / len(x)
    assert op.penalty() == pytest.approx(expected, rel=1e-12)
    run(op, x, False)
    assert op.penalty() == 0.0
