"""Optimizers against their formulas written out here (float64), and against torch.optim."""

import math
import tracemalloc

import numpy as np
import pytest

from dnnspec.optim import OPTIMIZERS, Optimizer
from dnnspec.registry import Float

# L-BFGS re-evaluates the loss through a closure (tests/test_lbfgs.py); the rest share update()
ALL = [e.name for e in OPTIMIZERS.entries() if not getattr(e.cls, "closure_based", False)]


def make(name, **kw):
    return OPTIMIZERS.get(name).cls(**kw)


def new_state(opt, p, rng=None):
    """Slots at zero; scratch filled with garbage (its contents are undefined between calls)."""
    state = {k: np.zeros_like(p) for k in opt.slots}
    state.update({k: np.full_like(p, np.nan) for k in opt.scratch})
    return state


def run(opt, p0, grad, lrs, dtype, t0=1, state=None):
    p = np.array(p0, dtype=dtype)
    state = new_state(opt, p) if state is None else state
    for i, lr in enumerate(lrs):
        for k in opt.scratch:
            state[k].fill(np.nan)
        opt.update(p, grad(p).astype(dtype), state, lr, t0 + i)
    return p, state


# ---------------------------------------------------------------- the formulas, independently
# Each reference takes the whole history of gradients-so-far through a dict `s` of float64
# arrays and returns the new parameters; written as the papers/torch docs state them.
def ref_sgd(p, g, s, lr, t):
    return p - lr * g


def ref_momentum(p, g, s, lr, t, momentum=0.9, nesterov=False):
    s["b"] = g.copy() if t == 1 else momentum * s["b"] + g
    d = g + momentum * s["b"] if nesterov else s["b"]
    return p - lr * d


def ref_adagrad(p, g, s, lr, t, initial_accumulator=0.0, epsilon=1e-10):
    s["sum"] = (np.full_like(g, initial_accumulator) if t == 1 else s["sum"]) + g * g
    return p - lr * g / (np.sqrt(s["sum"]) + epsilon)


def ref_rmsprop(p, g, s, lr, t, rho=0.9, momentum=0.0, centered=False, epsilon=1e-8):
    s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g**2
    if centered:
        s["a"] = rho * s.get("a", 0.0) + (1 - rho) * g
        d = np.sqrt(s["v"] - s["a"] ** 2) + epsilon
    else:
        d = np.sqrt(s["v"]) + epsilon
    if momentum:
        s["b"] = momentum * s.get("b", 0.0) + g / d
        return p - lr * s["b"]
    return p - lr * g / d


def ref_adam(p, g, s, lr, t, beta1=0.9, beta2=0.999, epsilon=1e-8, amsgrad=False, epsilon_hat=False,
             weight_decay=0.0):
    p = p * (1 - lr * weight_decay)
    s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * g
    s["v"] = beta2 * s.get("v", 0.0) + (1 - beta2) * g**2
    v = s["v"]
    if amsgrad:
        s["vmax"] = v = np.maximum(s.get("vmax", 0.0), v)
    if epsilon_hat:  # Kingma & Ba §2, last paragraph: α_t = α·sqrt(1-β2^t)/(1-β1^t), ε̂
        alpha = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        return p - alpha * s["m"] / (np.sqrt(v) + epsilon)
    m_hat = s["m"] / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + epsilon)


def ref_adamw(p, g, s, lr, t, weight_decay=0.01, **kw):
    return ref_adam(p, g, s, lr, t, weight_decay=weight_decay, **kw)


def ref_nadam(p, g, s, lr, t, beta1=0.9, beta2=0.999, epsilon=1e-8, momentum_decay=0.004):
    def mu(i):
        return beta1 * (1 - 0.5 * 0.96 ** (i * momentum_decay))

    prod_t = math.prod(mu(i) for i in range(1, t + 1))
    prod_next = prod_t * mu(t + 1)
    s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * g
    s["v"] = beta2 * s.get("v", 0.0) + (1 - beta2) * g**2
    d = np.sqrt(s["v"] / (1 - beta2**t)) + epsilon
    return p - lr * (1 - mu(t)) / (1 - prod_t) * g / d - lr * mu(t + 1) / (1 - prod_next) * s["m"] / d


