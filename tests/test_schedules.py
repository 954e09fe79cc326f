"""Schedules against closed forms written out here, and against torch.optim.lr_scheduler."""

import math

import numpy as np
import pytest

from dnnspec.schedules import SCHEDULES, Schedule, Warmup

LR0 = 0.1
KS = [0, 1, 2, 9, 10, 11, 29, 30, 31, 49, 50, 79, 80, 99, 100, 150]

# One example argument set per entry; a new entry must add one here (test below).
EXAMPLES = {
    "constant": {},
    "step": {"step_size": 30, "gamma": 0.5},
    "multistep": {"milestones": "20,50,80", "gamma": 0.5},
    "exponential": {"gamma": 0.97},
    "exponential_decay": {"decay_rate": 0.1, "decay_steps": 40},
    "inverse_time": {"decay": 0.5, "decay_steps": 10},
    "power": {"steps": 20, "c": 2.0},
    "polynomial": {"total_steps": 80, "power": 2.0},
    "cosine": {"total_steps": 100, "eta_min": 1e-3},
    "cosine_restarts": {"t0": 10, "t_mult": 2, "eta_min": 1e-3},
    "onecycle": {"max_lr": 0.2, "total_steps": 100},
    "reduce_on_plateau": {"patience": 2},
}


def make(name, **kw):
    return SCHEDULES.get(name).cls(**kw)


def values(sched, n=100, lr0=LR0):
    return [sched(lr0, k) for k in range(n)]


def close(a, b, rel=1e-12):
    return a == pytest.approx(b, rel=rel, abs=1e-15)


# ---------------------------------------------------------------- generic
def test_every_entry_has_an_example():
    assert set(EXAMPLES) == {e.name for e in SCHEDULES.entries()}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_returns_python_floats_and_starts_sensibly(name):
    s = make(name, **EXAMPLES[name])
    assert isinstance(s, Schedule)
    for k in KS:
        v = s(LR0, k)
        assert type(v) is float and math.isfinite(v) and v >= 0
    if name != "onecycle":  # onecycle sets its own rate
        assert s(LR0, 0) == LR0
    s.load_state_dict(s.state_dict())  # every schedule can be saved and restored


