"""L-BFGS: convergence on problems with known minima, trajectories against torch.optim.LBFGS, exact resume."""

import json

import numpy as np
import pytest

from dnnspec.lbfgs import LBFGS
from dnnspec.optim import OPTIMIZERS


def make_closure(p, g, loss, grad):
    """The trainer's closure: loss at the current p, gradient written into g."""

    def closure():
        g[...] = grad(p)
        return loss(p)

    return closure


# ---------------------------------------------------------------- test problems, float64 formulas
def rosen(x):
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


def rosen_grad(x):
    r = x[1:] - x[:-1] ** 2
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * r - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * r
    return g


def test_rosenbrock_gradient_is_right():
    x = np.random.default_rng(0).standard_normal(6)
    h = 1e-6
    fd = [(rosen(x + h * e) - rosen(x - h * e)) / (2 * h) for e in np.eye(6)]
    np.testing.assert_allclose(rosen_grad(x), fd, rtol=1e-6)


def logistic_problem(n=200, k=5, seed=0):
    """Non-separable data (noisy labels), so the mean logistic loss has a finite minimiser."""
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((n, k)), np.ones((n, 1))])  # last column: the bias
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-X @ rng.standard_normal(k + 1))), 1.0, -1.0)
    return X, y


def logistic_fns(X, y, dtype):
    Xd, yd = X.astype(dtype), y.astype(dtype)

    def loss(w):
        return float(np.mean(np.logaddexp(0, -yd * (Xd @ w))))

    def grad(w):
        z = -yd * (Xd @ w)
        sig = np.exp(-np.logaddexp(0, -z))  # sigmoid(z), stable for either sign
        return (Xd.T @ (-yd * sig) / len(yd)).astype(dtype)

    return loss, grad


# ---------------------------------------------------------------- (1) quadratic: the exact minimiser
@pytest.mark.parametrize("line_search", ["none", "strong_wolfe"])
def test_quadratic_reaches_the_solution(line_search):
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    A = Q @ np.diag(np.linspace(1.0, 10.0, 20)) @ Q.T  # SPD, condition number 10
    b = rng.standard_normal(20)
    solution = np.linalg.solve(A, b)
    p, g = np.zeros(20), np.zeros(20)
    closure = make_closure(p, g, lambda x: float(0.5 * x @ A @ x - b @ x), lambda x: A @ x - b)
    # tolerance_change (on the loss, 1e-9 by default) would stop at |x - x*| ~ sqrt(2e-9/λ) ≈ 4e-5
    opt = LBFGS(line_search=line_search, tolerance_change=0.0)
    for _ in range(3):
        opt.step(p, g, closure, opt.lr)
    np.testing.assert_allclose(p, solution, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- (2) torch.optim.LBFGS, float64
def wiggly(x, k=3):
    """Many local minima along any line: every branch of the line search gets used."""
    return float(np.sum(0.1 * x * x + np.sin(k * x)))


def wiggly_grad(x, k=3):
    return 0.2 * x + k * np.cos(k * x)


PROBLEMS = {  # name: (loss, gradient, start)
    "rosen2": (rosen, rosen_grad, np.array([-1.2, 1.0])),
    "rosen10": (rosen, rosen_grad, np.tile([-1.2, 1.0], 5)),
    "wiggly6": (wiggly, wiggly_grad, 3 * np.random.default_rng(1).standard_normal(6)),
}

# Fixed steps on Rosenbrock are often chaotic: with n=10 and the defaults, torch against itself from
# a start one ulp away differs by 4e-2 after 5 steps. torch's p.add_(d, alpha=t) is a fused
# multiply-add where NumPy rounds twice, and its dot products sum in another order, so such cases
# are not comparable to 1e-6; the cases below stay within 1e-7 (most within 1e-9).
TORCH_CASES = [
    ("rosen2", "none", {}),
    ("rosen2", "none", {"max_iter": 3, "history_size": 3}),
    ("rosen2", "strong_wolfe", {}),
    ("rosen2", "strong_wolfe", {"max_iter": 4, "history_size": 3}),
    ("rosen2", "strong_wolfe", {"lr": 10, "max_iter": 4}),  # zoom: the first trial overshoots
    ("rosen2", "strong_wolfe", {"lr": 0.01, "max_eval": 3}),  # extrapolation, stopped by max_eval
    ("rosen10", "none", {"lr": 0.2, "history_size": 5}),
    ("rosen10", "none", {"max_iter": 4, "history_size": 3}),
    ("rosen10", "strong_wolfe", {}),
    ("rosen10", "strong_wolfe", {"max_iter": 4, "history_size": 3}),
    ("rosen10", "strong_wolfe", {"max_iter": 7, "max_eval": 5, "tolerance_change": 1e-4, "lr": 0.5}),
    ("rosen10", "none", {"max_iter": 6, "max_eval": 4, "tolerance_grad": 1e-2}),
    # the search keeps torch's own 1e-9 bracket tolerance whatever tolerance_change is
    ("wiggly6", "strong_wolfe", {"max_iter": 3, "tolerance_change": 1.0}),
    ("wiggly6", "none", {"lr": 0.1}),
]


def torch_kwargs(line_search, hp):
    kw = dict(hp)
    if kw.get("max_eval", 0) == 0:
        kw.pop("max_eval", None)  # our 0 is torch's None
    return {**kw, "line_search_fn": None if line_search == "none" else line_search}


def case_id(case):
    return f"{case[0]}-{case[1]}" + "".join(f"-{k}={v}" for k, v in case[2].items())


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_matches_torch_trajectory(case):
    torch = pytest.importorskip("torch")
    problem, line_search, hp = case
    loss, grad, x0 = PROBLEMS[problem]
    w = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.LBFGS([w], **torch_kwargs(line_search, hp))

    def torch_closure():  # same formulas: the optimizers are what is compared
        x = w.detach().numpy()
        w.grad = torch.tensor(grad(x))
        return torch.tensor(loss(x), dtype=torch.float64)

    p, g = x0.copy(), np.zeros_like(x0)
    opt = LBFGS(line_search=line_search, **hp)
    closure = make_closure(p, g, loss, grad)
    for k in range(10):
        # The returned loss is f at the step's starting point; where the two starting points differ
        # by rounding (BLAS dot products differ between CPUs), f differs by up to |grad f|·|dp|.
        slack = 2.0 * np.linalg.norm(grad(p)) * np.linalg.norm(p - w.detach().numpy())
        ours, theirs = opt.step(p, g, closure, opt.lr), float(topt.step(torch_closure))
        ref = w.detach().numpy()
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-12 + slack), k
        np.testing.assert_allclose(p, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max(), err_msg=f"step {k + 1}")
        st = topt.state[w]
        assert (opt._n_iter, opt._func_evals) == (st["n_iter"], st["func_evals"]), f"step {k + 1}"
    assert np.abs(p - x0).max() > 0.1  # it moved


