"""The command line, through click's CliRunner and as a real subprocess: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dnnspec.cli import main

from conftest import ROOT, TINY


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def spec(in_tmp):
    path = in_tmp / "tiny.dnn"
    path.write_text(TINY.replace("train {", 'train {\n    checkpoint "ck/tiny.h5" best=val_accuracy\n    validation 0.2'))
    return path


def test_run_json_summary(runner, spec, in_tmp):
    result = runner.invoke(main, ["run", str(spec), "--json", "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["epochs_run"] == 2
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_accuracy", "checkpoint", "seconds"):
        assert key in out
    assert out["checkpoint"] == "ck/tiny.h5" and (in_tmp / "ck" / "tiny.h5").is_file()
    log = [json.loads(line) for line in (in_tmp / "ck" / "tiny.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2] and "val_accuracy" in log[0]


def test_run_prints_epoch_lines(runner, spec):
    result = runner.invoke(main, ["run", str(spec), "--set", "train.epochs=2"])
    assert result.exit_code == 0
    assert result.stdout.count("epoch ") == 2 and "val_accuracy" in result.stdout
    assert "done: 2 epochs" in result.stdout


def test_spec_error_exit_2_without_traceback(runner, in_tmp):
    bad = in_tmp / "bad.dnn"
    bad.write_text("model m {\n    input x[2]\n    rleu\n}\n")
    result = runner.invoke(main, ["check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3:5: error: unknown activation 'rleu' — did you mean 'relu'?" in result.stderr
    assert "Traceback" not in result.output


def test_bad_override_is_a_spec_error(runner, spec):
    result = runner.invoke(main, ["check", str(spec), "--set", "train.optimizer.lr=-1"])
    assert result.exit_code == 2
    assert "'lr' of optimizer 'adam' must be > 0, got -1" in result.stderr
    result = runner.invoke(main, ["check", str(spec), "--set", "train.epohcs=3"])
    assert result.exit_code == 2 and "did you mean 'epochs'" in result.stderr
    result = runner.invoke(main, ["check", str(spec), "--set", "nothing"])
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.stderr


def test_override_applies(runner, spec):
    result = runner.invoke(main, ["summary", str(spec), "--set", "train.seed=3"])
    assert result.exit_code == 0
    result = runner.invoke(main, ["plan", str(spec)])
    assert result.exit_code == 0 and "dnn/hidden1" in result.stdout


def test_missing_data_file_exit_1(runner, in_tmp):
    path = in_tmp / "m.dnn"
    path.write_text('model m {\n    input x[784]\n    dense(10)\n}\n\ndata d = npz("missing.npz")\n')
    result = runner.invoke(main, ["run", str(path)])
    assert result.exit_code == 1
    assert "missing.npz" in result.stderr and "Traceback" not in result.output


def test_missing_spec_and_checkpoint_exit_1(runner, in_tmp):
    assert runner.invoke(main, ["check", "nope.dnn"]).exit_code == 1
    result = runner.invoke(main, ["ckpt", "show", "nope.h5"])
    assert result.exit_code == 1 and "no such checkpoint" in result.stderr


def test_fmt_check_and_write(runner, in_tmp):
    path = in_tmp / "messy.dnn"
    path.write_text("model m{\n input x[2]\n dense( 3 )\n}\n")
    assert runner.invoke(main, ["fmt", "--check", str(path)]).exit_code == 1
    assert runner.invoke(main, ["fmt", "-w", str(path)]).exit_code == 0
    assert path.read_text() == "model m {\n    input x[2]\n    dense(3)\n}\n"
    assert runner.invoke(main, ["fmt", "--check", str(path)]).exit_code == 0


def test_check_list_shows_catalogue(runner):
    result = runner.invoke(main, ["check", "--list"])
    assert result.exit_code == 0
    for word in ("dense(units: int in [1, inf)", "elu(alpha", "adam(lr", "he_normal", "early_stopping"):
        assert word in result.stdout


def test_eval_and_ckpt_show(runner, spec, in_tmp):
    assert runner.invoke(main, ["run", str(spec), "-q"]).exit_code == 0
    result = runner.invoke(main, ["eval", str(spec), "--checkpoint", "ck/tiny.h5", "--json"])
    assert result.exit_code == 0
    metrics = json.loads(result.stdout)
    assert set(metrics) == {"train", "val", "test"} and 0 <= metrics["test"]["accuracy"] <= 1
    result = runner.invoke(main, ["ckpt", "show", "ck/tiny.h5"])
    assert result.exit_code == 0 and "dnn/hidden1/kernel" in result.stdout and "format_version: 1" in result.stdout


def test_subprocess_quickstart_runs(in_tmp):
    """The README's main command, as a user runs it (a real process, a real file)."""
    proc = subprocess.run([sys.executable, "-m", "dnnspec", "run", str(ROOT / "specs" / "quickstart.dnn"),
                           "--json", "--set", "train.epochs=2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["epochs_run"] == 2 and (in_tmp / "checkpoints" / "quickstart.h5").is_file()
    assert "epoch   1" in proc.stderr  # per-epoch lines go to stderr when stdout carries JSON


def test_subprocess_spec_error_exit_code(in_tmp):
    (in_tmp / "bad.dnn").write_text("model m {\n    input x[2]\n    dense(0)\n}\n")
    proc = subprocess.run([sys.executable, "-m", "dnnspec", "check", "bad.dnn"], capture_output=True, text=True)
    assert proc.returncode == 2 and "bad.dnn:3:11: error:" in proc.stderr and "Traceback" not in proc.stderr