# ---------------------------------------------------------------- closed forms
def test_step():
    s = make("step", step_size=30, gamma=0.5)
    for k in KS:
        assert close(s(LR0, k), LR0 * 0.5 ** (k // 30))
    assert SCHEDULES.get("step_decay").name == "step"


def test_multistep():
    s = make("multistep", milestones="20, 50,80", gamma=0.5)
    expect = {0: 1, 19: 1, 20: 0.5, 49: 0.5, 50: 0.25, 79: 0.25, 80: 0.125, 150: 0.125}
    for k, f in expect.items():
        assert close(s(LR0, k), LR0 * f)


@pytest.mark.parametrize("text", ["", "20,,50", "a,b", "50,20", "20,20", "0,10", "-5", "1.5"])
def test_multistep_rejects_bad_milestones(text):
    assert SCHEDULES.get("multistep").cls.validate(milestones=text)
    with pytest.raises(ValueError):
        make("multistep", milestones=text)


def test_multistep_accepts_good_milestones():
    assert SCHEDULES.get("multistep").cls.validate(milestones="1,2,300") is None


def test_exponential_and_exponential_decay():
    s = make("exponential", gamma=0.97)
    for k in KS:
        assert close(s(LR0, k), LR0 * math.exp(k * math.log(0.97)))
    smooth = make("exponential_decay", decay_rate=0.1, decay_steps=40)
    stairs = make("exponential_decay", decay_rate=0.1, decay_steps=40, staircase=True)
    for k in KS:
        assert close(smooth(LR0, k), LR0 * 10 ** (-k / 40))
        assert close(stairs(LR0, k), LR0 * 10 ** -math.floor(k / 40))
    assert close(smooth(LR0, 40), LR0 / 10) and close(smooth(LR0, 20), LR0 / math.sqrt(10))


def test_inverse_time_and_power():
    inv = make("inverse_time", decay=0.5, decay_steps=10)
    pw = make("power", steps=20, c=2.0)
    for k in KS:
        assert close(inv(LR0, k), LR0 / (1 + 0.05 * k))
        assert close(pw(LR0, k), LR0 * (20 / (20 + k)) ** 2)
    # Hands-On ML: with c = 1 the rate is lr0/2 after s steps, lr0/3 after 2s
    pw1 = make("power", steps=20)
    assert close(pw1(LR0, 20), LR0 / 2) and close(pw1(LR0, 40), LR0 / 3)


def test_polynomial():
    s = make("polynomial", total_steps=80, power=2.0)
    e = make("polynomial", total_steps=80, power=0.5, end_lr=0.01)
    for k in KS:
        left = max(80 - k, 0) / 80
        assert close(s(LR0, k), LR0 * left * left)
        assert close(e(LR0, k), 0.01 + (LR0 - 0.01) * math.sqrt(left))
    assert s(LR0, 80) == 0.0 and s(LR0, 1000) == 0.0 and close(e(LR0, 500), 0.01)


def test_cosine_clamps_after_total_steps():
    s = make("cosine", total_steps=100, eta_min=1e-3)
    for k in KS:
        x = min(k, 100) / 100
        assert close(s(LR0, k), 1e-3 + (LR0 - 1e-3) * (1 + math.cos(math.pi * x)) / 2)
    assert close(s(LR0, 50), (LR0 + 1e-3) / 2) and close(s(LR0, 100), 1e-3) and close(s(LR0, 170), 1e-3)
    torchlike = make("cosine", total_steps=100, eta_min=1e-3, clamp=False)
    assert close(torchlike(LR0, 150), (LR0 + 1e-3) / 2) and close(torchlike(LR0, 200), LR0)


def test_cosine_restarts():
    s = make("cosine_restarts", t0=10, t_mult=2, eta_min=1e-3)
    starts = [0, 10, 30, 70, 150]  # cycles of 10, 20, 40, 80
    for k in range(200):
        i = max(j for j, st in enumerate(starts) if st <= k)
        length = 10 * 2**i
        x = (k - starts[i]) / length
        assert close(s(LR0, k), 1e-3 + (LR0 - 1e-3) * (1 + math.cos(math.pi * x)) / 2)
    for k in starts:
        assert close(s(LR0, k), LR0)
    triple = make("cosine_restarts", t0=5, t_mult=3)  # cycles of 5, 15, 45 from k = 0, 5, 20, 65
    cycles = {3: (0, 5), 5: (5, 15), 19: (5, 15), 20: (20, 45), 64: (20, 45), 70: (65, 135)}
    for k, (start, length) in cycles.items():
        assert close(triple(LR0, k), LR0 * (1 + math.cos(math.pi * (k - start) / length)) / 2)
    flat = make("sgdr", t0=7)
    for k in range(50):
        assert close(flat(LR0, k), LR0 * (1 + math.cos(math.pi * (k % 7) / 7)) / 2)
    decaying = make("cosine_restarts", t0=10, m_mul=0.5)  # Keras' m_mul: cycle i peaks at lr0·0.5^i
    assert close(decaying(LR0, 20), LR0 / 4) and close(decaying(LR0, 25), LR0 / 8)


def test_onecycle_torch_phase_boundaries():
    s = make("onecycle", max_lr=0.2, total_steps=100)
    start, end = 0.2 / 25, 0.2 / 25 / 1e4
    for k in range(100):
        if k <= 29:  # phase 1 ends at 0.3·100 - 1 = 29
            a, b, x = start, 0.2, k / 29
        else:
            a, b, x = 0.2, end, (k - 29) / 70
        assert close(s(LR0, k), b + (a - b) * (1 + math.cos(math.pi * x)) / 2)
    assert close(s(LR0, 0), start) and close(s(LR0, 29), 0.2) and close(s(LR0, 99), end)
    assert close(s(LR0, 100), end) and close(s(123.0, 500), end)  # ignores lr0, holds the end
    lin = make("onecycle", max_lr=0.2, total_steps=100, pct_start=0.25, anneal="linear")
    assert close(lin(LR0, 12), start + (0.2 - start) * 12 / 24)
    assert close(lin(LR0, 62), 0.2 + (end - 0.2) * (62 - 24) / 75)


def test_onecycle_validates_warmup_length():
    validate = SCHEDULES.get("onecycle").cls.validate
    assert validate(total_steps=100, pct_start=0.3) is None
    assert validate(total_steps=3, pct_start=0.3)


def test_warmup_then_inner_restarted_at_zero():
    inner = make("cosine", total_steps=90)
    s = Warmup(inner, steps=10, start_factor=0.1)
    for k in range(120):
        if k < 10:
            expect = LR0 * (0.1 + 0.9 * k / 10)
        else:
            expect = LR0 * (1 + math.cos(math.pi * min(k - 10, 90) / 90)) / 2
        assert close(s(LR0, k), expect)
    z = Warmup(make("constant"), steps=4)
    assert [z(1.0, k) for k in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ValueError):
        Warmup(inner, steps=0)


# ---------------------------------------------------------------- reduce on plateau (torch semantics)
def plateau_reference(metrics, lr0, factor, patience, threshold, threshold_mode, cooldown, min_lr, mode,
                      eps=1e-8):
    """The rule of CONVENTIONS §2, written out: the lr in force after each observed metric."""
    best = math.inf if mode == "min" else -math.inf
    bad = cool = 0
    lr, out = lr0, []
    for a in metrics:
        if mode == "min":
            better = a < (best * (1 - threshold) if threshold_mode == "rel" else best - threshold)
        else:
            better = a > (best * (1 + threshold) if threshold_mode == "rel" else best + threshold)
        if better:
            best, bad = a, 0
        else:
            bad += 1
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > eps:
                lr = new
            cool, bad = cooldown, 0
        out.append(lr)
    return out


METRICS = [1.0, 0.9, 0.95, 0.9, 0.91, 0.8999, 0.89995, 0.92, 0.93, 0.7, 0.71, 0.72, 0.73, 0.7, 0.75,
           0.69993, 0.6999, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]

PLATEAU = [
    dict(factor=0.5, patience=2, threshold=1e-4, threshold_mode="rel", cooldown=0, min_lr=0.0, mode="min"),
    dict(factor=0.5, patience=1, threshold=0.01, threshold_mode="abs", cooldown=2, min_lr=0.02, mode="min"),
    dict(factor=0.1, patience=0, threshold=1e-4, threshold_mode="rel", cooldown=1, min_lr=0.0, mode="max"),
    dict(factor=0.3, patience=3, threshold=0.05, threshold_mode="abs", cooldown=0, min_lr=1e-3, mode="max"),
]


def run_plateau(s, metrics, lr0=LR0):
    out = []
    for a in metrics:
        s.observe(a)
        out.append(s(lr0, 0))
    return out


@pytest.mark.parametrize("kw", PLATEAU)
def test_reduce_on_plateau(kw):
    got = run_plateau(make("reduce_on_plateau", **kw), METRICS)
    assert got == plateau_reference(METRICS, LR0, **kw)
    assert len(set(got)) > 1  # the script does trigger reductions


def test_reduce_on_plateau_drops_on_the_third_bad_epoch_with_patience_two():
    s = make("reduce_on_plateau", factor=0.5, patience=2)
    assert run_plateau(s, [1.0, 1.0, 1.0, 1.0, 1.0]) == [LR0, LR0, LR0, LR0 / 2, LR0 / 2]


@pytest.mark.parametrize("kw", PLATEAU)
def test_reduce_on_plateau_resume_is_exact(kw):
    whole = run_plateau(make("reduce_on_plateau", **kw), METRICS)
    first = make("reduce_on_plateau", **kw)
    head = run_plateau(first, METRICS[:13])
    saved = dict(first.state_dict())
    second = make("reduce_on_plateau", **kw)
    second.load_state_dict(saved)
    assert head + run_plateau(second, METRICS[13:]) == whole


def test_warmup_delegates_state_to_inner():
    s = Warmup(make("reduce_on_plateau", patience=0, factor=0.5), steps=2)
    s.observe(1.0)
    s.observe(2.0)
    assert s(LR0, 5) == LR0 / 2 and s.state_dict()["reductions"] == 1


# ---------------------------------------------------------------- torch oracle
def torch_lrs(torch, make_sched, lr0=LR0, n=100, metrics=None):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr0)
    sched = make_sched(opt)
    out = []
    for k in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(metrics[k]) if metrics is not None else sched.step()
    return out


def torch_cases(torch):
    L = torch.optim.lr_scheduler
    return {
        "step": (lambda o: L.StepLR(o, step_size=30, gamma=0.5), make("step", step_size=30, gamma=0.5)),
        "multistep": (lambda o: L.MultiStepLR(o, [20, 50, 80], 0.5), make("multistep", milestones="20,50,80",
                                                                          gamma=0.5)),
        "exponential": (lambda o: L.ExponentialLR(o, 0.97), make("exponential", gamma=0.97)),
        "cosine": (lambda o: L.CosineAnnealingLR(o, T_max=100, eta_min=1e-3),
                   make("cosine", total_steps=100, eta_min=1e-3)),
        "cosine_past_t_max": (lambda o: L.CosineAnnealingLR(o, T_max=40, eta_min=1e-3),
                              make("cosine", total_steps=40, eta_min=1e-3, clamp=False)),
        "cosine_restarts": (lambda o: L.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-3),
                            make("cosine_restarts", t0=10, t_mult=2, eta_min=1e-3)),
        "cosine_restarts_3": (lambda o: L.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=3, eta_min=1e-4),
                              make("cosine_restarts", t0=4, t_mult=3, eta_min=1e-4)),
        "cosine_restarts_flat": (lambda o: L.CosineAnnealingWarmRestarts(o, T_0=7),
                                 make("cosine_restarts", t0=7)),
        "onecycle": (lambda o: L.OneCycleLR(o, max_lr=0.2, total_steps=100, pct_start=0.3, div_factor=25,
                                            final_div_factor=1e4, cycle_momentum=False),
                     make("onecycle", max_lr=0.2, total_steps=100)),
        "onecycle_linear": (lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=100, pct_start=0.25,
                                                   anneal_strategy="linear", div_factor=10,
                                                   final_div_factor=100, cycle_momentum=False),
                            make("onecycle", max_lr=0.5, total_steps=100, pct_start=0.25, anneal="linear",
                                 div_factor=10, final_div_factor=100)),
        "polynomial": (lambda o: L.PolynomialLR(o, total_iters=80, power=2.0),
                       make("polynomial", total_steps=80, power=2.0)),
        "inverse_time": (lambda o: L.LambdaLR(o, lambda t: 1 / (1 + 0.05 * t)),
                         make("inverse_time", decay=0.05)),
        "warmup_cosine": (lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, total_iters=10),
                                                       L.CosineAnnealingLR(o, T_max=90)], milestones=[10]),
                          Warmup(make("cosine", total_steps=90), steps=10, start_factor=0.1)),
        "warmup_step": (lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.25, 1.0, total_iters=5),
                                                     L.StepLR(o, step_size=20, gamma=0.5)], milestones=[5]),
                        Warmup(make("step", step_size=20, gamma=0.5), steps=5, start_factor=0.25)),
    }


