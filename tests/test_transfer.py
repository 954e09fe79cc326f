"""Checkpoint toolkit, spec side: freezing, reuse by pattern, frozen-layer caching, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec.cli import main
from dnnspec.errors import CheckpointError, SpecError, UserError

RESUMABLE = """
model r {
    input x[2]
    scope dnn {
        dense hidden1(32, use_bias=false)
        batchnorm bn1(momentum=0.9)
        elu
        dropout(0.2)
        dense hidden2(32, activation=relu)
        gaussian_noise(stddev=0.05)
        dense outputs(3)
    }
}
data spirals = spirals(samples=900)
train {
    optimizer adam(lr=0.01)
    schedule reduce_on_plateau(factor=0.5, patience=1)
    epochs 6
    batch 32
    seed 5
    early_stopping monitor=val_loss patience=10 restore_best=true
    checkpoint "ck/r.h5"
}
"""


def assert_same_weights(a, b):
    assert list(a.variables) == list(b.variables)
    for n in a.variables:
        np.testing.assert_array_equal(a.variables[n], b.variables[n], err_msg=n)


def test_resume_after_epochs_is_bit_identical(in_tmp):
    whole = dnnspec.compile_text(RESUMABLE)
    whole.fit()
    first = dnnspec.compile_text(RESUMABLE)
    first.fit(epochs=3)
    first.save("half.h5")
    second = dnnspec.load_checkpoint("half.h5")
    second.fit()  # continues to the spec's 6 epochs
    assert len(second.history) == 6
    assert_same_weights(whole, second)
    assert [h["loss"] for h in second.history] == [h["loss"] for h in whole.history]
    np.testing.assert_array_equal(whole.trainer.updater.state["v"], second.trainer.updater.state["v"])


def test_resume_mid_epoch_is_bit_identical(in_tmp):
    whole = dnnspec.compile_text(RESUMABLE)
    whole.fit()

    class Crash(Exception):
        pass

    def save_then_crash(trainer):
        if trainer.updater.t == 45:  # inside epoch 3 (20 batches per epoch)
            crashed.save("mid.h5")
            raise Crash

    crashed = dnnspec.compile_text(RESUMABLE)
    with pytest.raises(Crash):
        crashed.fit(on_step=save_then_crash)
    resumed = dnnspec.load_checkpoint("mid.h5")
    assert resumed.trainer.state.position.batch == 45 - 2 * 20
    resumed.fit()
    assert_same_weights(whole, resumed)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in whole.history]


def test_cli_resume_matches_one_run(in_tmp):
    (in_tmp / "r.dnn").write_text(RESUMABLE)
    runner = CliRunner()
    assert runner.invoke(main, ["run", "r.dnn", "-q"]).exit_code == 0
    whole = dnnspec.load_checkpoint("ck/r.h5")
    assert runner.invoke(main, ["run", "r.dnn", "-q", "--set", "train.epochs=2"]).exit_code == 0
    result = runner.invoke(main, ["run", "r.dnn", "-q", "--resume", "ck/r.h5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_run"] == 6
    assert_same_weights(whole, dnnspec.load_checkpoint("ck/r.h5"))


# ---------------------------------------------------------------- reuse and freezing
BASE = """
model base {
    input x[2]
    scope dnn {
        dense hidden1(16, activation=relu)
        batchnorm bn1
        dense hidden2(16, activation=relu)
        dense outputs(3)
    }
}
data spirals = spirals(samples=600)
train {
    epochs 2
    seed 1
}
"""

NEW = """
model new {
    input x[2]
    scope dnn {
        dense hidden1(16, activation=relu)
        batchnorm bn1
        dense hidden2(16, activation=relu)
        dense hidden3(8, activation=relu)
        dense outputs(3)
    }
}
data spirals = spirals(samples=600)
train {
    epochs 2
    seed 2
}
reuse "base.h5" scope="dnn/(hidden[12]|bn1)"
freeze "dnn/(hidden[12]|bn1)"
"""


@pytest.fixture
def base_ckpt(in_tmp):
    model = dnnspec.compile_text(BASE)
    model.fit()
    model.save("base.h5")
    return model


def test_reuse_loads_matching_and_reports(base_ckpt):
    model = dnnspec.compile_text(NEW)
    report = model.reuse_reports[0]
    assert sorted(report.loaded) == sorted(n for n in base_ckpt.variables if not n.startswith("dnn/outputs"))
    assert "dnn/hidden3/kernel" in report.left_at_init and "dnn/outputs/kernel" in report.left_at_init
    assert report.unused == ["dnn/outputs/kernel", "dnn/outputs/bias"]
    assert "loaded (8)" in report.format()
    for n in report.loaded:
        np.testing.assert_array_equal(model.variables[n], base_ckpt.variables[n])


def test_frozen_reused_layers_stay_bit_equal_and_cache_is_used(base_ckpt):
    model = dnnspec.compile_text(NEW)
    model.fit()
    for n in ("dnn/hidden1/kernel", "dnn/bn1/moving_mean", "dnn/bn1/moving_variance", "dnn/hidden2/bias"):
        np.testing.assert_array_equal(model.variables[n], base_ckpt.variables[n])
    assert model.trainer.cache_report and "ops 1-5" in model.trainer.cache_report
    assert "dnn/hidden1/kernel" not in model.trainer.updater.slot_views()["m"]


def test_cache_gives_the_same_training_as_no_cache(base_ckpt):
    cached = dnnspec.compile_text(NEW)
    cached.fit()
    plain = dnnspec.compile_text(NEW.replace("seed 2", "seed 2\n    cache_frozen false"))
    plain.fit()
    assert plain.trainer.cache_report is None
    for n in cached.variables:  # same math in a different batch grouping: float32 round-off at most
        np.testing.assert_allclose(cached.variables[n], plain.variables[n], rtol=1e-4, atol=1e-5)


def test_cache_is_off_when_the_prefix_is_random(base_ckpt):
    spec = NEW.replace("batchnorm bn1\n", "batchnorm bn1\n        dropout(0.1)\n")
    model = dnnspec.compile_text(spec)
    model.fit()
    assert model.trainer.cache_report is None


def test_freeze_with_stats_keeps_updating_batchnorm(base_ckpt):
    model = dnnspec.compile_text(NEW.replace('freeze "dnn/(hidden[12]|bn1)"',
                                             'freeze "dnn/(hidden[12]|bn1)" stats=true'))
    model.fit()
    assert not np.array_equal(model.variables["dnn/bn1/moving_mean"], base_ckpt.variables["dnn/bn1/moving_mean"])
    np.testing.assert_array_equal(model.variables["dnn/bn1/gamma"], base_ckpt.variables["dnn/bn1/gamma"])


def test_reuse_with_renaming(base_ckpt):
    spec = NEW.replace("scope dnn", "scope encoder").replace(
        'reuse "base.h5" scope="dnn/(hidden[12]|bn1)"',
        'reuse "base.h5" scope="dnn/(hidden[12]|bn1)" from="dnn/" to="encoder/"').replace(
        'freeze "dnn/(hidden[12]|bn1)"', 'freeze "encoder/hidden1"')
    model = dnnspec.compile_text(spec)
    np.testing.assert_array_equal(model.variables["encoder/hidden2/kernel"], base_ckpt.variables["dnn/hidden2/kernel"])


def test_reuse_shape_conflict_names_both_shapes(base_ckpt):
    with pytest.raises(CheckpointError, match=r"dnn/hidden2/kernel.*\(16, 32\).*\(16, 16\)"):
        dnnspec.compile_text(NEW.replace("hidden2(16", "hidden2(32").replace("hidden3(8", "hidden3(8"))


def test_reuse_missing_file_and_empty_match(in_tmp, base_ckpt):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        dnnspec.compile_text(NEW.replace("base.h5", "nope.h5"))
    with pytest.raises(UserError, match="'decoder/' matches no variable.*dnn/hidden1/kernel"):
        dnnspec.compile_text(NEW.replace('scope="dnn/(hidden[12]|bn1)"', 'scope="decoder/"'))


def test_freeze_pattern_matching_nothing_lists_names():
    with pytest.raises(SpecError) as info:
        dnnspec.compile_text(BASE + 'freeze "dnn/hidden9"\n')
    d = info.value.diagnostics[0]
    assert d.code == "E060" and "dnn/hidden1/kernel" in d.hint


def test_cli_reuse_option_and_frozen_summary(base_ckpt, in_tmp):
    (in_tmp / "new.dnn").write_text(NEW.split("reuse")[0] + 'freeze "dnn/hidden1"\n')
    runner = CliRunner()
    result = runner.invoke(main, ["run", "new.dnn", "--reuse", "base.h5:dnn/hidden1", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    assert "reuse base.h5" in result.stdout and "loaded (2)" in result.stdout
    summary = runner.invoke(main, ["summary", "new.dnn"])
    assert "frozen" in summary.stdout
