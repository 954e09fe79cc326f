"""The compiled plan: scoped names, flat buffers, per-variable random streams, frozen prefix."""

from __future__ import annotations

import numpy as np

import dnnspec
from dnnspec.check import check_text
from dnnspec.plan import Plan


def test_scoped_variable_names(tiny_spec):
    model = dnnspec.compile_text(tiny_spec)
    assert list(model.variables) == [
        "dnn/hidden1/kernel", "dnn/hidden1/bias",
        "dnn/bn/gamma", "dnn/bn/beta", "dnn/bn/moving_mean", "dnn/bn/moving_variance",
        "dnn/outputs/kernel", "dnn/outputs/bias",
    ]
    assert model.variables["dnn/hidden1/kernel"].shape == (2, 16)
    assert all(v.dtype == np.float32 for v in model.variables.values())
    infos = model.plan.infos
    assert infos["dnn/bn/moving_mean"].trainable is False and infos["dnn/bn/gamma"].trainable is True


def test_variables_are_views_into_flat_buffers(tiny_spec):
    model = dnnspec.compile_text(tiny_spec)
    k = model.variables["dnn/outputs/kernel"]
    assert np.shares_memory(k, model.plan.theta)
    assert np.shares_memory(model.variables["dnn/bn/moving_mean"], model.plan.fixed)
    k[...] = 0.5  # assigning in place changes the model
    assert np.all(model.plan.ops[-1].vars["kernel"] == 0.5)
    n_trainable = sum(v.size for n, v in model.variables.items() if model.plan.infos[n].trainable)
    assert model.plan.theta.size == n_trainable


def test_initial_values_come_from_per_variable_streams(tiny_spec):
    a = dnnspec.compile_text(tiny_spec)
    # adding a layer in front does not change the other layers' initial weights
    b = dnnspec.compile_text(tiny_spec.replace("dense hidden1(16, activation=relu)",
                                               "dense hidden0(2)\n        dense hidden1(16, activation=relu)"))
    np.testing.assert_array_equal(a.variables["dnn/hidden1/kernel"], b.variables["dnn/hidden1/kernel"])
    np.testing.assert_array_equal(a.variables["dnn/outputs/kernel"], b.variables["dnn/outputs/kernel"])
    c = dnnspec.compile_text(tiny_spec.replace("seed 7", "seed 8"))
    assert not np.array_equal(a.variables["dnn/outputs/kernel"], c.variables["dnn/outputs/kernel"])


def test_auto_init_follows_the_activation():
    program = check_text("""
model m {
    input x[10]
    dense a(50, activation=relu)
    dense b(50)
    batchnorm
    tanh
    dense c(50, activation=selu)
    dense d(3)
}
""")
    picked = {op.name: dict(op.component.args)["init"].name for op in program.ops if op.kind == "dense"}
    assert picked == {"a": "he_normal", "b": "glorot_uniform", "c": "lecun_normal", "d": "glorot_uniform"}


def test_freeze_marks_prefix_and_stops_backward(tiny_spec):
    spec = tiny_spec + '\nfreeze "dnn/hidden1|dnn/bn"\n'
    plan = Plan(check_text(spec))
    assert plan.first_trainable == 4  # dense hidden1, relu, bn, dropout are below outputs
    assert plan.inference_only[2] is True  # the frozen batch norm runs in inference mode
    assert "dnn/hidden1/kernel" not in plan.offsets
    assert plan.theta.size == 16 * 3 + 3


def test_repeat_and_blocks_name_layers():
    program = check_text("""
block unit(n) {
    dense(n)
    relu
}
model m {
    input x[4]
    repeat 3 {
        unit hidden(8)
    }
    dense out(2)
}
""")
    assert [op.name for op in program.ops if op.kind == "dense"] == [
        "hidden1/dense", "hidden2/dense", "hidden3/dense", "out"]
    assert {op.layer for op in program.ops} == {"hidden1", "hidden2", "hidden3", "out"}


def test_describe_lists_ops(tiny_spec):
    lines = Plan(check_text(tiny_spec)).describe()
    assert len(lines) == 5 and "dnn/hidden1" in lines[0] and "2 -> 16" in lines[0]
