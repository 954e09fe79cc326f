"""Greedy layer-wise pretraining (RBMs by CD-k, autoencoders) and reconstruction targets.

The RBM update is pinned to its formula (Hinton's practical guide, the variant of
dnnspec/pretrain.py) on a tiny case with the same random draws; the free energy of the data
falls as an RBM learns it; an autoencoder's reconstruction error falls; the tied-weight gradient
(the kernel used twice) is checked by finite differences; resuming inside the pretraining phase
is exact across the phase boundary; the pretrain checkpoint feeds `reuse` in another spec."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import dnnspec
from dnnspec import session
from dnnspec.ckpt import hdf5
from dnnspec.datasets import DATASETS
from dnnspec.pretrain import RBM, Autoencoder
from dnnspec.ops.activations import Sigmoid
from dnnspec.rng import stream
from helpers_gradcheck import assert_grad_close, numeric_grad


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def rbm(W, c, b, seed=3, k=1, batch=4):
    m = RBM(k=k)
    m.begin(W, c, None, stream(seed, "test"), batch)
    m.b[...] = b
    return m


# ---------------------------------------------------------------- the RBM
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_cd1_update_is_the_formula(momentum):
    r = np.random.default_rng(0)
    v0 = r.random((4, 3)).astype(np.float32)
    W = (r.standard_normal((3, 2)) * 0.5).astype(np.float32)
    c = np.array([0.1, -0.2], np.float32)
    b = np.array([0.3, -0.1, 0.05], np.float32)
    W0, c0, b0 = W.astype(np.float64), c.astype(np.float64), b.astype(np.float64)
    m = rbm(W, c, b)
    draws = copy.deepcopy(m.rng).random((4, 2), dtype=np.float32)  # the uniforms the step will draw
    eps = 0.1
    err = m.step(v0, eps, momentum)

    # by hand: h0 sampled from p(h0|v0), v1 and h1 as probabilities
    v = v0.astype(np.float64)
    ph0 = sigmoid(v @ W0 + c0)
    h0 = (draws < ph0).astype(np.float64)
    v1 = sigmoid(h0 @ W0.T + b0)
    ph1 = sigmoid(v1 @ W0 + c0)
    dW = eps * (v.T @ ph0 - v1.T @ ph1) / 4
    db = eps * (v - v1).mean(0)
    dc = eps * (ph0 - ph1).mean(0)
    # the first step's velocity is the increment whatever the momentum (it starts at zero)
    np.testing.assert_allclose(W, W0 + dW, rtol=0, atol=2e-6)
    np.testing.assert_allclose(m.b, b0 + db, rtol=0, atol=2e-6)
    np.testing.assert_allclose(c, c0 + dc, rtol=0, atol=2e-6)
    assert err == pytest.approx(((v - v1) ** 2).mean(), rel=1e-5)
    assert W.dtype == c.dtype == m.b.dtype == np.float32


def test_cd1_by_hand_on_one_unit():
    # 1 visible, 1 hidden, W=0, biases 0: p(h)=1/2; the draw 0.3 < 1/2 turns h on; v1 = σ(0) = 1/2,
    # p(h1) = 1/2, so ΔW = ε(v0·1/2 − 1/2·1/2), Δb = ε(v0 − 1/2), Δc = 0.
    W, c = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
    m = rbm(W, c, np.zeros(1, np.float32), batch=1)

    class Draw:
        def random(self, out, dtype):
            out[...] = 0.3

    m.rng = Draw()
    m.step(np.array([[1.0]], np.float32), 1.0, 0.0)
    assert W[0, 0] == pytest.approx(0.25) and m.b[0] == pytest.approx(0.5) and c[0] == pytest.approx(0.0)


def test_cdk_runs_k_gibbs_steps():
    # CD-2 draws twice as many hidden samples as CD-1 and reaches a different update
    r = np.random.default_rng(1)
    v0 = r.random((4, 3)).astype(np.float32)
    W = (r.standard_normal((3, 2)) * 0.5).astype(np.float32)
    out = {}
    for k in (1, 2):
        w = W.copy()
        m = rbm(w, np.zeros(2, np.float32), np.zeros(3, np.float32), k=k)
        before = copy.deepcopy(m.rng)
        m.step(v0, 0.1, 0.0)
        before.random((k, 4, 2), dtype=np.float32)  # k draws of (4, 2) consumed
        assert m.rng.bit_generator.state == before.bit_generator.state
        out[k] = w
    assert not np.array_equal(out[1], out[2])


def test_free_energy_of_the_data_decreases():
    patterns = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0]], np.float32)
    data = np.repeat(patterns, 10, axis=0)
    W = (stream(0, "w").standard_normal((6, 4)) * 0.01).astype(np.float32)
    m = rbm(W, np.zeros(4, np.float32), np.zeros(6, np.float32), batch=10)
    start = m.free_energy(patterns).mean()
    errors = []
    for epoch in range(200):
        for i in range(0, 30, 10):
            errors.append(m.step(data[i:i + 10], 0.1, 0.5))
    end = m.free_energy(patterns).mean()
    assert end < start - 3.0, (start, end)
    others = np.array([[0, 1, 0, 1, 0, 1], [1, 1, 0, 0, 1, 1]], np.float32)
    assert m.free_energy(others).mean() > end + 1.0  # lower energy on the data than elsewhere
    assert np.mean(errors[-30:]) < 0.5 * np.mean(errors[:3])


# ---------------------------------------------------------------- the autoencoder
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("loss", ["mse", "sigmoid_cross_entropy"])
def test_autoencoder_gradients_match_finite_differences(tied, loss):
    r = np.random.default_rng(2)
    x = r.random((5, 4))
    W = r.standard_normal((4, 3)) * 0.5
    c = r.standard_normal(3) * 0.1
    act = Sigmoid()
    ae = Autoencoder(loss=loss, tied=tied)
    ae.begin(W, c, act, stream(0, "t"), 5)  # float64 arrays: the method computes in their dtype
    ae.b[...] = r.standard_normal(4) * 0.1
    if not tied:
        ae.V[...] = r.standard_normal((3, 4)) * 0.5
    f = lambda: ae.loss_and_gradients(x)  # noqa: E731
    f()
    analytic = {"W": ae.gW.copy(), "b": ae.gb.copy(), "c": ae.gc.copy(), "dec": ae.gdec.copy()}
    assert_grad_close(analytic["W"], numeric_grad(f, W), what="kernel (both uses when tied)")
    assert_grad_close(analytic["b"], numeric_grad(f, ae.b), what="visible bias")
    assert_grad_close(analytic["c"], numeric_grad(f, c), what="hidden bias")
    if not tied:
        assert_grad_close(analytic["dec"], numeric_grad(f, ae.V), what="decoder")


def test_tied_gradient_is_the_sum_of_both_uses():
    # the encoder's share alone (the decoder's removed) misses the decoder's use: not the gradient
    r = np.random.default_rng(5)
    x, W, c = r.random((5, 4)), r.standard_normal((4, 3)), np.zeros(3)
    ae = Autoencoder(loss="mse", tied=True)
    ae.begin(W, c, None, stream(0, "t"), 5)
    ae.loss_and_gradients(x)
    numeric = numeric_grad(lambda: ae.loss_and_gradients(x), W)
    ae.loss_and_gradients(x)
    assert np.abs((ae.gW - ae.gdec) - numeric).max() > 1e-3


SPEC = """
model m {{
    input x[12]
    scope dnn {{
        dense hidden1(8, activation=sigmoid)
        dense hidden2(6, activation=sigmoid)
        dense outputs(3)
    }}
}}
train {{
    optimizer sgd(lr=0.5)
    epochs 3
    batch 16
    seed 7
}}
pretrain "dnn/hidden" method={method} epochs={epochs} batch=10 lr={lr} momentum=0.5{extra}
"""


def toy_data(n=120):
    r = np.random.default_rng(11)
    protos = (r.random((3, 12)) > 0.5).astype(np.float32)
    y = np.arange(n) % 3
    x = np.clip(protos[y] + (r.random((n, 12)) < 0.1) * 1.0, 0, 1).astype(np.float32)
    x = np.where(r.random((n, 12)) < 0.1, 1 - x, x).astype(np.float32)
    return x, y


@pytest.mark.parametrize("method", ["autoencoder(loss=sigmoid_cross_entropy, noise=0.1)",
                                    "autoencoder(loss=mse, tied=false)", "rbm(k=1)"])
def test_greedy_pretraining_lowers_each_layers_reconstruction_error(method):
    x, _ = toy_data()
    model = dnnspec.compile_text(SPEC.format(method=method, epochs=8, lr=0.1, extra=""))
    before = {n: a.copy() for n, a in model.variables.items()}
    rows = model.pretrain(x)
    assert [r["layer"] for r in rows] == ["dnn/hidden1"] * 8 + ["dnn/hidden2"] * 8
    for layer in ("dnn/hidden1", "dnn/hidden2"):
        losses = [r["loss"] for r in rows if r["layer"] == layer]
        assert losses[-1] < 0.8 * losses[0], (layer, losses)
    changed = {n for n in before if not np.array_equal(before[n], model.variables[n])}
    assert changed == {"dnn/hidden1/kernel", "dnn/hidden1/bias", "dnn/hidden2/kernel", "dnn/hidden2/bias"}
    assert model.pretraining.done and model.pretrain(x) == []


def test_upper_layers_see_the_pretrained_lower_layers():
    x, _ = toy_data()
    model = dnnspec.compile_text(SPEC.format(method="rbm", epochs=1, lr=0.1, extra=""))
    seen = []
    model.pretrain(x, on_layer_end=lambda g, name: seen.append(model.predict_logits(x).copy()))
    # layer 2 learns on σ(x W1 + c1) with W1 as pretrained: pretraining it once more from the
    # saved layer-1 weights reproduces it exactly
    again = dnnspec.compile_text(SPEC.format(method="rbm", epochs=1, lr=0.1, extra=""))
    for n in ("dnn/hidden1/kernel", "dnn/hidden1/bias"):
        again.variables[n] = model.variables[n]
    again.pretraining.state.layer = 1
    again.pretrain(x)
    for n in ("dnn/hidden2/kernel", "dnn/hidden2/bias"):
        np.testing.assert_array_equal(again.variables[n], model.variables[n])


# ---------------------------------------------------------------- resume, checkpoints, reuse
def _full_run(spec, x, y):
    m = dnnspec.compile_text(spec)
    m.pretrain(x)
    m.fit(x, y)
    return m


class Stop(Exception):
    pass


# 11 step hooks per pretraining epoch (12 batches), 2 epochs per layer: 3 is inside layer 1, 30 inside
# layer 2, 50 inside the first supervised epoch
@pytest.mark.parametrize("stop_at", [3, 30, 50])
def test_resume_is_exact_across_the_phase_boundary(tmp_path, stop_at):
    x, y = toy_data()
    spec = SPEC.format(method="autoencoder(noise=0.2)", epochs=2, lr=0.1, extra="")
    whole = _full_run(spec, x, y)
    part = dnnspec.compile_text(spec)
    steps = [0]

    def count(_):
        steps[0] += 1
        if steps[0] == stop_at:
            raise Stop

    try:
        part.pretrain(x, on_step=count)
        part.fit(x, y, on_step=count)
    except Stop:
        pass
    path = part.save(tmp_path / "mid.h5")
    ckpt = hdf5.load(path)
    phase = ckpt.state["pretrain"]
    assert phase["done"] == (stop_at > 44) and phase["layer"] == (0 if stop_at < 22 else 1 if stop_at < 44 else 2)
    resumed = dnnspec.compile_text(spec)
    resumed.restore(ckpt)
    resumed.pretrain(x)
    resumed.fit(x, y)
    for n, a in whole.variables.items():
        np.testing.assert_array_equal(resumed.variables[n], a, err_msg=n)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    losses = lambda m: [(r["layer"], r["epoch"], r["loss"]) for r in m.pretraining.state.history]  # noqa: E731
    assert losses(resumed) == losses(whole)


def test_run_writes_the_pretrain_checkpoint_and_reuse_reads_it(in_tmp):
    x, y = toy_data()
    np.savez(in_tmp / "toy.npz", x_train=x, y_train=y, x_test=x[:30], y_test=y[:30])
    data = 'data toy = npz(path="toy.npz", validation=20, train_limit=40)\n'
    spec = SPEC.format(method="rbm", epochs=2, lr=0.1, extra=' checkpoint="pre.h5"') + data
    spec = spec.replace("    seed 7\n", '    seed 7\n    checkpoint "run.h5"\n')
    model = dnnspec.compile_text(spec)
    logged = []
    result = session.run(model, log=logged.append)
    assert result["epochs_run"] == 3
    assert sum("pretrain dnn/hidden" in line for line in logged) == 4
    phases = [json.loads(line).get("phase") for line in open("run.jsonl")]
    assert phases == ["pretrain"] * 4 + [None] * 3  # the log: each layer's epochs, then training's
    pre = hdf5.load("pre.h5")
    assert pre.state["pretrain"]["done"] and pre.state["pretrain"]["layer"] == 2
    # pretrained on every training row before train_limit (100), not only the 40 labelled ones
    assert model.load_data().unlabeled.shape == (100, 12)
    second = """