def ref_adamax(p, g, s, lr, t, beta1=0.9, beta2=0.999, epsilon=1e-8):
    s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * g
    s["u"] = np.maximum(beta2 * s.get("u", 0.0), np.abs(g) + epsilon)
    return p - lr / (1 - beta1**t) * s["m"] / s["u"]


REFS = {
    "sgd": ref_sgd, "momentum": ref_momentum, "adagrad": ref_adagrad, "rmsprop": ref_rmsprop,
    "adam": ref_adam, "adamw": ref_adamw, "nadam": ref_nadam, "adamax": ref_adamax,
    "nesterov": lambda *a, **kw: ref_momentum(*a, nesterov=True, **kw),
}

# (name, hyper-parameters): every option that changes the formula at least once
CASES = [
    ("sgd", {"lr": 0.1}),
    ("momentum", {"lr": 0.1}),
    ("momentum", {"lr": 0.1, "momentum": 0.5}),
    ("nesterov", {"lr": 0.1, "momentum": 0.8}),
    ("adagrad", {"lr": 0.3}),
    ("adagrad", {"lr": 0.3, "initial_accumulator": 0.1, "epsilon": 1e-7}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "rho": 0.5, "centered": True}),
    ("rmsprop", {"lr": 0.01, "rho": 0.8, "momentum": 0.7}),
    ("rmsprop", {"lr": 0.01, "rho": 0.8, "momentum": 0.7, "centered": True}),
    ("adam", {"lr": 0.05}),
    ("adam", {"lr": 0.05, "beta2": 0.5, "amsgrad": True}),
    ("adam", {"lr": 0.05, "epsilon": 0.1, "epsilon_hat": True}),
    ("adam", {"lr": 0.05, "beta2": 0.5, "epsilon": 0.1, "amsgrad": True, "epsilon_hat": True}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.5}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.5, "beta2": 0.5, "amsgrad": True}),
    ("nadam", {"lr": 0.05}),
    ("nadam", {"lr": 0.05, "momentum_decay": 1.0, "epsilon": 1e-7}),
    ("adamax", {"lr": 0.05}),
    ("adamax", {"lr": 0.05, "beta1": 0.5, "beta2": 0.6, "epsilon": 0.3}),
]

# a small quadratic f(p) = ½ Σ a (p - c)², with curvatures spread so the steps differ per element
A = np.array([0.5, 1.0, 2.0, 3.0, 0.2, 4.0])
C = np.array([3.0, -2.0, 2.5, -3.0, 1.5, 2.0])
P0 = np.array([1.0, 1.5, -1.0, 0.5, -2.0, 1.0])


def quad_grad(p):
    return (A * (p.astype(np.float64) - C)).astype(p.dtype)


LRS = [1.0, 0.7, 1.3]  # multipliers of lr per step: where lr enters the update matters


def reference(name, hp, steps, lrs=LRS, p0=P0, grad=quad_grad):
    hp = dict(hp)
    lr = hp.pop("lr")
    p, s = p0.astype(np.float64), {}
    for t in range(1, steps + 1):
        p = REFS[name](p, grad(p), s, lr * lrs[t - 1], t, **hp)
    return p