TORCH_NAMES = [
    "step", "multistep", "exponential", "cosine", "cosine_past_t_max", "cosine_restarts", "cosine_restarts_3",
    "cosine_restarts_flat", "onecycle", "onecycle_linear", "polynomial", "inverse_time", "warmup_cosine",
    "warmup_step",
]


@pytest.mark.parametrize("case", TORCH_NAMES)
def test_matches_torch_scheduler(case):
    torch = pytest.importorskip("torch")
    make_sched, ours = torch_cases(torch)[case]
    expect = torch_lrs(torch, make_sched)
    got = values(ours)
    assert got == pytest.approx(expect, rel=1e-6, abs=1e-12)
    assert len(set(expect)) > 3  # the schedule really moves


@pytest.mark.parametrize("kw", PLATEAU)
def test_matches_torch_reduce_on_plateau(kw):
    torch = pytest.importorskip("torch")
    L = torch.optim.lr_scheduler
    metrics = METRICS * 3
    expect = torch_lrs(torch, lambda o: L.ReduceLROnPlateau(o, **kw), n=len(metrics), metrics=metrics)
    s = make("reduce_on_plateau", **kw)
    # torch's list holds the lr *before* each observation: ours is s(lr0) then observe
    got = []
    for a in metrics:
        got.append(s(LR0, 0))
        s.observe(a)
    assert got == expect


