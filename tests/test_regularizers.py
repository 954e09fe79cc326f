"""Penalties and constraints against their formulas; penalty gradients by finite differences."""

import tracemalloc

import numpy as np
import pytest

from dnnspec.regularizers import CONSTRAINTS, REGULARIZERS, Constraint, Regularizer

REGS = [e.name for e in REGULARIZERS.entries()]
CONS = [e.name for e in CONSTRAINTS.entries()]


def reg(name, **kw):
    return REGULARIZERS.get(name).cls(**kw)


def con(name, **kw):
    return CONSTRAINTS.get(name).cls(**kw)


def weights(shape=(7, 5), seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- penalties
def test_penalty_formulas():
    for dtype, rel in [(np.float32, 1e-6), (np.float64, 1e-12)]:
        w = weights(dtype=dtype)
        x = w.astype(np.float64)
        assert reg("l1", l=0.3).penalty(w) == pytest.approx(0.3 * np.abs(x).sum(), rel=rel)
        # Keras convention: λ·Σw², no ½
        assert reg("l2", l=0.3).penalty(w) == pytest.approx(0.3 * (x**2).sum(), rel=rel)
        assert reg("l1_l2", l1=0.2, l2=0.05).penalty(w) == pytest.approx(
            0.2 * np.abs(x).sum() + 0.05 * (x**2).sum(), rel=rel)
        assert isinstance(reg("l2").penalty(w), float)


def test_gradient_formulas_accumulate_into_g():
    w = weights()
    w[0, 0] = 0.0
    g0 = weights(seed=1)
    for name, kw, dpen in [
        ("l1", {"l": 0.3}, 0.3 * np.sign(w)),
        ("l2", {"l": 0.3}, 0.6 * w),  # 2λw
        ("l1_l2", {"l1": 0.2, "l2": 0.05}, 0.2 * np.sign(w) + 0.1 * w),
    ]:
        g = g0.copy()
        reg(name, **kw).grad(w, g)
        np.testing.assert_allclose(g, g0 + dpen, rtol=1e-6, atol=1e-7)
        assert g.dtype == np.float32
    g = np.zeros_like(w)
    reg("l1").grad(w, g)
    assert g[0, 0] == 0.0  # subgradient 0 at 0, as Keras/TF


@pytest.mark.parametrize("name", REGS)
def test_gradient_is_the_derivative_of_the_penalty(name):
    r = REGULARIZERS.get(name).cls()
    w = weights((4, 3), dtype=np.float64)
    w[np.abs(w) < 0.05] = 0.3  # keep away from the kink of |w|
    g = np.zeros_like(w)
    r.grad(w, g)
    h = 1e-6
    num = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        wp, wm = w.copy(), w.copy()
        wp[i] += h
        wm[i] -= h
        num[i] = (r.penalty(wp) - r.penalty(wm)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)
    assert np.abs(g).max() > 0


def test_l2_is_torch_weight_decay_two_lambda():
    # torch SGD(weight_decay=wd) does g += wd·w: the same step as l2(λ) with wd = 2λ
    w, g = weights(), weights(seed=2)
    lam, lr = 0.01, 0.1
    g_ours = g.copy()
    reg("l2", l=lam).grad(w, g_ours)
    np.testing.assert_allclose(w - lr * g_ours, w - lr * (g + 2 * lam * w), rtol=1e-6)


@pytest.mark.parametrize("name", REGS)
def test_regularizers_allocate_only_once(name):
    r = REGULARIZERS.get(name).cls()
    assert isinstance(r, Regularizer)
    w, g = weights((784, 300)), weights((784, 300), seed=1)
    r.grad(w, g)
    r.penalty(w)
    tracemalloc.start()
    try:
        for _ in range(3):
            r.grad(w, g)
            r.penalty(w)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * w.nbytes and g.dtype == np.float32


# ---------------------------------------------------------------- constraints
def col_norms(w):
    return np.sqrt((w.astype(np.float64) ** 2).sum(axis=0))


def test_max_norm_clips_each_units_incoming_weights():
    w = weights((20, 6)) * np.array([0.1, 0.2, 1.0, 2.0, 3.0, 10.0], dtype=np.float32)
    before = w.copy()
    norms = col_norms(before)
    con("max_norm", max_value=2.0).apply(w)  # in place, kernel (fan_in, fan_out): columns
    after = col_norms(w)
    for j in range(6):
        if norms[j] <= 2.0:
            assert np.array_equal(w[:, j], before[:, j])  # untouched
        else:
            assert after[j] == pytest.approx(2.0, rel=1e-6)
            np.testing.assert_allclose(w[:, j], before[:, j] * 2.0 / norms[j], rtol=1e-6)
    assert (norms > 2).sum() >= 2 and (norms <= 2).sum() >= 2
    assert w.dtype == np.float32


def test_max_norm_other_axis_and_vectors():
    w = weights((6, 20)) * 3
    expect = w.astype(np.float64)
    rn = np.sqrt((expect**2).sum(axis=1, keepdims=True))
    expect = np.where(rn > 1.5, expect * 1.5 / rn, expect)
    con("max_norm", max_value=1.5, axis=1).apply(w)
    np.testing.assert_allclose(w, expect, rtol=1e-6)
    b = np.array([3.0, 4.0], dtype=np.float32)  # a bias is one vector, whatever the axis
    con("max_norm", max_value=1.0, axis=1).apply(b)
    np.testing.assert_allclose(b, [0.6, 0.8], rtol=1e-6)
    t = weights((3, 4, 5)) * 5  # rank 3: norms over axis 0 for every (j, k)
    expect = t.astype(np.float64)
    n = np.sqrt((expect**2).sum(axis=0, keepdims=True))
    expect = np.where(n > 2.0, expect * 2.0 / n, expect)
    con("max_norm").apply(t)
    np.testing.assert_allclose(t, expect, rtol=1e-6)


def test_non_neg():
    w = weights()
    expect = np.where(w < 0, 0, w)
    con("non_neg").apply(w)
    assert np.array_equal(w, expect) and (w >= 0).all()


def test_unit_norm():
    w = weights((10, 4)) * 7
    w[:, 2] = 0.0
    con("unit_norm").apply(w)
    np.testing.assert_allclose(col_norms(w)[[0, 1, 3]], 1.0, rtol=1e-6)
    assert (w[:, 2] == 0).all()
    v = weights((4, 10))
    con("unit_norm", axis=1).apply(v)
    np.testing.assert_allclose(np.sqrt((v.astype(np.float64) ** 2).sum(axis=1)), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", CONS)
@pytest.mark.parametrize("shape", [(7, 5), (9,), (2, 3, 4)])
def test_constraints_in_place_and_idempotent(name, shape):
    c = CONSTRAINTS.get(name).cls()
    assert isinstance(c, Constraint)
    w = weights(shape) * 4
    addr = w.ctypes.data
    c.apply(w)
    once = w.copy()
    c.apply(w)
    assert w.ctypes.data == addr and w.dtype == np.float32
    np.testing.assert_allclose(w, once, rtol=1e-6, atol=1e-7)  # a projection