def case_id(case):
    name, hp = case
    return name + "".join(f"-{k}={v}" for k, v in hp.items() if k != "lr")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_three_steps_match_the_formula(case):
    name, hp = case
    opt = make(name, **hp)
    lrs = [hp["lr"] * m for m in LRS]
    expect = reference(name, hp, 3)
    p32, _ = run(opt, P0, quad_grad, lrs, np.float32)
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, expect, rtol=1e-6, atol=1e-7)
    p64, _ = run(make(name, **hp), P0, quad_grad, lrs, np.float64)
    np.testing.assert_allclose(p64, expect, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", [c for c in CASES if len(c[1]) > 1], ids=case_id)
def test_each_option_changes_the_trajectory(case):
    # so that the cases above pin the option down: they would fail if it were ignored
    name, hp = case
    base = {"lr": hp["lr"]}
    assert not np.allclose(reference(name, hp, 3), reference(name, base, 3), rtol=1e-5, atol=0)


def test_every_optimizer_has_a_formula_case():
    assert {name for name, _ in CASES} == set(ALL)


# ---------------------------------------------------------------- generic properties
@pytest.mark.parametrize("name", ALL)
def test_signature_starts_with_lr(name):
    first = OPTIMIZERS.get(name).params[0]
    assert first.name == "lr" and isinstance(first.type, Float) and first.type.gt == 0
    assert isinstance(first.default, float) and first.default > 0


def all_option_instances(name):
    """The default instance plus one with every boolean option on and momenta non-zero."""
    entry = OPTIMIZERS.get(name)
    loaded = {p.name: True for p in entry.params if p.type is bool}
    if entry.param("momentum"):
        loaded["momentum"] = 0.5
    return [entry.cls(), entry.cls(**loaded)]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_keeps_dtype_and_state_identity(name, dtype):
    for opt in all_option_instances(name):
        rng = np.random.default_rng(0)
        p = rng.standard_normal(1000).astype(dtype)
        state = new_state(opt, p)
        before = {k: (id(v), v.ctypes.data) for k, v in state.items()}
        p_addr = p.ctypes.data
        for t in range(1, 6):
            g = rng.standard_normal(1000).astype(dtype)
            opt.update(p, g, state, 0.01, t)
        assert p.dtype == dtype and p.ctypes.data == p_addr and np.isfinite(p).all()
        assert set(state) == set(opt.slots) | set(opt.scratch)
        for k, v in state.items():
            assert (id(v), v.ctypes.data) == before[k] and v.dtype == dtype, k


@pytest.mark.parametrize("name", ALL)
def test_update_allocates_no_arrays(name):
    for opt in all_option_instances(name):
        rng = np.random.default_rng(0)
        p = rng.standard_normal(100_000).astype(np.float32)
        g = rng.standard_normal(100_000).astype(np.float32)
        state = new_state(opt, p)
        opt.update(p, g, state, 0.01, 1)
        tracemalloc.start()  # NumPy reports its data buffers to tracemalloc
        try:
            for t in range(2, 5):
                opt.update(p, g, state, np.float64(0.01), np.int64(t))  # NumPy scalars must not upcast
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 0.05 * p.nbytes, f"{opt.hyperparameters()} allocated {peak} bytes"
        assert p.dtype == np.float32


@pytest.mark.parametrize("name", ALL)
def test_resume_is_exact(name):
    # a fresh instance given the saved slots continues bit for bit (NAdam's μ product included)
    for opt in all_option_instances(name):
        rng = np.random.default_rng(1)
        grads = rng.standard_normal((12, 50)).astype(np.float32)
        p = rng.standard_normal(50).astype(np.float32)
        state = new_state(opt, p)
        for t in range(1, 13):
            opt.update(p, grads[t - 1], state, 0.01, t)
        q = rng.standard_normal(50).astype(np.float32)
        # same start, broken after 7 steps: slots copied, optimizer rebuilt from its hyper-parameters
        p2, st = q.copy(), new_state(opt, q)
        for t in range(1, 8):
            opt.update(p2, grads[t - 1], st, 0.01, t)
        saved = {k: st[k].copy() for k in opt.slots}
        fresh = type(opt)(**opt.hyperparameters())
        st2 = new_state(fresh, q)
        for k in fresh.slots:
            st2[k][...] = saved[k]
        p3 = p2.copy()
        for t in range(8, 13):
            opt.update(p2, grads[t - 1], st, 0.01, t)
            fresh.update(p3, grads[t - 1], st2, 0.01, t)
        assert np.array_equal(p2, p3)


@pytest.mark.parametrize("name", ALL)
def test_hyperparameters_rebuild_the_optimizer(name):
    for opt in all_option_instances(name):
        hp = opt.hyperparameters()
        assert set(hp) == {p.name for p in OPTIMIZERS.get(name).params}
        assert type(opt)(**hp).hyperparameters() == hp


def test_registered_entries_are_optimizers():
    assert all(issubclass(e.cls, Optimizer) for e in OPTIMIZERS.entries())


def test_nadam_mu_product_survives_out_of_order_steps():
    opt = make("nadam")
    direct = math.prod(opt.mu(i) for i in range(1, 11))
    assert opt.mu_product(10) == pytest.approx(direct, rel=1e-15)
    assert opt.mu_product(3) == pytest.approx(math.prod(opt.mu(i) for i in range(1, 4)), rel=1e-15)
    assert opt.mu_product(10) == opt.mu_product(10) == pytest.approx(direct, rel=1e-15)


# ---------------------------------------------------------------- torch oracle (float64, 100 steps)
def torch_case(torch, name, hp):
    """The torch.optim optimizer with the same settings, plus a per-step hook (eps_t for Keras Adam)."""
    hp = dict(hp)
    lr = hp.pop("lr")
    betas = (hp.pop("beta1", 0.9), hp.pop("beta2", 0.999))
    o = torch.optim
    hook = None
    if name == "sgd":
        make_opt = lambda ps: o.SGD(ps, lr=lr)  # noqa: E731
    elif name in ("momentum", "nesterov"):
        make_opt = lambda ps: o.SGD(ps, lr=lr, momentum=hp.get("momentum", 0.9),  # noqa: E731
                                    nesterov=name == "nesterov")
    elif name == "adagrad":
        make_opt = lambda ps: o.Adagrad(ps, lr=lr, initial_accumulator_value=hp.get(  # noqa: E731
            "initial_accumulator", 0.0), eps=hp.get("epsilon", 1e-10))
    elif name == "rmsprop":
        make_opt = lambda ps: o.RMSprop(ps, lr=lr, alpha=hp.get("rho", 0.9), eps=hp.get(  # noqa: E731
            "epsilon", 1e-8), momentum=hp.get("momentum", 0.0), centered=hp.get("centered", False))
    elif name in ("adam", "adamw"):
        eps = hp.get("epsilon", 1e-8)
        cls = o.AdamW if name == "adamw" else o.Adam
        extra = {"weight_decay": hp.get("weight_decay", 0.01)} if name == "adamw" else {}
        make_opt = lambda ps: cls(ps, lr=lr, betas=betas, eps=eps,  # noqa: E731
                                  amsgrad=hp.get("amsgrad", False), **extra)
        if hp.get("epsilon_hat"):
            # Keras' ε̂ is torch's ε divided by sqrt(1-β2^t) at step t (CONVENTIONS §1)
            def hook(opt, t):
                opt.param_groups[0]["eps"] = eps / math.sqrt(1 - betas[1] ** t)
    elif name == "nadam":
        make_opt = lambda ps: o.NAdam(ps, lr=lr, betas=betas, eps=hp.get("epsilon", 1e-8),  # noqa: E731
                                      momentum_decay=hp.get("momentum_decay", 0.004))
    elif name == "adamax":
        make_opt = lambda ps: o.Adamax(ps, lr=lr, betas=betas, eps=hp.get("epsilon", 1e-8))  # noqa: E731
    return make_opt, hook


TORCH_CASES = CASES + [
    ("rmsprop", {"lr": 0.01, "rho": 0.99}),  # torch's default alpha
    ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "amsgrad": True}),
    ("nadam", {"lr": 0.01, "beta1": 0.95, "momentum_decay": 0.1}),
]