# ---------------------------------------------------------------- momentum (onecycle's cycle_momentum)
def test_momentum_is_none_unless_a_schedule_drives_it():
    for name, kw in EXAMPLES.items():
        s = make(name, **kw)
        expect_cycling = name == "onecycle"  # torch's default cycle_momentum=True
        assert all((s.momentum(k) is not None) == expect_cycling for k in KS), name
    off = make("onecycle", max_lr=0.2, total_steps=100, cycle_momentum=False)
    assert all(off.momentum(k) is None for k in KS)
    assert Warmup(make("cosine", total_steps=90), steps=10).momentum(3) is None


def test_onecycle_momentum_closed_form():
    s = make("onecycle", max_lr=0.2, total_steps=100)  # torch's defaults: 0.95 -> 0.85 -> 0.95
    for k in range(100):
        if k <= 29:
            a, b, x = 0.95, 0.85, k / 29
        else:
            a, b, x = 0.85, 0.95, (k - 29) / 70
        assert close(s.momentum(k), b + (a - b) * (1 + math.cos(math.pi * x)) / 2)
        assert type(s.momentum(k)) is float
    assert close(s.momentum(0), 0.95) and close(s.momentum(29), 0.85) and close(s.momentum(99), 0.95)
    assert s.momentum(100) == s.momentum(500) == s.momentum(99)  # holds past total_steps, as the rate
    lin = make("onecycle", max_lr=0.2, total_steps=100, pct_start=0.25, anneal="linear", base_momentum=0.5,
               max_momentum=0.9)
    assert close(lin.momentum(12), 0.9 + (0.5 - 0.9) * 12 / 24)
    assert close(lin.momentum(62), 0.5 + (0.9 - 0.5) * (62 - 24) / 75)


