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
    assert sum(line.startswith("epoch ") for line in result.stdout.splitlines()) == 2 and "val_accuracy" in result.stdout
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


# ---------------------------------------------------------------- every diagnostic names its file

def test_whole_file_error_starts_with_the_file(in_tmp):
    """A diagnostic without a position (no model) still starts with the file, as a compiler's does."""
    (in_tmp / "specs").mkdir()
    (in_tmp / "specs" / "x.dnn").write_text("let a = 1\n")
    proc = subprocess.run([sys.executable, "-m", "dnnspec", "check", "specs/x.dnn"], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0] == "specs/x.dnn: error: the spec declares no model [E041]", proc.stderr
    assert lines[1] == "  hint: add `model NAME { input x[WIDTH] ... }`"


def test_whole_file_warning_starts_with_the_file(runner, in_tmp):
    path = in_tmp / "lb.dnn"
    path.write_text("model m {\n    input x[2]\n    dense(3)\n}\n\ntrain {\n    optimizer lbfgs\n    clip_norm 1.0\n}\n")
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 0
    assert f"{path}: warning: lbfgs ignores clip_norm/clip_value" in result.stderr, result.stderr


BAD_SPECS = sorted((ROOT / "tests" / "bad_specs").glob("*.dnn"))


@pytest.mark.parametrize("path", BAD_SPECS, ids=[p.stem for p in BAD_SPECS])
def test_every_diagnostic_line_starts_with_its_file(runner, path):
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    heads = [line for line in result.stderr.splitlines() if ": error: " in line or ": warning: " in line]
    assert heads, result.stderr
    for line in heads:
        assert line.startswith(f"{path}:"), result.stderr


# ---------------------------------------------------------------- --set errors read like a file's

def _check_with(runner, spec, *overrides):
    args = ["check", str(spec)]
    for o in overrides:
        args += ["--set", o]
    result = runner.invoke(main, args)
    assert "Traceback" not in result.output
    return result


def _caret_col(out: str, head: str) -> int:
    """The 1-based column, in the source line under `head`, that the caret line points at."""
    lines = out.splitlines()
    i = lines.index(head)
    source, caret = lines[i + 1], lines[i + 2]
    gutter = source.index("| ") + 2
    return caret.index("^") - gutter + 1


def test_override_syntax_error_names_override_column_and_expected(runner, spec):
    result = _check_with(runner, spec, "train.epochs=(")
    assert result.exit_code == 2
    out = result.stderr
    head = "--set train.epochs=(:1:15: error: syntax error: unexpected end of input [E001]"
    assert head in out.splitlines(), out
    assert "   1 | train.epochs=(" in out
    assert _caret_col(out, head) == 15  # just past the '(' of KEY=VALUE, where a value must come
    assert "  hint: expected '(', '+', '-', '[', 'false', 'true', a name, a number" in out


def test_override_syntax_error_inside_the_value(runner, spec):
    result = _check_with(runner, spec, "train.optimizer=adam(lr=0.1")
    out = result.stderr
    head = "--set train.optimizer=adam(lr=0.1:1:28: error: syntax error: unexpected end of input [E001]"
    assert result.exit_code == 2 and head in out.splitlines(), out
    assert _caret_col(out, head) == 28 and "expected ')'" in out
    result = _check_with(runner, spec, "train.epochs=3 4")
    head = "--set train.epochs=3 4:1:16: error: syntax error: unexpected '4' [E001]"
    assert head in result.stderr.splitlines(), result.stderr
    assert _caret_col(result.stderr, head) == 16


def test_override_value_errors_point_into_key_value(runner, spec):
    result = _check_with(runner, spec, "train.optimizer.lr=-1")
    head = "--set train.optimizer.lr=-1:1:20: error: 'lr' of optimizer 'adam' must be > 0, got -1 [E030]"
    assert result.exit_code == 2 and head in result.stderr.splitlines(), result.stderr
    assert _caret_col(result.stderr, head) == 20


def test_override_unknown_key(runner, spec):
    result = _check_with(runner, spec, "trian.epochs=3")
    head = "--set trian.epochs=3:1:1: error: unknown override key 'trian.epochs' [E055]"
    assert result.exit_code == 2 and head in result.stderr.splitlines(), result.stderr
    assert "   1 | trian.epochs=3" in result.stderr and "^~~~~~~~~~~~\n" in result.stderr
    # an unknown train setting or parameter is reported at that part of the key, before the value
    result = _check_with(runner, spec, "train.epohcs=(")
    assert result.exit_code == 2
    assert "--set train.epohcs=(:1:7: error: unknown train setting 'epohcs' — did you mean 'epochs'? [E050]" \
        in result.stderr.splitlines() and "syntax error" not in result.stderr, result.stderr
    result = _check_with(runner, spec, "train.optimizer.lrr=0.1")
    assert "--set train.optimizer.lrr=0.1:1:17: error: unknown parameter 'lrr' for optimizer 'adam' [E021]" \
        in result.stderr.splitlines() and "did you mean 'lr'?" in result.stderr, result.stderr
    result = _check_with(runner, spec, "data.path=/x.npz")  # spirals reads no file
    assert "--set data.path=/x.npz:1:6: error: unknown parameter 'path' for dataset 'spirals' [E021]" \
        in result.stderr.splitlines(), result.stderr


def test_override_missing_equals_and_empty_value(runner, spec):
    result = _check_with(runner, spec, "train.epochs")
    head = "--set train.epochs:1:13: error: override 'train.epochs' is not KEY=VALUE [E055]"
    assert result.exit_code == 2 and head in result.stderr.splitlines(), result.stderr
    assert _caret_col(result.stderr, head) == 13 and "expected '='" in result.stderr
    result = _check_with(runner, spec, "train.epochs=")
    head = "--set train.epochs=:1:14: error: override 'train.epochs' has no value [E055]"
    assert result.exit_code == 2 and head in result.stderr.splitlines(), result.stderr
    assert _caret_col(result.stderr, head) == 14 and "expected a value after '=' (int" in result.stderr
    result = _check_with(runner, spec, "=3")
    assert "--set =3:1:1: error: override '=3' is not KEY=VALUE [E055]" in result.stderr.splitlines()


def test_several_bad_overrides_all_reported(runner, spec):
    result = _check_with(runner, spec, "train.epochs=(", "train.batch=0")
    assert result.exit_code == 2
    assert "--set train.epochs=(:1:15: error:" in result.stderr
    assert "--set train.batch=0:1:13: error: 'batch' must be >= 1, got 0 [E030]" in result.stderr
    assert result.stderr.rstrip().endswith("2 errors")


def test_unquoted_path_override_runs(runner, in_tmp):
    """README: `--set data.path=/data/mnist.npz`; the path reaches the data loader unquoted."""
    path = in_tmp / "m.dnn"
    path.write_text('model m {\n    input x[784]\n    dense(10)\n}\n\ndata d = npz("missing.npz")\n')
    result = runner.invoke(main, ["run", str(path), "--set", f"data.path={in_tmp}/other dir/x.npz"])
    assert result.exit_code == 1, result.output  # a missing data file, not a spec error
    assert f"{in_tmp}/other dir/x.npz" in result.stderr and "Traceback" not in result.output