model m {
    input x[12]
    scope dnn {
        dense hidden1(8, activation=sigmoid)
        dense hidden2(6, activation=sigmoid)
        dense outputs(3)
    }
}
reuse "pre.h5" scope="dnn/hidden"
"""
    other = dnnspec.compile_text(second)
    for n in ("dnn/hidden1/kernel", "dnn/hidden1/bias", "dnn/hidden2/kernel", "dnn/hidden2/bias"):
        np.testing.assert_array_equal(other.variables[n], pre.variables[n].value)
    assert not np.array_equal(other.variables["dnn/outputs/kernel"], pre.variables["dnn/outputs/kernel"].value)
    # a finished phase is not run again on --resume
    again = dnnspec.compile_text(spec)
    again.restore(hdf5.load("run.h5"))
    assert again.pretraining.done


def test_unlabeled_rows_are_the_training_rows_before_train_limit(tmp_path):
    x = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
    y = np.arange(50) % 2
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    s = DATASETS.get("npz").cls(path=str(tmp_path / "d.npz"), validation=10, train_limit=15).load(tmp_path)
    np.testing.assert_array_equal(s.unlabeled, x[:40])  # not the 10 validation rows
    assert len(s.train[0]) == 15
    assert DATASETS.get("npz").cls(path=str(tmp_path / "d.npz"), validation=10).load(tmp_path).unlabeled is None


# ---------------------------------------------------------------- reconstruction target
AE = """
model ae {
    input x[12]
    dense encoder(6, activation=sigmoid)
    dense decoder(12)
}
train {
    loss sigmoid_cross_entropy target=input
    optimizer adam(lr=0.01)
    epochs 15
    batch 16
    seed 1
}
"""


def test_an_autoencoder_spec_trains_on_its_input():
    x, _ = toy_data()
    model = dnnspec.compile_text(AE)
    history = model.fit(x, validation_data=(x[:20], x[:20]))
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert all("accuracy" not in row and "val_accuracy" not in row for row in history)
    assert model.predict(x).shape == x.shape and (0 <= model.predict(x)).all()
    assert set(model.evaluate(x, x)) == {"loss"}


def test_a_pretraining_step_allocates_no_arrays():
    import tracemalloc

    r = np.random.default_rng(3)
    v = r.random((200, 128), dtype=np.float32)
    for method in (RBM(k=2), Autoencoder(loss="sigmoid_cross_entropy", noise=0.2),
                   Autoencoder(loss="mse", tied=False)):
        W = (r.standard_normal((128, 64)) * 0.1).astype(np.float32)
        c = np.zeros(64, np.float32)
        method.begin(W, c, None if isinstance(method, RBM) else Sigmoid(), stream(0, "a"), 200)
        method.step(v, 0.01, 0.5)  # buffers that grow on first use (the loss's, the activation's)
        tracemalloc.start()
        try:
            method.step(v, 0.01, 0.5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 200 * 64 * 4 * 0.75, (type(method).__name__, peak)  # less than one (batch, hidden) array
        assert all(a.dtype == np.float32 for a in method.arrays().values())


# ---------------------------------------------------------------- tied decoder weights in a spec
TIED = """
model ae {
    input x[6]
    scope dnn {
        dense hidden1(4, activation=sigmoid)
        dense outputs(6, tied="dnn/hidden1")
    }
}
train {
    loss mse target=input
    optimizer sgd(lr=0.5)
    epochs 30
    batch 8
}
"""


def test_a_tied_decoder_shares_one_kernel_and_its_gradient_is_both_uses():
    from dnnspec.check import check_text
    from dnnspec.plan import Plan

    plan = Plan(check_text(TIED), dtype=np.float64)
    plan.initialize()
    assert list(plan.variables) == ["dnn/hidden1/kernel", "dnn/hidden1/bias", "dnn/outputs/bias"]
    r = np.random.default_rng(4)
    x = r.random((5, 6))
    plan.variables["dnn/outputs/bias"][...] = r.standard_normal(6) * 0.1

    def loss():
        return plan.loss.forward(plan.forward(x, training=True), x)

    loss()
    plan.backward(plan.loss.backward())
    analytic = {n: g.copy() for n, g in plan.grads.items()}
    for n in plan.variables:
        assert_grad_close(analytic[n], numeric_grad(loss, plan.variables[n]), what=n)
    # twice in a row gives the same gradient: the decoder's share is added, never accumulated
    loss()
    plan.backward(plan.loss.backward())
    np.testing.assert_array_equal(plan.grads["dnn/hidden1/kernel"], analytic["dnn/hidden1/kernel"])


def test_a_tied_autoencoder_trains_freezes_and_saves_one_kernel(tmp_path):
    x, _ = toy_data()
    x = x[:, :6]
    model = dnnspec.compile_text(TIED)
    history = model.fit(x)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    path = model.save(tmp_path / "tied.h5")
    assert sorted(hdf5.load(path).variables) == ["dnn/hidden1/bias", "dnn/hidden1/kernel", "dnn/outputs/bias"]
    np.testing.assert_array_equal(dnnspec.load_checkpoint(path).predict(x), model.predict(x))
    frozen = dnnspec.compile_text(TIED + 'freeze "dnn/hidden1/kernel"\n')
    before = frozen.variables["dnn/hidden1/kernel"].copy()
    frozen.fit(x, epochs=2)
    np.testing.assert_array_equal(frozen.variables["dnn/hidden1/kernel"], before)  # neither use moves it
    assert not np.array_equal(frozen.variables["dnn/outputs/bias"], 0)


def test_tied_layers_refuse_layer_by_layer_export(tmp_path):
    from dnnspec.ckpt.interchange import export_model
    from dnnspec.errors import UserError

    model = dnnspec.compile_text(TIED)
    with pytest.raises(UserError, match="tied layers.*dnn/outputs \\(tied to dnn/hidden1\\)"):
        export_model(model.program, dict(model.variables), "onnx", tmp_path / "m.onnx")
    export_model(model.program, dict(model.variables), "npz", tmp_path / "m.npz")
    assert sorted(np.load(tmp_path / "m.npz").files) == sorted(model.variables)


def test_a_tied_autoencoder_exported_by_name_is_the_same_net_in_torch(tmp_path):
    """The npz export (the one a tied layer allows) rebuilt in PyTorch with the kernel used twice,
    as a tied autoencoder is written there (F.linear(h, W.T)), gives dnnspec's reconstructions."""
    torch = pytest.importorskip("torch")
    from dnnspec.ckpt.interchange import export_model

    x, _ = toy_data()
    x = x[:, :6]
    model = dnnspec.compile_text(TIED)
    model.fit(x, epochs=5)
    z = np.load(export_model(model.program, dict(model.variables), "npz", tmp_path / "m.npz"))
    W, b, c = (torch.from_numpy(z[n]) for n in ("dnn/hidden1/kernel", "dnn/hidden1/bias", "dnn/outputs/bias"))
    with torch.no_grad():
        h = torch.sigmoid(torch.nn.functional.linear(torch.from_numpy(x), W.T, b))
        out = torch.nn.functional.linear(h, W, c).numpy()  # the decoder: h @ W^T + c
    np.testing.assert_allclose(out, model.predict(x), atol=1e-6)


