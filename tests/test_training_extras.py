"""lr_mult, weight averaging, snapshot ensembles, activity regularization, clipping, schedules in the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dnnspec

SPEC = """
model m {
    input x[3]
    scope dnn {
        dense hidden1(4, activation=tanh)
        dense outputs(2)
    }
}
train {
    loss mse
    optimizer sgd(lr=0.1)
    epochs 1
    batch 8
    shuffle false
    seed 3
}
"""


def data(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)


def one_step_delta(spec):
    model = dnnspec.compile_text(spec)
    before = {k: v.copy() for k, v in model.variables.items()}
    x, y = data()
    model.fit(x, y, epochs=1)
    return {k: model.variables[k] - before[k] for k in before}


def test_lr_mult_scales_the_update_of_matching_variables():
    plain = one_step_delta(SPEC)
    scaled = one_step_delta(SPEC.replace("seed 3", 'seed 3\n    lr_mult 0.1 on "dnn/hidden1"'))
    # one full-batch SGD step: the update is lr·mult·g, and g is the same at the same start point
    # (differences of float32 weights: compare to the weights' round-off, not the deltas')
    np.testing.assert_allclose(scaled["dnn/hidden1/kernel"], 0.1 * plain["dnn/hidden1/kernel"], rtol=1e-3, atol=1e-7)
    np.testing.assert_array_equal(scaled["dnn/outputs/kernel"], plain["dnn/outputs/kernel"])
    frozen = one_step_delta(SPEC.replace("seed 3", 'seed 3\n    lr_mult 0 on "dnn/outputs/bias"'))
    assert not frozen["dnn/outputs/bias"].any()


def test_ema_average_formula_and_final_weights():
    spec = SPEC.replace("epochs 1", "epochs 4").replace("seed 3", "seed 3\n    average ema decay=0.5")
    model = dnnspec.compile_text(spec)
    x, y = data()
    iterates = []
    model.fit(x, y, epochs=4)
    # recompute: the same training without averaging gives the iterates; average them by hand
    plain = dnnspec.compile_text(SPEC.replace("epochs 1", "epochs 4"))
    for _ in range(4):
        plain.fit(x, y, epochs=1)
        iterates.append(plain.plan.theta.copy())
    avg = iterates[0].astype(np.float64)
    for t in iterates[1:]:
        avg = 0.5 * avg + 0.5 * t
    np.testing.assert_allclose(model.plan.theta, avg, rtol=1e-5, atol=1e-6)


def test_polyak_average_is_the_mean_of_iterates():
    spec = SPEC.replace("seed 3", "seed 3\n    average polyak")
    model = dnnspec.compile_text(spec)
    plain = dnnspec.compile_text(SPEC)
    x, y = data()
    model.fit(x, y, epochs=5)
    iterates = []
    for _ in range(5):
        plain.fit(x, y, epochs=1)
        iterates.append(plain.plan.theta.astype(np.float64))
    np.testing.assert_allclose(model.plan.theta, np.mean(iterates, axis=0), rtol=1e-5, atol=1e-6)


def test_activity_regularization_adds_to_the_loss():
    base = dnnspec.compile_text(SPEC)
    reg = dnnspec.compile_text(SPEC.replace("dense outputs(2)", "activity_regularization(l2=0.5)\n        dense outputs(2)"))
    x, y = data()
    h1 = base.fit(x, y, epochs=1)[0]["loss"]
    h = np.tanh(x @ reg.variables["dnn/hidden1/kernel"] + reg.variables["dnn/hidden1/bias"])
    penalty = 0.5 * float((h.astype(np.float64) ** 2).sum()) / len(x)
    h2 = reg.fit(x, y, epochs=1)[0]["loss"]
    # same start point (same names and seed); one full batch: the reported loss is loss + penalty
    assert h2 == pytest.approx(h1 + penalty, rel=1e-5)


def test_clip_norm_bounds_the_step():
    x, y = data()
    big = SPEC.replace("sgd(lr=0.1)", "sgd(lr=1.0)")
    unclipped = one_step_delta(big)
    clipped = one_step_delta(big.replace("seed 3", "seed 3\n    clip_norm 0.01"))
    norm = math.sqrt(sum(float((d.astype(np.float64) ** 2).sum()) for d in clipped.values()))
    assert norm == pytest.approx(0.01, rel=1e-4)
    assert math.sqrt(sum(float((d**2).sum()) for d in unclipped.values())) > 0.01


def test_step_schedule_changes_lr_per_epoch():
    spec = SPEC.replace("epochs 1", "epochs 4").replace("seed 3", "seed 3\n    schedule step(step_size=2, gamma=0.5)")
    model = dnnspec.compile_text(spec)
    history = model.fit(*data())
    assert [h["lr"] for h in history] == [0.1, 0.1, 0.05, 0.05]


def test_warmup_and_per_step_schedule():
    spec = SPEC.replace("epochs 1", "epochs 3").replace("batch 8", "batch 4").replace(
        "seed 3", "seed 3\n    schedule constant per=step warmup=4 warmup_start=0.5")
    model = dnnspec.compile_text(spec)
    rate = model.trainer.updater.rate
    assert [rate.schedule(0.1, k) for k in range(6)] == pytest.approx([0.05, 0.0625, 0.075, 0.0875, 0.1, 0.1])


def test_snapshots_at_each_restart(in_tmp):
    spec = """
model s {
    input x[2]
    dense(8, activation=relu)
    dense(3)
}
data d = spirals(samples=300)
train {
    optimizer sgd(lr=0.1)
    schedule cosine_restarts(t0=2)
    epochs 6
    checkpoint "ck/s.h5" snapshots=true
}
"""
    from dnnspec import session

    result = session.run(dnnspec.compile_text(spec), log=lambda m: None)
    assert result["snapshots"] == ["ck/s.snapshot1.h5", "ck/s.snapshot2.h5", "ck/s.snapshot3.h5"]
    assert all((in_tmp / p).is_file() for p in result["snapshots"])
    epochs = [dnnspec.load_checkpoint(in_tmp / p).trainer.state.epoch for p in result["snapshots"]]
    assert epochs == [2, 4, 6]


def test_lbfgs_full_batch_training_from_a_spec():
    spec = """
model lr {
    input x[2]
    dense out(3)
}
train {
    optimizer lbfgs(lr=1.0, max_iter=20, line_search=strong_wolfe)
    regularize l2(1e-3) on "out/kernel"
    epochs 5
    batch 600
    shuffle false
}
"""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2)).astype(np.float32)
    y = (x @ np.array([[1.0, -1.0, 0.2], [0.5, 1.0, -1.0]], np.float32)).argmax(1)
    model = dnnspec.compile_text(spec)
    history = model.fit(x, y)
    losses = [h["loss"] for h in history]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))  # a line search never goes uphill
    assert history[-1]["accuracy"] > 0.97
    assert model.trainer.updater.optimizer.state_dict()[0]["n_iter"] > 5


def test_lbfgs_resume_through_a_checkpoint(in_tmp):
    spec = SPEC.replace("sgd(lr=0.1)", "lbfgs(max_iter=5)").replace("epochs 1", "epochs 4")
    x, y = data(32)
    whole = dnnspec.compile_text(spec)
    whole.fit(x, y, batch_size=32)
    half = dnnspec.compile_text(spec)
    half.fit(x, y, epochs=2, batch_size=32)
    half.save("h.h5")
    again = dnnspec.load_checkpoint("h.h5")
    again.fit(x, y, epochs=2, batch_size=32)
    np.testing.assert_array_equal(whole.plan.theta, again.plan.theta)
