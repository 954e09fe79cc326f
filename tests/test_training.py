"""Training end to end on built-in data: convergence, determinism, early stopping, metrics."""

from __future__ import annotations

import numpy as np
import pytest

import dnnspec
from dnnspec.errors import UserError


def test_xor_spec_reaches_full_accuracy(in_tmp):
    from conftest import ROOT

    model = dnnspec.compile_file(ROOT / "specs" / "xor.dnn")
    model.fit()
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    p = model.predict(x)[:, 0]
    np.testing.assert_array_equal(p > 0.5, [False, True, True, False])
    assert model.evaluate(x, np.array([0, 1, 1, 0]))["accuracy"] == 1.0


def test_same_seed_gives_bit_identical_weights(tiny_spec, in_tmp):
    a, b = dnnspec.compile_text(tiny_spec), dnnspec.compile_text(tiny_spec)
    a.fit()
    b.fit()
    for name in a.variables:
        np.testing.assert_array_equal(a.variables[name], b.variables[name])


def test_history_and_metrics(tiny_spec, in_tmp):
    model = dnnspec.compile_text(tiny_spec.replace("epochs 3", "epochs 4\n    validation 0.2"))
    history = model.fit()
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(history[0])
    assert history[-1]["loss"] < history[0]["loss"]
    assert 0.0 <= history[-1]["val_accuracy"] <= 1.0


def test_fit_with_arrays_and_a_spec_without_data():
    spec = """
model reg {
    input x[3]
    dense(16, activation=tanh)
    dense(1)
}
train {
    loss mse
    optimizer adam(lr=0.01)
    epochs 60
    batch 16
}
"""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype(np.float32)
    y = (x @ np.array([[0.5], [-1.0], [0.25]], np.float32)).astype(np.float32)
    model = dnnspec.compile_text(spec)
    before = model.evaluate(x, y)["loss"]
    history = model.fit(x, y, validation_data=(x[:32], y[:32]))
    assert len(history) == 60 and "accuracy" not in history[-1]
    assert model.evaluate(x, y)["loss"] < 0.05 * before


def test_early_stopping_stops_and_restores_best(tiny_spec, in_tmp):
    spec = tiny_spec.replace("epochs 3", "epochs 50\n    validation 0.3\n"
                             "    early_stopping monitor=val_loss patience=2")
    spec = spec.replace("adam(lr=0.01)", "sgd(lr=0.5)")
    model = dnnspec.compile_text(spec)
    history = model.fit()
    assert model.trainer.state.stopped_early and len(history) < 50
    losses = [h["val_loss"] for h in history]
    best = int(np.argmin(losses))
    assert len(history) - 1 - best == 2  # stopped after `patience` epochs without improvement
    x, y = model.load_data().val
    assert model.evaluate(x, y)["loss"] == pytest.approx(losses[best], rel=1e-5)


def test_divergence_is_a_clear_error(tiny_spec, in_tmp):
    model = dnnspec.compile_text(tiny_spec.replace("adam(lr=0.01)", "sgd(lr=1e30)"))
    with pytest.raises(UserError, match="diverged"):
        model.fit()


def test_frozen_layers_do_not_change(tiny_spec, in_tmp):
    model = dnnspec.compile_text(tiny_spec + '\nfreeze "dnn/hidden1|dnn/bn"\n')
    before = {n: v.copy() for n, v in model.variables.items()}
    model.fit()
    for n in ("dnn/hidden1/kernel", "dnn/bn/gamma", "dnn/bn/moving_mean", "dnn/bn/moving_variance"):
        np.testing.assert_array_equal(model.variables[n], before[n])
    assert not np.array_equal(model.variables["dnn/outputs/kernel"], before["dnn/outputs/kernel"])


def test_run_reports_the_weights_it_saves(tiny_spec, in_tmp):
    """Early stopping restores the best epoch: the saved checkpoint holds those weights, and the
    reported val/test metrics are those of the saved weights."""
    from dnnspec import session

    spec = tiny_spec.replace("epochs 3", "epochs 40\n    validation 0.3\n    checkpoint \"ck/m.h5\"\n"
                             "    early_stopping monitor=val_loss patience=2 restore_best=true")
    spec = spec.replace("adam(lr=0.01)", "sgd(lr=0.5)")
    result = session.run(dnnspec.compile_text(spec), log=lambda m: None)
    assert result["stopped_early"]
    saved = dnnspec.load_checkpoint("ck/m.h5")
    splits = saved.load_data()
    assert saved.evaluate(*splits.test)["accuracy"] == result["test_accuracy"]
    assert saved.evaluate(*splits.val)["loss"] == pytest.approx(result["val_loss"])
    assert result["val_loss"] == pytest.approx(min(h["val_loss"] for h in saved.history), rel=1e-6)


def test_fit_returns_the_epochs_of_this_call(tiny_spec, in_tmp):
    model = dnnspec.compile_text(tiny_spec)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 2)).astype(np.float32), rng.integers(0, 3, 96)
    first = model.fit(x, y, epochs=2)
    second = model.fit(x, y, epochs=3)
    assert [h["epoch"] for h in first] == [1, 2]
    assert [h["epoch"] for h in second] == [3, 4, 5]
    assert [h["epoch"] for h in model.history] == [1, 2, 3, 4, 5]  # the property keeps them all
    assert model.fit(x, y, epochs=0) == []


def test_a_restored_model_returns_only_what_it_trains(tiny_spec, in_tmp):
    model = dnnspec.compile_text(tiny_spec)
    model.fit(epochs=1)
    model.save("one.h5")
    again = dnnspec.load_checkpoint("one.h5")
    rows = again.fit()  # on to the spec's 3 epochs
    assert [h["epoch"] for h in rows] == [2, 3] and len(again.history) == 3