def test_ctrl_c_during_pretraining_saves_a_state_that_resumes_exactly(tmp_path, monkeypatch):
    import os
    import signal

    import dnnspec.pretrain as pretrain_module

    x, y = toy_data()
    np.savez(tmp_path / "toy.npz", x_train=x, y_train=y)
    data = f'data toy = npz(path="{tmp_path / "toy.npz"}", validation=20)\n'
    spec = SPEC.format(method="rbm", epochs=2, lr=0.1, extra="") + data
    spec = spec.replace("    seed 7\n", '    seed 7\n    checkpoint "run.h5"\n')
    quiet = lambda msg: None  # noqa: E731
    (tmp_path / "whole").mkdir()
    (tmp_path / "parts").mkdir()
    monkeypatch.chdir(tmp_path / "whole")
    whole = dnnspec.compile_text(spec)
    session.run(whole, log=quiet)

    monkeypatch.chdir(tmp_path / "parts")
    calls = [0]
    step = pretrain_module.RBM.step

    def interrupted_step(self, v, lr, momentum):
        calls[0] += 1
        if calls[0] == 25:  # inside layer 2's first epoch (10 batches an epoch, 2 epochs a layer)
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, v, lr, momentum)

    monkeypatch.setattr(pretrain_module.RBM, "step", interrupted_step)
    with pytest.raises(session.RunInterrupted) as info:
        session.run(dnnspec.compile_text(spec), log=quiet)
    assert info.value.exit_code == 130
    assert "pretraining dnn/hidden2, epoch 1" in str(info.value) and "--resume run.h5" in str(info.value)
    phase = hdf5.load("run.h5").state["pretrain"]
    assert (phase["layer"], phase["epoch"], phase["position"]["batch"]) == (1, 0, 5)
    monkeypatch.setattr(pretrain_module.RBM, "step", step)
    resumed = dnnspec.compile_text(spec)
    session.run(resumed, log=quiet, resume="run.h5")
    for n, a in whole.variables.items():
        np.testing.assert_array_equal(resumed.variables[n], a, err_msg=n)