@pytest.mark.parametrize("k", [3, 5])
def test_strong_wolfe_matches_torch_line_search(k):
    # torch's private _strong_wolfe against ours on 200 random searches: bracketing, extrapolation,
    # the max_ls fallback, zoom with the insufficient-progress rule and its tolerance exit
    torch = pytest.importorskip("torch")
    from torch.optim.lbfgs import _strong_wolfe as torch_strong_wolfe

    from dnnspec.lbfgs import _strong_wolfe

    def torch_dot(a, b):  # both sides see the same slopes: torch's dot sums in another order
        return torch.tensor(a).dot(torch.tensor(b)).numpy()[()]

    rng = np.random.default_rng(0)
    ends = set()
    for i in range(200):
        x = 2 * rng.standard_normal(3)
        d = -wiggly_grad(x, k) if i % 2 else rng.standard_normal(3)
        d = -d if np.dot(d, wiggly_grad(x, k)) > 0 else d
        f0, g0 = wiggly(x, k), wiggly_grad(x, k)
        gtd = torch_dot(g0, d)
        t0 = float(10 ** rng.uniform(-3, 1.5))
        max_ls, tol = int(rng.choice([1, 2, 3, 25])), float(rng.choice([1e-9, 1e-2, 3.0]))

        def obj_func(x_, t, d_):
            xt = x + float(t) * d
            return wiggly(xt, k), torch.tensor(wiggly_grad(xt, k))

        tf, tg, tt, tn = torch_strong_wolfe(obj_func, [torch.tensor(x)], t0, torch.tensor(d), f0,
                                            torch.tensor(g0), torch.tensor(gtd), tolerance_change=tol, max_ls=max_ls)
        g = np.empty(3)

        def evaluate(t):
            xt = x + t * d
            g[...] = wiggly_grad(xt, k)
            return wiggly(xt, k), torch_dot(g, d)

        def keep(buf):
            np.copyto(buf, g)
            return buf

        mf, mg, mt, mn = _strong_wolfe(evaluate, keep, f0, g0.copy(), gtd, t0, d, (np.empty(3), np.empty(3)),
                                       tolerance_change=tol, max_ls=max_ls)
        assert mn == tn, i
        # torch divides a float by a tensor as reciprocal-then-multiply: a few ulps apart at most
        assert float(mt) == pytest.approx(float(tt), rel=1e-12), i
        assert mf == pytest.approx(tf, rel=1e-12, abs=1e-15), i
        np.testing.assert_allclose(mg, tg.numpy(), rtol=1e-12, atol=1e-15, err_msg=str(i))
        ends.add((mn, max_ls))
    assert len(ends) > 10


