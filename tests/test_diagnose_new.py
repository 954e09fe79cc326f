"""`dnnspec new`: each template writes a commented spec that checks with no warnings, is in
canonical form, and never replaces a file without --force."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dnnspec.check import check_file
from dnnspec.cli import main
from dnnspec.syntax.fmt import format_spec
from dnnspec.syntax.parser import parse

TEMPLATES = ("default", "mnist", "transfer")


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_checks_cleanly(template, in_tmp):
    result = CliRunner().invoke(main, ["new", "my_net", "--template", template])
    assert result.exit_code == 0, result.output
    path = in_tmp / "my_net.dnn"
    text = path.read_text()
    assert text.startswith("# my_net:") and "$" not in text
    program = check_file(path)
    assert program.warnings == [], [w.message for w in program.warnings]
    assert program.model_name == "my_net" and program.train.checkpoint == "checkpoints/my_net.h5"
    assert format_spec(parse(text)) == text  # `dnnspec fmt --check` passes
    kinds = {op.kind for op in program.ops}
    assert {"batchnorm", "elu", "dropout"} <= kinds
    assert program.train.early_stopping is not None
    assert program.train.optimizer.name in ("nesterov", "adam")
    inits = {op.component.kwargs["init"].name for op in program.ops if op.kind == "dense"}
    assert "he_normal" in inits
    checked = CliRunner().invoke(main, ["check", str(path)])
    assert checked.exit_code == 0 and checked.stderr == ""


def test_output_path_and_overwrite_rules(in_tmp):
    runner = CliRunner()
    assert runner.invoke(main, ["new", "a", "-o", "specs/a_net.dnn"]).exit_code == 0
    assert "dnnspec check specs/a_net.dnn" in (in_tmp / "specs" / "a_net.dnn").read_text()
    again = runner.invoke(main, ["new", "a", "-o", "specs/a_net.dnn", "--template", "mnist"])
    assert again.exit_code == 1 and "without --force" in again.stderr
    assert "input x[2]" in (in_tmp / "specs" / "a_net.dnn").read_text()  # untouched
    forced = runner.invoke(main, ["new", "a", "-o", "specs/a_net.dnn", "--template", "mnist", "--force"])
    assert forced.exit_code == 0 and "input x[784]" in (in_tmp / "specs" / "a_net.dnn").read_text()
    (in_tmp / "data.csv").write_text("x,label\n")
    refused = runner.invoke(main, ["new", "a", "-o", "data.csv", "--force"])
    assert refused.exit_code == 1 and (in_tmp / "data.csv").read_text() == "x,label\n"
    bad = runner.invoke(main, ["new", "2fast"])
    assert bad.exit_code == 1 and "not a model name" in bad.stderr