def test_onecycle_validates_momenta():
    entry = SCHEDULES.get("onecycle")
    validate = entry.cls.validate
    assert validate(total_steps=100, base_momentum=0.85, max_momentum=0.95) is None
    assert validate(total_steps=100, base_momentum=0.9, max_momentum=0.9) is None  # constant momentum
    message = validate(total_steps=100, base_momentum=0.97, max_momentum=0.95)
    assert "base_momentum must be <= max_momentum" in message and "0.97" in message
    with pytest.raises(ValueError, match="base_momentum must be <= max_momentum"):
        make("onecycle", max_lr=0.2, total_steps=100, base_momentum=0.97)
    for name in ("base_momentum", "max_momentum"):  # the annotation bounds them as optimizers do
        with pytest.raises(ValueError, match="must be < 1, got 1"):
            entry.param(name).type.convert(1.0)
        with pytest.raises(ValueError, match="must be >= 0"):
            entry.param(name).type.convert(-0.1)
    assert entry.param("cycle_momentum").default is True


ONECYCLE_SPEC = """
model m {
    input x[2]
    scope dnn {
        dense outputs(3)
    }
}
train {
    optimizer momentum(lr=0.01)
    schedule onecycle(max_lr=0.1, total_steps=100%s)
    epochs 1
}
"""


@pytest.mark.parametrize("args,code,message", [
    (", base_momentum=1.0", "E030", "'base_momentum' of schedule 'onecycle' must be < 1, got 1"),
    (", max_momentum=1", "E030", "'max_momentum' of schedule 'onecycle' must be < 1, got 1"),
    (", base_momentum=0.97", "E025", "base_momentum must be <= max_momentum, got base_momentum=0.97, "
                                     "max_momentum=0.95"),
])
def test_checker_reports_bad_momenta(args, code, message):
    from dnnspec.check import check_text
    from dnnspec.errors import SpecError

    check_text(ONECYCLE_SPEC % ", cycle_momentum=false, base_momentum=0.5", "ok.dnn")
    with pytest.raises(SpecError) as info:
        check_text(ONECYCLE_SPEC % args, "m.dnn")
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert [d.code for d in errors] == [code] and message in errors[0].message, str(info.value)


def onecycle_pair(torch, o, **kw):
    """torch's OneCycleLR (cycle_momentum on, its default) on optimizer o, and ours with the same settings."""
    ours = {("anneal" if k == "anneal_strategy" else k): v for k, v in kw.items()}
    return torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=100, **kw), make(
        "onecycle", max_lr=0.2, total_steps=100, **ours)


ONECYCLE_TORCH = {  # torch keyword arguments, named as torch names them
    "defaults": {},
    "linear": {"anneal_strategy": "linear", "pct_start": 0.25, "base_momentum": 0.6, "max_momentum": 0.9,
               "div_factor": 10.0, "final_div_factor": 100.0},
}


def torch_optimizer(torch, kind, params, lr=LR0):
    if kind == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.Adam(params, lr=lr)


def torch_momentum(group):
    """What OneCycleLR drives: betas[0] where the optimizer has betas (Adam), else momentum."""
    return group["betas"][0] if "betas" in group else group["momentum"]