# ---------------------------------------------------------------- (3) float32 logistic regression
def test_logistic_float32_decreases_monotonically():
    X, y = logistic_problem()
    loss, grad = logistic_fns(X, y, np.float32)
    p, g = np.zeros(X.shape[1], np.float32), np.zeros(X.shape[1], np.float32)
    addresses = (p.ctypes.data, g.ctypes.data)
    seen = []

    def closure():
        assert p.dtype == g.dtype == np.float32 and (p.ctypes.data, g.ctypes.data) == addresses
        g[...] = grad(p)
        seen.append(loss(p))
        return seen[-1]

    opt = LBFGS(max_iter=2, line_search="strong_wolfe")
    losses = [opt.step(p, g, closure, opt.lr) for _ in range(12)] + [loss(p)]
    assert p.dtype == np.float32 and np.all(np.isfinite(p))
    assert np.all(np.diff(losses) <= 0), losses
    # the float64 minimiser by Newton's method, independently
    w = np.zeros(X.shape[1])
    for _ in range(30):
        s = 1 / (1 + np.exp(-y * (X @ w)))
        H = (X.T * (s * (1 - s))) @ X / len(y)
        w -= np.linalg.solve(H, X.T @ (-y * (1 - s)) / len(y))
    best = float(np.mean(np.logaddexp(0, -y * (X @ w))))
    assert losses[0] - best > 0.1  # there was a long way to go
    assert losses[-1] - best < 1e-5


# ---------------------------------------------------------------- (4) exact resume
@pytest.mark.parametrize("line_search", ["none", "strong_wolfe"])
def test_state_dict_resume_is_bit_identical(line_search):
    X, y = logistic_problem(n=300, k=30, seed=1)
    loss, grad = logistic_fns(X, y, np.float32)
    p0 = np.random.default_rng(2).standard_normal(X.shape[1]).astype(np.float32)
    hp = {"max_iter": 4, "history_size": 3, "line_search": line_search}

    p, g = p0.copy(), np.zeros_like(p0)
    whole = LBFGS(**hp)
    for _ in range(6):
        whole.step(p, g, make_closure(p, g, loss, grad), 1.0)

    q, h = p0.copy(), np.zeros_like(p0)
    first = LBFGS(**hp)
    for _ in range(3):
        first.step(q, h, make_closure(q, h, loss, grad), 1.0)
    scalars, arrays = first.state_dict()
    assert len(arrays["old_dirs"]) == 3  # the history is full: rotation happens after the resume
    scalars = json.loads(json.dumps(scalars))
    arrays = {k: v.copy() for k, v in arrays.items()}
    second = LBFGS(**first.hyperparameters())
    second.load_state_dict(scalars, arrays)
    s2, a2 = second.state_dict()  # the round trip loses nothing
    assert s2 == scalars and all(np.array_equal(a2[k], v) and a2[k].dtype == v.dtype for k, v in arrays.items())
    for _ in range(3):
        second.step(q, h, make_closure(q, h, loss, grad), 1.0)

    assert q.dtype == np.float32 and np.array_equal(p, q)
    assert not np.array_equal(q, p0)
    s1, a1 = whole.state_dict()
    s2, a2 = second.state_dict()
    assert s1 == s2 and a1.keys() == a2.keys()
    assert all(np.array_equal(a1[k], a2[k]) and a1[k].dtype == np.float32 for k in a1)


def test_state_dict_before_any_step():
    scalars, arrays = LBFGS().state_dict()
    assert arrays == {} and scalars["n_iter"] == 0
    opt = LBFGS()
    opt.load_state_dict(json.loads(json.dumps(scalars)), arrays)
    p, g = np.zeros(20), np.zeros(20)
    opt.step(p, g, make_closure(p, g, rosen, rosen_grad), 1.0)
    assert opt._n_iter > 0


# ---------------------------------------------------------------- (5) the registry entry
def test_update_raises_a_clear_type_error():
    opt = OPTIMIZERS.get("l_bfgs").cls()
    p = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match=r"lbfgs needs a closure.*step\(p, g, closure, lr\)"):
        opt.update(p, p.copy(), {}, 0.1, 1)


def test_registry_entry_and_defaults():
    entry = OPTIMIZERS.get("lbfgs")
    assert entry.cls is LBFGS and LBFGS.closure_based
    defaults = {p.name: p.default for p in entry.params}
    assert defaults == {"lr": 1.0, "max_iter": 20, "max_eval": 0, "tolerance_grad": 1e-7,
                        "tolerance_change": 1e-9, "history_size": 100, "line_search": "none"}
    hp = LBFGS(line_search="strong_wolfe", max_iter=8).hyperparameters()
    assert set(hp) == set(defaults) and LBFGS(**hp).hyperparameters() == hp


@pytest.mark.parametrize("line_search", ["none", "strong_wolfe"])
def test_max_eval_zero_means_max_iter_times_five_fourths(line_search):
    # a step never calls the closure more than max_eval times, max_iter·5//4 = 10 by default
    calls = []
    p, g = np.tile([-1.2, 1.0], 5), np.zeros(10)
    inner = make_closure(p, g, rosen, rosen_grad)

    def closure():
        calls.append(1)
        return inner()

    opt = LBFGS(max_iter=8, line_search=line_search, tolerance_change=0.0)
    counts = []
    for _ in range(4):
        calls.clear()
        opt.step(p, g, closure, 1.0)
        counts.append(len(calls))
    # without a line search: the start plus one per iteration but the last (evaluated by the next step)
    assert counts == [8] * 4 if line_search == "none" else max(counts) == 10, counts
