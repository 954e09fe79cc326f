"""A diverging run stops with a UserError that names the epoch, the step and the first non-finite
variable, before any hook sees (or saves) a non-finite state; through the API and the real CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import dnnspec
from dnnspec.errors import UserError
from dnnspec.train.loop import Diverged

from conftest import ROOT, TINY

# Trains well for two epochs, then the rate jumps 10000-fold: batch norm's moving variance
# overflows early in epoch 3 (before the loss does).
DIVERGES_IN_EPOCH_3 = """
model m {
    input x[2]
    scope dnn {
        dense hidden(32, use_bias=false)
        batchnorm bn(momentum=0.9)
        elu
        dense outputs(3)
    }
}
data spirals = spirals(samples=600)
train {
    optimizer sgd(lr=0.05)
    schedule multistep(milestones="2", gamma=10000) per=epoch
    epochs 6
    batch 32
    seed 1
    checkpoint "ck/div.h5"
}
"""


def all_finite(model) -> bool:
    arrays = [*model.variables.values(), *model.trainer.updater.state.values()]
    return all(np.isfinite(a).all() for a in arrays)


def test_fit_raises_naming_epoch_step_and_variable_before_the_hooks(in_tmp):
    model = dnnspec.compile_text(DIVERGES_IN_EPOCH_3)
    seen_epochs, step_states, epoch_states = [], [], []

    def on_epoch_end(trainer, logs):
        seen_epochs.append(logs["epoch"])
        epoch_states.append(all_finite(model))

    def on_step(trainer):
        step_states.append(all(np.isfinite(v).all() for v in model.variables.values()))

    with pytest.raises(Diverged) as e:
        model.fit(on_epoch_end=on_epoch_end, on_step=on_step)
    msg = str(e.value)
    assert msg.startswith("training diverged at epoch 3, step ")
    assert "dnn/bn/moving_variance became inf" in msg and "clip_norm" in msg
    step = int(msg.split("step ")[1].split(":")[0])
    assert step == model.step and 2 * 14 < step <= 3 * 14  # 420 training rows, batch 32: 14 steps an epoch
    assert isinstance(e.value, UserError)
    assert seen_epochs == [1, 2] and all(epoch_states)  # the hook never ran for the diverged epoch
    assert step_states and all(step_states)
    assert len(model.history) == 2


def test_a_diverged_model_is_not_saved(in_tmp):
    model = dnnspec.compile_text(DIVERGES_IN_EPOCH_3)
    with pytest.raises(Diverged):
        model.fit()
    with pytest.raises(Diverged, match="moving_variance became inf"):
        model.save("after.h5")
    assert not (in_tmp / "after.h5").exists()


def test_a_save_from_a_hook_checks_the_optimizer_slots(in_tmp):
    """An Adam second moment that overflowed leaves the weights finite (its update is 0): the
    state captured for a checkpoint is checked in full, so the file is never written."""
    model = dnnspec.compile_text(TINY)

    def on_step(trainer):
        if trainer.updater.t == 5:
            trainer.updater.state["v"][3] = np.inf  # as an overflowing g² would leave it
            model.save("mid.h5")

    with pytest.raises(Diverged, match=r"at epoch 1, step 5: adam slot 'v' of dnn/hidden1/kernel became inf "
                                       r"in 1 of 32 values"):
        model.fit(on_step=on_step)
    assert not (in_tmp / "mid.h5").exists()


def test_the_slots_are_checked_before_the_epoch_end_hook(in_tmp):
    model = dnnspec.compile_text(TINY)
    calls = []

    def on_step(trainer):
        if trainer.updater.t == 3:
            trainer.updater.state["v"][-1] = np.inf  # the weight stays finite: its updates are 0

    with pytest.raises(Diverged, match="at epoch 1, step 14: adam slot 'v' of dnn/outputs/bias became inf"):  # its end
        model.fit(on_step=on_step, on_epoch_end=lambda t, logs: calls.append(logs))
    assert calls == []


def test_a_nan_loss_names_the_loss(in_tmp):
    model = dnnspec.compile_text(TINY.replace("adam(lr=0.01)", "sgd(lr=1e30)"))
    with pytest.raises(Diverged, match=r"training diverged at epoch 1, step \d+: the loss became (nan|inf) "):
        model.fit()


def test_the_per_step_check_allocates_nothing():
    """train_step does the per-step part (test_runtime checks that it allocates no arrays)."""
    from test_runtime import trained

    model, x, y = trained()
    model.trainer.train_step(x[:200], y[:200], 0)
    assert model.trainer.sums_finite
    model.plan.theta[7] = np.nan
    with np.errstate(invalid="ignore"):
        model.trainer.train_step(x[:200], y[:200], 0)
    assert not model.trainer.sums_finite


def test_a_huge_but_finite_sum_is_no_divergence(in_tmp):
    """The per-step test sums each buffer; a sum that only overflows is checked value by value."""
    model = dnnspec.compile_text(TINY)
    model.plan.theta[:4] = 3e38
    model.trainer.check_finite(0)  # no error: every value is finite
    model.trainer.check_finite(0, full=True)
    model.plan.theta[5] = -np.inf
    with pytest.raises(Diverged, match="dnn/hidden1/kernel became -inf in 1 of 32 values"):
        model.trainer.check_finite(0)


# ---------------------------------------------------------------- the real command line
def dnnspec_run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "dnnspec", "run", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_quickstart_with_a_huge_rate_exits_1_and_writes_no_checkpoint(in_tmp):
    proc = dnnspec_run(str(ROOT / "specs" / "quickstart.dnn"), "-q", "--set", "train.optimizer=sgd(lr=30)")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: training diverged at epoch 1, step " in proc.stderr
    assert "/batchnorm/moving_variance became inf" in proc.stderr
    assert not (in_tmp / "checkpoints" / "quickstart.h5").exists()
    assert not (in_tmp / "checkpoints" / "quickstart.last.h5").exists()


def test_cli_keeps_the_finite_checkpoint_of_the_last_good_epoch(in_tmp):
    (in_tmp / "div.dnn").write_text(DIVERGES_IN_EPOCH_3)
    proc = dnnspec_run("div.dnn", "-q")
    assert proc.returncode == 1, proc.stderr
    assert "training diverged at epoch 3" in proc.stderr and "dnn/bn/moving_variance became inf" in proc.stderr
    saved = dnnspec.load_checkpoint("ck/div.h5")
    assert [row["epoch"] for row in saved.history] == [1, 2]
    assert all_finite(saved)
    verify = subprocess.run([sys.executable, "-m", "dnnspec", "ckpt", "verify", "ck/div.h5"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