def test_pretrain_options_can_be_overridden():
    from dnnspec.check import check_text
    from dnnspec.errors import SpecError

    spec = SPEC.format(method="rbm", epochs=5, lr=0.1, extra="")
    p = check_text(spec, "s.dnn", ["pretrain.epochs=2", "pretrain.method=autoencoder(noise=0.3)", "pretrain.data=train"])
    pre = p.pretrain
    assert (pre.epochs, pre.method.name, pre.method.kwargs["noise"], pre.data) == (2, "autoencoder", 0.3, "train")
    with pytest.raises(SpecError, match="unknown option 'epoch' for 'pretrain'"):
        check_text(spec, "s.dnn", ["pretrain.epoch=2"])
    with pytest.raises(SpecError, match="the spec has no `pretrain` line"):
        check_text(AE, "ae.dnn", ["pretrain.epochs=2"])


def test_pretrain_checks_its_inputs_even_when_there_is_nothing_left_to_do():
    """model.pretrain(x) refuses a bad x with a DataError before and after the phase (and on a
    spec without `pretrain`), instead of ignoring it once the phase is done."""
    from dnnspec.errors import DataError

    x, _ = toy_data(40)
    model = dnnspec.compile_text(SPEC.format(method="rbm", epochs=1, lr=0.1, extra=""))
    with pytest.raises(DataError, match="has 5 features per row"):
        model.pretrain(x[:, :5])
    assert len(model.pretrain(x)) == 2  # one row per layer and epoch
    for bad, message in [(x[:, :5], "has 5 features per row"), (np.full_like(x, np.nan), "contains NaN"),
                         (x[:0], "is empty")]:
        with pytest.raises(DataError, match=message):
            model.pretrain(bad)
    assert model.pretrain(x) == []  # done: nothing left
    with pytest.raises(DataError, match="has 5 features per row"):
        dnnspec.compile_text(AE).pretrain(x[:, :5])
