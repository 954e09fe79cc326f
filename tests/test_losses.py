"""Every loss: value against an independent float64 formula, gradient check, stability."""

import math

import numpy as np
import pytest

from dnnspec.losses import LOSSES
from dnnspec.registry import Float, Int
from helpers_gradcheck import assert_grad_close, numeric_grad

N, K = 6, 4
ENTRIES = [pytest.param(e, id=e.name) for e in LOSSES.entries()]


def logits(n=N, k=K, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(0.0, scale, (n, k))


def labels_for(kind, n=N, k=K, seed=1):
    """Labels of the loss' kind: class indices, 0/1 (multi-label), or real targets."""
    rng = np.random.default_rng(seed)
    if kind == "class":
        return rng.integers(0, k, n)
    if kind == "binary":
        return rng.integers(0, 2, (n, k)).astype(np.float64)
    return rng.normal(0.0, 2.0, (n, k))


def regression_logits(y, seed=0, delta=1.0):
    """z = y + d with every d at least 0.05 from the kinks of mae (0) and huber (±delta)."""
    d = np.random.default_rng(seed).uniform(0.05, 2.5, y.shape)
    d[np.abs(d - delta) < 0.05] += 0.1
    return y + d * np.where(np.random.default_rng(seed + 1).random(y.shape) < 0.5, -1, 1)


def onehot(y, k=K):
    return np.eye(k)[y]


def log_softmax(z):  # float64 reference, fine for moderate logits
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# ---------------------------------------------------------------- every entry
@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_is_well_formed(entry):
    assert entry.doc
    assert entry.cls.labels in ("class", "binary", "real")
    for p in entry.params:
        assert not isinstance(p.type, str), f"{p.name}: string annotation"
        if isinstance(p.type, (Float, Int)) and not p.required:
            p.type.convert(p.default)


@pytest.mark.parametrize("entry", ENTRIES)
def test_gradient(entry):
    loss = entry.cls()
    y = labels_for(entry.cls.labels)
    z = regression_logits(y) if entry.cls.labels == "real" else logits()
    loss.forward(z, y)
    g = loss.backward().copy()
    assert_grad_close(g, numeric_grad(lambda: loss.forward(z, y), z), what=entry.name)


@pytest.mark.parametrize("entry", ENTRIES)
def test_float32_in_float32_out(entry):
    loss = entry.cls()
    y = labels_for(entry.cls.labels)  # float64 or int64 labels must not upcast the gradient
    z = (regression_logits(y) if entry.cls.labels == "real" else logits()).astype(np.float32)
    value = loss.forward(z, y)
    assert isinstance(value, float)
    g = loss.backward()
    assert g.dtype == np.float32 and g.shape == z.shape
    ref = entry.cls()
    assert abs(ref.forward(z.astype(np.float64), y) - value) < 1e-5 * max(1.0, abs(value))
    np.testing.assert_allclose(g, ref.backward(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("entry", ENTRIES)
def test_smaller_batch_after_larger(entry):
    loss, fresh = entry.cls(), entry.cls()
    y = labels_for(entry.cls.labels, n=8)
    z = regression_logits(y) if entry.cls.labels == "real" else logits(n=8)
    loss.forward(z, y)
    loss.backward()
    assert loss.forward(z[:3], y[:3]) == pytest.approx(fresh.forward(z[:3], y[:3]), rel=1e-14)
    np.testing.assert_allclose(loss.backward(), fresh.backward(), rtol=1e-14)


# ---------------------------------------------------------------- softmax cross-entropy
def test_softmax_cross_entropy_formula():
    loss = LOSSES.get("softmax_cross_entropy").cls()
    z, y = logits(), labels_for("class")
    assert loss.forward(z, y) == pytest.approx(-log_softmax(z)[np.arange(N), y].mean(), rel=1e-13)
    p = np.exp(log_softmax(z))
    np.testing.assert_allclose(loss.backward(), (p - onehot(y)) / N, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(loss.predict(z), p, rtol=1e-12)
    assert loss.correct(z, y) == int(np.sum(z.argmax(1) == y))
    assert loss.out_width(10, None) == 10 and loss.out_width(None, 7) == 7
    assert LOSSES.get("cross_entropy").cls is LOSSES.get("categorical_cross_entropy").cls is type(loss)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_integer_and_onehot_labels_agree(eps):
    a = LOSSES.get("softmax_cross_entropy").cls(label_smoothing=eps)
    b = LOSSES.get("softmax_cross_entropy").cls(label_smoothing=eps)
    z, y = logits(), labels_for("class")
    assert a.forward(z, y) == pytest.approx(b.forward(z, onehot(y)), rel=1e-14)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-13, atol=1e-17)
    assert a.correct(z, y) == b.correct(z, onehot(y))


@pytest.mark.parametrize("labels", ["int", "onehot", "probabilities"])
def test_label_smoothing_formula_and_gradient(labels):
    eps = 0.2
    loss = LOSSES.get("softmax_cross_entropy").cls(label_smoothing=eps)
    z, yi = logits(), labels_for("class")
    y = {"int": yi, "onehot": onehot(yi), "probabilities": np.random.default_rng(3).dirichlet(np.ones(K), N)}[labels]
    rows = onehot(yi) if labels == "int" else y
    target = (1 - eps) * rows + eps / K
    assert loss.forward(z, y) == pytest.approx(-(target * log_softmax(z)).sum(1).mean(), rel=1e-13)
    g = loss.backward().copy()
    np.testing.assert_allclose(g, (np.exp(log_softmax(z)) - target) / N, rtol=1e-12, atol=1e-16)
    assert_grad_close(g, numeric_grad(lambda: loss.forward(z, y), z))


def test_softmax_cross_entropy_stable_at_1000():
    loss = LOSSES.get("softmax_cross_entropy").cls()
    for dtype in (np.float32, np.float64):
        z = np.array([[1000.0, -1000.0, 0.0], [1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]], dtype)
        y = np.array([0, 1, 2])
        assert loss.forward(z, y) == pytest.approx((0.0 + 2000.0 + math.log(3)) / 3, rel=1e-6)
        g = loss.backward()
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, np.array([[0, 0, 0], [3, -3, 0], [1, 1, -2]]) / 9, atol=1e-7)
        assert np.all(np.isfinite(loss.predict(z)))


# ---------------------------------------------------------------- sigmoid cross-entropy
def test_sigmoid_cross_entropy_formula():
    loss = LOSSES.get("sigmoid_cross_entropy").cls()
    z, y = logits(), labels_for("binary")
    p = 1 / (1 + np.exp(-z))
    assert loss.forward(z, y) == pytest.approx(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), (p - y) / y.size, rtol=1e-12)
    np.testing.assert_allclose(loss.predict(z), p, rtol=1e-12)
    assert loss.correct(z, y) == int(np.sum((p > 0.5) == (y == 1)))  # per label
    assert loss.out_width(2, None) == 1 and loss.out_width(None, 1) == 1 and loss.out_width(None, 5) == 5
    assert LOSSES.get("binary_cross_entropy").cls is type(loss)


def test_sigmoid_cross_entropy_one_column_labels():
    loss = LOSSES.get("sigmoid_cross_entropy").cls()
    z, y = logits(k=1), np.array([0, 1, 1, 0, 1, 0])  # labels [N] with one output column
    value = loss.forward(z, y)
    g = loss.backward().copy()
    assert value == pytest.approx(loss.forward(z, y.reshape(-1, 1).astype(np.float64)), rel=1e-15)
    assert_grad_close(g, numeric_grad(lambda: loss.forward(z, y), z))
    assert loss.correct(z, y) == int(np.sum((z[:, 0] > 0) == (y == 1)))  # per example


def test_sigmoid_cross_entropy_stable_at_1000():
    loss = LOSSES.get("sigmoid_cross_entropy").cls()
    for dtype in (np.float32, np.float64):
        z = np.array([[1000.0, -1000.0, 1000.0, -1000.0]], dtype)
        y = np.array([[1.0, 0.0, 0.0, 1.0]])
        assert loss.forward(z, y) == pytest.approx(2000.0 / 4, rel=1e-6)
        np.testing.assert_allclose(loss.backward(), [[0, 0, 0.25, -0.25]], atol=1e-7)
        np.testing.assert_allclose(loss.predict(z), [[1, 0, 1, 0]], atol=1e-7)


# ---------------------------------------------------------------- regression
REGRESSION = {  # name -> (elementwise loss, its derivative) of d = z - y, delta = 1.5 for huber
    "mse": (lambda d: d**2, lambda d: 2 * d),
    "mae": (lambda d: np.abs(d), lambda d: np.sign(d)),
    "huber": (lambda d: np.where(np.abs(d) <= 1.5, 0.5 * d**2, 1.5 * (np.abs(d) - 0.75)),
              lambda d: np.where(np.abs(d) <= 1.5, d, 1.5 * np.sign(d))),
}


def test_regression_table_covers_real_losses():
    assert set(REGRESSION) == {e.name for e in LOSSES.entries() if e.cls.labels == "real"}


@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_regression_formula(name):
    loss = LOSSES.get(name).cls(**({"delta": 1.5} if name == "huber" else {}))
    y = labels_for("real")
    z = regression_logits(y, delta=1.5)
    f, df = REGRESSION[name]
    d = z - y
    assert loss.forward(z, y) == pytest.approx(f(d).mean(), rel=1e-13)  # mean over all N*K
    g = loss.backward().copy()
    np.testing.assert_allclose(g, df(d) / d.size, rtol=1e-13)
    assert_grad_close(g, numeric_grad(lambda: loss.forward(z, y), z))
    assert loss.correct(z, y) is None
    np.testing.assert_array_equal(loss.predict(z), z)
    assert loss.out_width(None, K) == K
    # labels [N] for a single output column
    y1 = y[:, 0]
    assert loss.forward(z[:, :1], y1) == pytest.approx(f(z[:, 0] - y1).mean(), rel=1e-13)


def test_mae_gradient_at_zero_is_zero():
    loss = LOSSES.get("mae").cls()
    z = np.array([[1.0, 2.0]])
    assert loss.forward(z, z.copy()) == 0.0
    np.testing.assert_array_equal(loss.backward(), [[0.0, 0.0]])


# ---------------------------------------------------------------- torch as an oracle
def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    z, yi = logits(n=16, k=5, seed=4), labels_for("class", n=16, k=5, seed=5)
    yb, yr = labels_for("binary", n=16, k=5, seed=6), labels_for("real", n=16, k=5, seed=7)
    cases = {
        "softmax_cross_entropy": ({}, yi, lambda t: F.cross_entropy(t, torch.tensor(yi))),
        "sigmoid_cross_entropy": ({}, yb, lambda t: F.binary_cross_entropy_with_logits(t, torch.tensor(yb))),
        "mse": ({}, yr, lambda t: F.mse_loss(t, torch.tensor(yr))),
        "mae": ({}, yr, lambda t: F.l1_loss(t, torch.tensor(yr))),
        "huber": ({"delta": 0.7}, yr, lambda t: F.huber_loss(t, torch.tensor(yr), delta=0.7)),
    }
    assert set(cases) == set(LOSSES.names())
    smooth = LOSSES.get("softmax_cross_entropy").cls(label_smoothing=0.15)
    tests = [(LOSSES.get(n).cls(**kw), y, fn) for n, (kw, y, fn) in cases.items()]
    tests.append((smooth, yi, lambda t: F.cross_entropy(t, torch.tensor(yi), label_smoothing=0.15)))
    probs = np.random.default_rng(8).dirichlet(np.ones(5), 16)
    tests.append((LOSSES.get("softmax_cross_entropy").cls(), probs, lambda t: F.cross_entropy(t, torch.tensor(probs))))
    for dtype in (np.float32, np.float64):
        for loss, y, fn in tests:
            zz = z.astype(dtype)
            value = loss.forward(zz, y)
            g = loss.backward()
            t = torch.tensor(zz.astype(np.float64), requires_grad=True)
            out = fn(t)
            out.backward()
            assert value == pytest.approx(out.item(), rel=1e-6, abs=1e-6), type(loss).__name__
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-6, atol=1e-6, err_msg=type(loss).__name__)
