"""`--set KEY=VALUE` values: expressions as in the file, except that a parameter declared a
string (a path, a label column) takes the text after `=` as typed unless it is quoted."""

from __future__ import annotations

import pytest

from dnnspec.check import check_text
from dnnspec.errors import SpecError

from conftest import ROOT

MNIST = (ROOT / "specs" / "mnist_adam.dnn").read_text()  # data mnist = mnist(path=..., validation=5000)
QUICKSTART = (ROOT / "specs" / "quickstart.dnn").read_text()


def checked(text: str, *overrides: str):
    return check_text(text, "spec.dnn", overrides)


def errors(text: str, *overrides: str) -> list:
    with pytest.raises(SpecError) as info:
        checked(text, *overrides)
    return info.value.diagnostics


@pytest.mark.parametrize("value", ["/data/mnist.npz", "../shared/data/mnist.npz", "mnist.npz", "data/x-1.npz",
                                   "C:/data/mnist.npz", "my data.npz"])
def test_unquoted_path(value):
    program = checked(MNIST, f"data.path={value}")
    assert program.data.kwargs["path"] == value
    assert f'path="{value}"' in program.canonical


def test_quoted_path_is_the_string_inside():
    assert checked(MNIST, 'data.path="x.npz"').data.kwargs["path"] == "x.npz"
    assert checked(MNIST, 'data.mnist.path="a b.npz"').data.kwargs["path"] == "a b.npz"


def test_other_string_parameters_take_text():
    program = checked(QUICKSTART, "train.checkpoint=out/run 1.h5", "train.log=logs/q.jsonl")
    assert program.train.checkpoint == "out/run 1.h5" and program.train.log == "logs/q.jsonl"
    base = (ROOT / "specs" / "transfer_base.dnn").read_text()
    assert checked(base, "data.classes=5,6,7,8,9").data.kwargs["classes"] == "5,6,7,8,9"


def test_names_and_numbers_keep_their_meaning():
    program = checked(QUICKSTART, "train.optimizer=adam", "train.epochs=3", "width=32")
    assert program.train.optimizer.name == "adam" and program.train.epochs == 3
    assert program.ops[0].n_out == 32
    program = checked(QUICKSTART, "train.optimizer=sgd(lr=0.1)", "train.early_stopping.monitor=val_accuracy")
    assert program.train.optimizer.name == "sgd" and program.train.optimizer.kwargs["lr"] == 0.1
    assert program.train.early_stopping.monitor == "val_accuracy"
    program = checked(MNIST, "data.validation=100")
    assert program.data.kwargs["validation"] == 100.0  # a number, not the string "100"


def test_a_number_for_a_number_parameter_is_still_checked():
    (d,) = errors(MNIST, "data.validation=/x")
    assert d.code == "E001" and (d.span.file, d.span.line, d.span.col) == ("--set data.validation=/x", 1, 17)
    (d,) = errors(QUICKSTART, "train.optimizer=/x")
    assert d.code == "E001"  # a registry name is parsed, not taken as text


def test_empty_or_unterminated_string_value():
    (d,) = errors(MNIST, "data.path=")
    assert d.code == "E055" and "has no value" in d.message and "(str)" in d.hint
    (d,) = errors(MNIST, 'data.path="x.npz')
    assert d.code == "E001" and "unterminated string" in d.message and d.span.col == 11


def test_override_spans_point_into_key_value():
    """Positions of an override's value count in KEY=VALUE, so carets line up under the text."""
    (d,) = errors(QUICKSTART, "train.optimizer.lr=-1")
    assert (d.span.file, d.span.line, d.span.col) == ("--set train.optimizer.lr=-1", 1, 20)
    (d,) = errors(QUICKSTART, "train.clip_norm=0")  # a setting the file lacks
    assert (d.code, d.span.col) == ("E030", 17)
    (d,) = errors(QUICKSTART, "train.epochs=  (")
    assert (d.code, d.span.col) == ("E001", 17)


def test_option_of_a_key_the_file_lacks_keeps_its_default_value():
    xor = (ROOT / "specs" / "xor.dnn").read_text()
    assert "schedule" not in xor
    program = checked(xor, "train.schedule.per=step")
    assert program.train.schedule.name == "constant" and program.train.schedule_per == "step"
