"""Lints W107-W113: each fires on the mistake it names (with line:col where the op has a span)
and stays quiet on the fix; codes can be allowed; the shipped specs stay lint-free."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnnspec.check import check_text
from dnnspec.check import lints
from dnnspec.errors import Diagnostics, Span, UserError

ROOT = Path(__file__).resolve().parents[1]


def spec(layers: str, train: str = "optimizer adam(lr=0.001)", data: str = "data s = spirals()", extra: str = "",
         width: int = 2, outputs: str = "dense outputs(3)") -> str:
    return (f"model m {{\n    input x[{width}]\n{layers}\n    {outputs}\n}}\n\n{data}\n\n"
            f"train {{\n    {train}\n}}\n{extra}")


def warnings(text: str, overrides=()) -> list:
    return check_text(text, "t.dnn", list(overrides)).warnings


def codes(text: str, overrides=()) -> list[str]:
    return [w.code for w in warnings(text, overrides)]


def only(text: str, code: str):
    found = [w for w in warnings(text) if w.code == code]
    assert len(found) == 1, [w.code for w in warnings(text)]
    return found[0]


DEEP_TANH = "    repeat 3 {{\n        dense h(100, activation=tanh, init={init})\n    }}"
DEEP_RELU = "    repeat {n} {{\n        dense h(100, activation=relu, init={init})\n    }}"


# ---------------------------------------------------------------- W107 constant hidden kernel
def test_w107_constant_hidden_kernel():
    w = only(spec("    dense h1(16, init=zeros, activation=relu)\n    dense h2(16, activation=relu)"), "W107")
    assert (w.span.line, w.span.col) == (3, 5) and "'h1'" in w.message and "symmetry" in w.message
    assert "constant(value=0.5)" in only(spec("    dense h1(16, init=constant(value=0.5))\n    relu"), "W107").message


def test_w107_quiet_for_random_hidden_and_constant_output():
    assert "W107" not in codes(spec("    dense h1(16, activation=relu)"))
    # a zero output layer is fine: its inputs differ, so its units do not stay equal
    assert "W107" not in codes(spec("    dense h1(16, activation=relu)", outputs="dense outputs(3, init=zeros)"))


# ---------------------------------------------------------------- W108 σ=1 on deep sigmoid/tanh
def test_w108_large_normal_init_on_deep_tanh():
    w = only(spec(DEEP_TANH.format(init="normal(stddev=1.0)")), "W108")
    assert w.span.line == 4 and "normal(stddev=1)" in w.message and "saturate" in w.message
    assert "2 of 3 tanh layers" in w.message  # the first has fan-in 2: not wide enough to saturate


def test_w108_quiet_for_small_or_fan_scaled_init_or_batch_norm():
    assert "W108" not in codes(spec(DEEP_TANH.format(init="normal(stddev=0.05)")))
    assert "W108" not in codes(spec(DEEP_TANH.format(init="glorot_normal")))
    with_bn = "    repeat 3 {\n        dense h(100, init=normal(stddev=1.0))\n        batchnorm\n        tanh\n    }"
    assert "W108" not in codes(spec(with_bn))
    shallow = "    repeat 2 {\n        dense h(100, activation=tanh, init=normal(stddev=1.0))\n    }"
    assert "W108" not in codes(spec(shallow))


# ---------------------------------------------------------------- W109 mismatched init
def test_w109_he_under_tanh():
    w = only(spec(DEEP_TANH.format(init="he_normal")), "W109")
    assert "he_normal (He) under tanh" in w.message and w.span.line == 4


def test_w109_glorot_under_deep_relu():
    w = only(spec(DEEP_RELU.format(n=5, init="glorot_uniform")), "W109")
    assert "Glorot" in w.message and "5-layer ReLU stack" in w.message


def test_w109_quiet_for_matched_inits_and_shallow_relu():
    assert "W109" not in codes(spec(DEEP_TANH.format(init="glorot_uniform")))
    assert "W109" not in codes(spec(DEEP_RELU.format(n=9, init="he_normal")))
    assert "W109" not in codes(spec(DEEP_RELU.format(n=4, init="glorot_uniform")))
    assert "W109" not in codes(spec(DEEP_RELU.format(n=9, init="auto")))  # auto picks He


# ---------------------------------------------------------------- W110 learning rate
def test_w110_far_outside_the_usual_range():
    assert "far above the usual range of adam" in only(spec("    relu", "optimizer adam(lr=0.5)"), "W110").message
    assert "far below the usual range of sgd" in only(spec("    relu", "optimizer sgd(lr=1e-6)"), "W110").message
    [w] = [w for w in warnings(spec("    relu"), ["train.optimizer.lr=3"]) if w.code == "W110"]
    assert "3 is far above" in w.message
    onecycle = "optimizer sgd(lr=0.01)\n    schedule onecycle(max_lr=20, total_steps=10)"
    assert "onecycle's max_lr 20" in only(spec("    relu", onecycle), "W110").message


def test_w110_quiet_inside_the_range():
    for opt in ("adam(lr=0.001)", "adam(lr=0.05)", "sgd(lr=0.1)", "nesterov(lr=0.01, momentum=0.9)",
                "rmsprop(lr=0.001)", "adagrad(lr=0.01)", "lbfgs(lr=1)"):
        assert "W110" not in codes(spec("    relu", f"optimizer {opt}")), opt


def test_w110_points_at_the_setting_when_the_checker_records_spans():
    """line:col of a train setting needs the checker to hand over their spans (program.setting_spans)."""
    program = check_text(spec("    relu", "optimizer adam(lr=0.5)"), "t.dnn")
    program.setting_spans = {"optimizer": Span("t.dnn", 11, 5, 11, 14)}
    diags = Diagnostics()
    lints.learning_rate_range(program, diags)
    [w] = diags.warnings
    assert (w.span.line, w.span.col) == (11, 5)


# ---------------------------------------------------------------- W111 adagrad on a long run
def test_w111_adagrad_long_run():
    # spirals(): 2100 training examples, 66 batches of 32 a epoch: 200 epochs = 13,200 updates
    w = only(spec("    relu", "optimizer adagrad(lr=0.01)\n    epochs 200"), "W111")
    assert "13,200 updates" in w.message and "rmsprop or adam" in w.hint
    unknown = spec("    relu", "optimizer adagrad(lr=0.01)\n    epochs 150", data='data d = npz(path="d.npz")')
    assert "150 epochs" in only(unknown, "W111").message


def test_w111_quiet_on_short_runs_and_other_optimizers():
    assert "W111" not in codes(spec("    relu", "optimizer adagrad(lr=0.01)\n    epochs 20"))
    assert "W111" not in codes(spec("    relu", "optimizer rmsprop(lr=0.001)\n    epochs 500"))
    file_data = spec("    relu", "optimizer adagrad(lr=0.01)\n    epochs 20", data='data d = npz(path="d.npz")')
    assert "W111" not in codes(file_data)


# ---------------------------------------------------------------- W112 nothing trainable
def test_w112_freeze_everything():
    w = only(spec("    dense h(16, activation=relu)", extra='\nfreeze "h|outputs"\n'), "W112")
    assert w.span is not None and w.span.line == 13 and "nothing is left to train" in w.message
    assert "W112" in codes(spec("    dense h(16, activation=relu)", extra='\ntrainable "nothing_matches|h/bias"\n'
                                                                          'freeze "h/bias"\n'))


def test_w112_quiet_when_something_trains():
    assert "W112" not in codes(spec("    dense h(16, activation=relu)", extra='\nfreeze "h"\n'))
    assert "W112" not in codes(spec("    dense h(16, activation=relu)"))


# ---------------------------------------------------------------- W113 schedule ends early
def test_w113_schedule_ends_before_training():
    w = only(spec("    relu", "schedule cosine(total_steps=5)\n    epochs 10"), "W113")
    assert "cosine ends after 5 epochs, but training runs 10" in w.message and "total_steps=10" in w.hint
    per_step = only(spec("    relu", "schedule cosine(total_steps=500) per=step\n    epochs 10"), "W113")
    assert "660" in per_step.message  # 10 epochs x 66 updates of spirals()
    warm = only(spec("    relu", "schedule polynomial(total_steps=5) warmup=2\n    epochs 10"), "W113")
    assert "warmup 2 + total_steps 5" in warm.message
    assert "climbs back" in only(spec("    relu", "schedule cosine(total_steps=5, clamp=false)\n    epochs 10"),
                                 "W113").message


def test_w113_quiet_when_it_lasts_or_the_data_size_is_unknown():
    assert "W113" not in codes(spec("    relu", "schedule cosine(total_steps=10)\n    epochs 10"))
    assert "W113" not in codes(spec("    relu", "schedule cosine(total_steps=7) warmup=3\n    epochs 10"))
    assert "W113" not in codes(spec("    relu", "schedule step(step_size=2)\n    epochs 10"))
    unknown = spec("    relu", "schedule cosine(total_steps=5) per=step\n    epochs 10", data='data d = npz(path="d.npz")')
    assert "W113" not in codes(unknown)


# ---------------------------------------------------------------- allowing, and the old lints
def test_allow_filters_and_validates():
    text = spec(DEEP_TANH.format(init="he_normal"), "optimizer adam(lr=0.5)")
    found = warnings(text)
    assert {"W109", "W110"} <= {w.code for w in found}
    assert {w.code for w in lints.without(found, ["w110"])} == {w.code for w in found} - {"W110"}
    with pytest.raises(UserError, match=r"no lint has that code — did you mean W1\d\d\?"):
        lints.check_allow(["W11O"])
    assert set(lints.CODES) >= {f"W1{i:02d}" for i in range(1, 14)}


def test_program_allow_silences_at_the_source():
    """An `allow` line (recorded by the checker as program.allow) stops the lint emitting."""
    program = check_text(spec("    relu", "optimizer adam(lr=0.5)"), "t.dnn")
    program.allow = ["W110"]
    diags = Diagnostics()
    lints.learning_rate_range(program, diags)
    assert diags.warnings == []


def test_old_lints_still_fire():
    text = "model m {\n    input x[4]\n    repeat 6 {\n        dense(8, activation=sigmoid)\n    }\n    dense(2)\n" \
           "    softmax\n}\n"
    assert {"W101", "W102"} <= set(codes(text))


# ---------------------------------------------------------------- shipped specs
ON_PURPOSE = {  # specs that show a mistake on purpose, and the codes they show
    "mnist_sigmoid9.dnn": {"W101"},
    "mnist_sigmoid9_glorot4.dnn": {"W101"},
    "mnist_sigmoid9_normal.dnn": {"W101", "W108"},
}
SPECS = sorted({*(ROOT / "specs").glob("*.dnn"), *(ROOT / "specs").glob("**/*.dnn")})


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_are_lint_free(path):
    got = set(codes(path.read_text()))
    assert got == ON_PURPOSE.get(path.name, set()), got