@pytest.mark.parametrize("case", sorted(ONECYCLE_TORCH))
@pytest.mark.parametrize("kind", ["sgd_momentum", "adam"])
def test_onecycle_momentum_matches_torch(kind, case):
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch_optimizer(torch, kind, [p])
    sched, ours = onecycle_pair(torch, opt, **ONECYCLE_TORCH[case])
    lrs, moms = [], []
    for k in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(torch_momentum(opt.param_groups[0]))
        opt.step()
        sched.step()
    assert values(ours) == pytest.approx(lrs, rel=1e-6, abs=1e-12)
    assert [ours.momentum(k) for k in range(100)] == pytest.approx(moms, rel=1e-6, abs=1e-12)
    assert len(set(moms)) > 50 and min(moms) == pytest.approx(ONECYCLE_TORCH[case].get("base_momentum", 0.85))


@pytest.mark.parametrize("kind", ["sgd_momentum", "adam"])
def test_warmup_passes_the_inner_momentum_through(kind):
    # torch: SequentialLR([LinearLR, OneCycleLR]) leaves momentum where OneCycleLR set it (max_momentum)
    # during the warm-up, then restarts OneCycleLR at 0; the rates differ (torch's OneCycleLR rewrites the
    # lr the warm-up starts from), the momenta agree
    torch = pytest.importorskip("torch")
    L = torch.optim.lr_scheduler
    p = torch.zeros(1, requires_grad=True)
    opt = torch_optimizer(torch, kind, [p])
    sched = L.SequentialLR(opt, [L.LinearLR(opt, 0.1, 1.0, total_iters=10),
                                 L.OneCycleLR(opt, max_lr=0.2, total_steps=50)], milestones=[10])
    ours = Warmup(make("onecycle", max_lr=0.2, total_steps=50), steps=10, start_factor=0.1)
    moms = []
    for k in range(60):
        moms.append(torch_momentum(opt.param_groups[0]))
        opt.step()
        sched.step()
    assert [ours.momentum(k) for k in range(60)] == pytest.approx(moms, rel=1e-6, abs=1e-12)
    assert [ours.momentum(k) for k in range(10)] == [0.95] * 10
    assert ours.momentum(10 + 14) == make("onecycle", max_lr=0.2, total_steps=50).momentum(14)


# a small quadratic f(p) = ½ Σ a (p - c)², curvatures spread so each element moves differently
QA = [0.5, 1.0, 2.0, 3.0, 0.2, 4.0]
QC = [3.0, -2.0, 2.5, -3.0, 1.5, 2.0]
QP0 = [1.0, 1.5, -1.0, 0.5, -2.0, 1.0]


@pytest.mark.parametrize("case", sorted(ONECYCLE_TORCH))
@pytest.mark.parametrize("kind", ["sgd_momentum", "adam"])
def test_onecycle_optimizer_trajectory_matches_torch(kind, case):
    # dnnspec's Momentum / Adam driven as the runtime drives them: before update k, the schedule's
    # momentum(k) into opt.momentum (SGD) or opt.beta1 (Adam), its rate into update(); torch's
    # OneCycleLR sets group momentum / betas[0] and lr itself. float64 on both sides.
    torch = pytest.importorskip("torch")
    from dnnspec.optim import OPTIMIZERS

    a, c = np.array(QA), np.array(QC)

    def grad(p):
        return a * (p - c)

    w = torch.tensor(QP0, dtype=torch.float64, requires_grad=True)
    topt = torch_optimizer(torch, kind, [w])
    tsched, sched = onecycle_pair(torch, topt, **ONECYCLE_TORCH[case])
    name, attr = ("momentum", "momentum") if kind == "sgd_momentum" else ("adam", "beta1")
    opt = OPTIMIZERS.get(name).cls(lr=LR0)
    p = np.array(QP0)
    state = {k: np.zeros_like(p) for k in opt.slots}
    state.update({k: np.full_like(p, np.nan) for k in opt.scratch})
    worst = 0.0
    for k in range(100):
        setattr(opt, attr, sched.momentum(k))
        opt.update(p, grad(p), state, sched(LR0, k), k + 1)
        w.grad = torch.tensor(grad(w.detach().numpy()))
        topt.step()
        tsched.step()
        np.testing.assert_allclose(p, w.detach().numpy(), rtol=1e-6, atol=1e-12, err_msg=f"update {k}")
        worst = max(worst, float(np.max(np.abs(p - w.detach().numpy()) / np.abs(w.detach().numpy()))))
    assert np.abs(p - np.array(QP0)).max() > 0.1  # it moved
    assert worst < 1e-6
