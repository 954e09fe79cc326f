"""Run state in one place, and the defects found by checking against Keras/PyTorch:
loading never re-reads `reuse` sources, the logged loss and learning rate describe the same
weights and updates, the step counter is saved once."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec.cli import main

from helpers_runs import assert_resumes_exactly

NET = """
model m {{
    input x[3]
    scope dnn {{
        dense hidden1(4, activation=tanh)
        dense outputs(2)
    }}
}}
train {{
    loss mse
    optimizer sgd(lr=0.1)
    epochs {epochs}
    batch {batch}
    shuffle false
    seed 3
{extra}
}}
"""


def data(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)


# ---------------------------------------------------------------- 1. loading never re-runs `reuse`
REUSING = """
model r {
    input x[2]
    scope dnn {
        dense hidden1(8, activation=relu)
        dense outputs(3)
    }
}
data d = spirals(samples=90)
train {
    epochs 1
    checkpoint "ck/new.h5"
}
reuse "base.h5" scope="dnn/hidden1"
"""


def test_a_checkpoint_loads_without_its_reuse_source(in_tmp):
    base = dnnspec.compile_text(REUSING.replace('reuse "base.h5" scope="dnn/hidden1"', ""))
    base.save("base.h5")
    runner = CliRunner()
    (in_tmp / "r.dnn").write_text(REUSING)
    assert runner.invoke(main, ["run", "r.dnn", "-q"]).exit_code == 0
    shutil.move("base.h5", "elsewhere.h5")  # the source of the reused layers is gone
    model = dnnspec.load_checkpoint("ck/new.h5")
    assert model.reuse_reports == []
    result = runner.invoke(main, ["eval", "r.dnn", "-c", "ck/new.h5"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["ckpt", "export", "ck/new.h5", "--to", "npz", "-o", "new.npz"])
    assert result.exit_code == 0, result.output
    # resuming needs the run's own checkpoint only
    result = runner.invoke(main, ["run", "r.dnn", "-q", "--resume", "ck/new.h5", "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    assert "no such checkpoint" not in result.output
    # a fresh compile still applies `reuse` (and says the file is missing)
    result = runner.invoke(main, ["run", "r.dnn", "-q"])
    assert result.exit_code == 1 and "base.h5" in result.output


# ---------------------------------------------------------------- 2. loss + penalty at the same weights
@pytest.mark.parametrize("reg", ["l2(0.05)", "l1(0.02)", "l1_l2(0.01, 0.03)"])
def test_logged_loss_adds_the_penalty_of_the_weights_it_was_computed_at(reg):
    x, y = data(8)
    spec = NET.format(epochs=2, batch=8, extra=f'    regularize {reg} on "dnn/.*/kernel"')
    model = dnnspec.compile_text(spec)
    reg_obj = model.trainer.updater.regularizers[0][0]
    expected = []
    for _ in range(2):  # one full batch per epoch: the epoch's loss is that of the weights before its update
        kernels = [model.variables[n] for n in ("dnn/hidden1/kernel", "dnn/outputs/kernel")]
        penalty = sum(reg_obj.penalty(k.astype(np.float64)) for k in kernels)
        expected.append(model.evaluate(x, y)["loss"] + penalty)
        model.fit(x, y, epochs=1)
    got = [row["loss"] for row in model.history]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_logged_loss_with_several_batches_is_the_mean_of_the_step_losses():
    x, y = data(16)
    spec = NET.format(epochs=1, batch=4, extra='    regularize l2(0.05) on "dnn/.*/kernel"')
    model = dnnspec.compile_text(spec)
    tr, up = model.trainer, model.trainer.updater
    losses = []
    real_step = tr.train_step

    def spy(xb, yb, epoch, start_op=0):
        before = up.penalty()
        loss, right = real_step(xb, yb, epoch, start_op)
        losses.append((loss, before))
        return loss, right

    tr.train_step = spy
    model.fit(x, y)
    assert model.history[0]["loss"] == pytest.approx(np.mean([lo for lo, _ in losses]), rel=1e-6)
    assert all(lo > pen > 0 for lo, pen in losses)  # each step's loss includes its own penalty


# ---------------------------------------------------------------- 3. the logged lr is the rate used
SCHEDULES = {
    "constant": "constant",
    "step": "step(step_size=2, gamma=0.5)",
    "multistep": 'multistep(milestones="4,9", gamma=0.5)',
    "exponential": "exponential(gamma=0.8)",
    "exponential_decay": "exponential_decay(decay_rate=0.5, decay_steps=3)",
    "inverse_time": "inverse_time(decay=0.5)",
    "power": "power(steps=4)",
    "polynomial": "polynomial(total_steps=20)",
    "cosine": "cosine(total_steps=20)",
    "cosine_restarts": "cosine_restarts(t0=3)",
    "onecycle": "onecycle(max_lr=0.5, total_steps=24)",
    "reduce_on_plateau": "reduce_on_plateau(patience=0, factor=0.5)",
}


def test_every_schedule_is_listed_here():
    dnnspec.compile_text(NET.format(epochs=1, batch=8, extra=""))  # fills the registries
    from dnnspec.schedules import SCHEDULES as REGISTRY

    assert set(REGISTRY.names()) == set(SCHEDULES)


@pytest.mark.parametrize("per", ["step", "epoch"])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_logged_lr_is_the_rate_the_updates_used(name, per):
    x, y = data(16)
    spec = NET.format(epochs=6, batch=4, extra=f"    schedule {SCHEDULES[name]} per={per}")
    model = dnnspec.compile_text(spec)
    up = model.trainer.updater
    used = []
    real = up.optimizer.update

    def spy(p, g, state, lr, t):
        used.append(lr)
        real(p, g, state, lr, t)

    up.optimizer.update = spy
    model.fit(x, y)
    per_epoch = len(used) // 6
    assert per_epoch == 4
    logged = [row["lr"] for row in model.history]
    assert logged == [used[(e + 1) * per_epoch - 1] for e in range(6)]  # the epoch's last update
    if per == "epoch":  # ... which is the rate of every update of that epoch
        assert all(len(set(used[e * 4:(e + 1) * 4])) == 1 for e in range(6))


# ---------------------------------------------------------------- one step counter, saved once
def test_the_step_counter_is_saved_once_and_restored(in_tmp):
    x, y = data(16)
    model = dnnspec.compile_text(NET.format(epochs=2, batch=4, extra=""))
    model.fit(x, y)
    assert model.step == 8
    model.save("a.h5")
    with h5py.File("a.h5") as f:
        assert int(f["optimizer"].attrs["step"]) == 8
        assert "global_step" not in f["state"].attrs
    again = dnnspec.load_checkpoint("a.h5")
    assert again.step == 8


def test_a_file_with_global_step_only_still_restores_it(in_tmp):
    x, y = data(16)
    model = dnnspec.compile_text(NET.format(epochs=2, batch=4, extra=""))
    model.fit(x, y)
    ckpt = model.to_checkpoint()
    ckpt.optimizer, ckpt.state["global_step"] = None, 8
    fresh = dnnspec.compile_text(NET.format(epochs=2, batch=4, extra=""))
    fresh.restore(ckpt)
    assert fresh.step == 8 and json.dumps(ckpt.state)


# ---------------------------------------------------------------- one list of train settings
def test_every_train_config_field_comes_from_exactly_one_setting():
    import dataclasses

    from dnnspec.check.settings import TRAIN_KEYS
    from dnnspec.program import TrainConfig

    landed = []
    for key, spec in TRAIN_KEYS.items():
        if spec.value is not None or (spec.options and not spec.option_fields):
            landed.append(spec.into or key)
        landed.extend(spec.option_fields.values())
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(landed) == sorted(fields)  # none twice, none missing, none unknown


def test_a_setting_reaches_the_config_from_the_table_alone(monkeypatch):
    # the checker, --set and the config all derive from TRAIN_KEYS: an option mapped to a field
    # is set by `--set train.KEY.OPTION=...` with no other change
    model = dnnspec.compile_text(NET.format(epochs=1, batch=4, extra="    average ema"),
                                 overrides=["train.average.decay=0.9", "train.schedule.per=step"])
    cfg = model.program.train
    assert (cfg.average, cfg.average_decay, cfg.schedule_per) == ("ema", 0.9, "step")


# ---------------------------------------------------------------- 4. onecycle cycles momentum in a run
ONECYCLE = """
model lin {{
    input x[3]
    dense out(2)
}}
train {{
    loss mse
    optimizer {opt}
    schedule onecycle(max_lr=0.05, total_steps=40) per=step
    epochs 20
    batch 8
    shuffle false
}}
"""


@pytest.mark.parametrize("opt", ["momentum(lr=0.01, momentum=0.9)", "nesterov(lr=0.01, momentum=0.9)",
                                 "adam(lr=0.01)"])
def test_onecycle_run_matches_torch_with_cycled_momentum(opt):
    torch = pytest.importorskip("torch")
    x, y = data(16)
    model = dnnspec.compile_text(ONECYCLE.format(opt=opt))
    lin = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(model.variables["out/kernel"].T))
        lin.bias.copy_(torch.tensor(model.variables["out/bias"]))
    name = opt.split("(")[0]
    if name == "adam":
        topt = torch.optim.Adam(lin.parameters(), lr=0.01, eps=model.trainer.updater.optimizer.epsilon)
    else:
        topt = torch.optim.SGD(lin.parameters(), lr=0.01, momentum=0.9, nesterov=name == "nesterov")
    sched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.05, total_steps=40)
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    for _ in range(20):  # 20 epochs of 2 batches: the 40 steps of the cycle
        for b in range(0, 16, 8):
            topt.zero_grad()
            torch.nn.functional.mse_loss(lin(xt[b:b + 8]), yt[b:b + 8]).backward()
            group = topt.param_groups[0]
            used = group["betas"][0] if name == "adam" else group["momentum"]
            topt.step()
            sched.step()
    model.fit(x, y)
    np.testing.assert_allclose(model.variables["out/kernel"], lin.weight.detach().numpy().T, rtol=2e-4, atol=2e-6)
    # the last update used the momentum torch's last update used
    up = model.trainer.updater
    assert getattr(up.optimizer, "beta1" if name == "adam" else "momentum") == pytest.approx(used, rel=1e-12)


def test_onecycle_without_momentum_warns():
    model = dnnspec.compile_text(ONECYCLE.format(opt="sgd(lr=0.01)"))
    assert any(w.code == "W106" for w in model.program.warnings)
    quiet = dnnspec.compile_text(ONECYCLE.format(opt="sgd(lr=0.01)").replace("total_steps=40)", "total_steps=40, cycle_momentum=false)"))
    assert not any(w.code == "W106" for w in quiet.program.warnings)


def test_nadam_with_cycled_beta1_resumes_exactly(in_tmp):
    x, y = data(16)
    assert_resumes_exactly(ONECYCLE.format(opt="nadam(lr=0.01)"), x, y, first_epochs=7)