@pytest.fixture
def torch64():
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch keeps NAdam's μ product in the default dtype
    yield torch
    torch.set_default_dtype(old)


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_matches_torch_over_100_steps(case, torch64):
    torch = torch64
    name, hp = case
    rng = np.random.default_rng(42)
    X = rng.standard_normal((64, 10))
    y = X @ rng.standard_normal(10) + 0.1 * rng.standard_normal(64)
    p0 = rng.standard_normal(10)
    lr_mult = 1.0 + 0.5 * np.sin(np.arange(100))  # an lr schedule: where lr enters matters

    def grad(p):  # linear regression, mean squared error
        return X.T @ (X @ p - y) / len(y)

    make_opt, hook = torch_case(torch, name, hp)
    w = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    topt = make_opt([w])
    opt = make(name, **hp)
    p = p0.copy()
    state = new_state(opt, p)
    for t in range(1, 101):
        lr = hp["lr"] * float(lr_mult[t - 1])
        g = grad(p)
        opt.update(p, g, state, lr, t)
        w.grad = torch.tensor(grad(w.detach().numpy()))
        topt.param_groups[0]["lr"] = lr
        if hook:
            hook(topt, t)
        topt.step()
    np.testing.assert_allclose(p, w.detach().numpy(), rtol=1e-6, atol=1e-9)
    assert np.abs(p - p0).max() > 10 * hp["lr"] * 1e-3  # it actually moved
