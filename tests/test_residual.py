"""Residual blocks and stochastic depth: names and widths, finite-difference gradients through
identity and projection blocks, the stochastic-depth expectation (inference output = the
training expectation), dropped blocks (no body run, batch-norm statistics kept, zero
gradients), the frozen-prefix cut, freezing and reuse by pattern, exact resume, diagnose."""

from __future__ import annotations

import numpy as np
import pytest

import dnnspec
from dnnspec.check import check_text
from dnnspec.plan import Plan
from dnnspec.syntax.fmt import format_spec
from dnnspec.syntax.parser import parse

from helpers_gradcheck import assert_grad_close, numeric_grad
from helpers_runs import assert_resumes_exactly

NET = """
model r {{
    input x[3]
    scope dnn {{
        dense(4, activation=tanh)
        residual block({opts}) {{
            dense(4, activation=tanh)
            dense({width})
        }}
        tanh
        dense out(2)
    }}
}}
train {{
    loss mse
    optimizer sgd(lr=0.05)
    batch 8
    seed 3
{extra}
}}
{top}
"""


def spec(opts="", width=4, extra="", top=""):
    return NET.format(opts=opts, width=width, extra=extra, top=top)


class Draws:
    """A stand-in for a block's stream: random() gives the values listed, in turn."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def plan64(text: str) -> Plan:
    plan = Plan(check_text(text), np.float64)
    plan.initialize()
    plan.seed_ops()
    rng = np.random.default_rng(5)
    plan.theta[...] = rng.normal(scale=0.7, size=plan.theta.shape)  # biases too: no zero symmetry
    return plan


def begins(plan: Plan):
    return [op for op in plan.ops if getattr(op, "opens_block", False)]


# ---------------------------------------------------------------- checking and naming
def test_ops_names_and_widths():
    program = check_text(spec("projection=true", width=5))
    names = [op.name for op in program.ops]
    assert names == ["dnn/dense", "dnn/dense", "dnn/block", "dnn/block/dense", "dnn/block/dense",
                     "dnn/block/dense_1", "dnn/block/projection", "dnn/tanh", "dnn/out"]
    assert program.variable_names()[4:] == ["dnn/block/dense_1/kernel", "dnn/block/dense_1/bias",
                                            "dnn/block/projection/kernel", "dnn/out/kernel", "dnn/out/bias"]
    proj = program.ops[6]
    assert (proj.n_in, proj.n_out, proj.variables["kernel"].shape) == (5, 5, (4, 5))
    assert "no bias" in " ".join(proj.notes)


def test_repeat_numbers_blocks_and_scopes_their_layers():
    text = """
model t {
    input x[4]
    repeat 3 {
        residual block {
            dense hidden(4, activation=relu)
        }
    }
    residual {
        relu
    }
    dense(2)
}
"""
    program = check_text(text)
    assert [op.name for op in program.ops if op.kind in ("residual", "residual_add")] == [
        "block1", "block1/add", "block2", "block2/add", "block3", "block3/add", "residual", "residual/add"]
    assert "block3/hidden/kernel" in program.variable_names()


def test_linear_decay_follows_huang_eq4():
    text = """
model t {
    input x[4]
    repeat 4 {
        residual b(survival=0.5) {
            dense(4)
        }
    }
    residual c(survival=0.8, decay=none) {
        dense(4)
    }
}
"""
    program = check_text(text)
    ps = [dict(op.component.args)["survival"] for op in program.ops if op.kind == "residual"]
    total = 5  # every residual block of the model counts in L
    expected = [1 - (l / total) * (1 - 0.5) for l in range(1, 5)] + [0.8]
    np.testing.assert_allclose(ps, expected, rtol=0, atol=1e-15)
    ends = [dict(op.component.args)["survival"] for op in program.ops if op.kind == "residual_add"]
    assert ends == ps
    assert "block 2 of 5" in " ".join(program.ops[3].notes)


def test_formatter_round_trip():
    text = ("model m {\n    input x[4]\n    residual b(survival=0.5, decay=none) {  # a block\n"
            "        dense(4)\n        residual {\n            elu\n        }\n    }\n"
            "    residual(projection=true, init=he_normal) {\n        dense(2)\n    }\n}\n")
    out = format_spec(parse(text))
    assert out == text
    assert parse(out) == parse(text)
    check_text(text)


# ---------------------------------------------------------------- gradients
CASES = {
    "identity": (spec(), True),
    "projection": (spec("projection=true", width=6), True),
    "identity-inference-p": (spec("survival=0.6"), False),
    "projection-inference-p": (spec("survival=0.6, projection=true", width=2), False),
    "nested": (spec().replace("dense(4, activation=tanh)\n            dense(4)",
                              "residual inner(survival=0.7) {\n dense(4, activation=tanh)\n }\n dense(4)"), False),
}


def gradients(plan, training=True):
    """The analytic gradient of sum(output * w) for fixed x and w, and its finite differences.
    The buffer is filled with NaN first: backward must write every gradient."""
    x = np.random.default_rng(1).normal(size=(8, 3))
    w = np.random.default_rng(2).normal(size=(8, 2))

    def loss():
        return float(np.sum(plan.forward(x, training) * w))

    loss()
    plan.grad.fill(np.nan)
    plan.backward(w.copy())
    return plan.grad.copy(), numeric_grad(loss, plan.theta)


@pytest.mark.parametrize("name", CASES)
def test_gradients_by_finite_differences(name):
    text, training = CASES[name]
    analytic, numeric = gradients(plan64(text), training)
    assert np.abs(analytic).min() > 0  # every variable (the projection too) gets a gradient
    assert_grad_close(analytic, numeric, what=name)


def test_gradients_with_a_dropped_block_are_those_of_the_skip_path():
    text = spec("survival=0.5, projection=true", width=4)
    plan = plan64(text)
    (begin,) = begins(plan)
    for draw, dropped in ((0.9, True), (0.1, False)):
        begin.rng = Draws(draw)
        analytic, numeric = gradients(plan)
        assert begin.dropped is dropped
        assert_grad_close(analytic, numeric, what=f"dropped={dropped}")
        body = [n for n in plan.offsets if n.startswith("dnn/block/dense")]
        for n in body:
            a, b = plan.offsets[n]
            assert (np.all(analytic[a:b] == 0) if dropped else np.any(analytic[a:b] != 0)), n


def test_gradients_with_a_frozen_part_below():
    text = spec("projection=true", width=5, top='freeze "dnn/dense|dnn/block/dense/"')
    plan = plan64(text)
    assert plan.first_trainable == 5  # the body's second dense: backward stops there
    analytic, numeric = gradients(plan)
    assert_grad_close(analytic, numeric, what="frozen below")
    assert sorted(plan.offsets) == ["dnn/block/dense_1/bias", "dnn/block/dense_1/kernel",
                                    "dnn/block/projection/kernel", "dnn/out/bias", "dnn/out/kernel"]


# ---------------------------------------------------------------- stochastic depth
def test_inference_output_is_the_exact_training_expectation():
    p = 0.3
    plan = plan64(spec(f"survival={p}, projection=true", width=4))
    (begin,) = begins(plan)
    x = np.random.default_rng(1).normal(size=(8, 3))
    begin.rng = Draws(0.0)  # b = 1
    kept = plan.forward(x, True, stop=7).copy()  # the block's output (the add), before the tanh
    begin.rng = Draws(0.99)  # b = 0
    dropped = plan.forward(x, True, stop=7).copy()
    inference = plan.forward(x, False, stop=7).copy()
    np.testing.assert_allclose(inference, p * kept + (1 - p) * dropped, rtol=1e-12, atol=1e-12)
    assert not np.allclose(kept, dropped)


def test_monte_carlo_mean_of_training_outputs_matches_inference():
    p = 0.4
    plan = Plan(check_text(spec(f"survival={p}")))
    plan.initialize()
    plan.seed_ops()
    x = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    n = 4000
    total, squares = np.zeros((8, 4)), np.zeros((8, 4))
    kept = 0
    for _ in range(n):
        out = plan.forward(x, True, stop=7).astype(np.float64)
        total += out
        squares += out**2
        kept += not begins(plan)[0].dropped
    inference = plan.forward(x, False, stop=7)
    assert abs(kept / n - p) < 4 * np.sqrt(p * (1 - p) / n)  # the draws are Bernoulli(p)
    mean = total / n
    stderr = np.sqrt(np.maximum(squares / n - mean**2, 0) / n)
    assert stderr.max() > 0
    assert np.all(np.abs(mean - inference) < 5 * stderr + 1e-5)


def test_a_dropped_block_does_not_run_its_body_and_keeps_batchnorm_statistics():
    text = spec("survival=0.5").replace("dense(4, activation=tanh)\n            dense(4)",
                                           "dense(4)\n            batchnorm\n            dense(4)")
    model = dnnspec.compile_text(text)
    x = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    y = np.random.default_rng(2).normal(size=(16, 2)).astype(np.float32)
    model.fit(x, y, epochs=1)
    plan = model.plan
    (begin,) = begins(plan)
    mean = model.variables["dnn/block/batchnorm/moving_mean"].copy()
    begin.rng = Draws(0.99)
    model.trainer.train_step(x[:8], y[:8], 0)
    assert begin.dropped
    np.testing.assert_array_equal(model.variables["dnn/block/batchnorm/moving_mean"], mean)
    begin.rng = Draws(0.0)
    model.trainer.train_step(x[:8], y[:8], 0)
    assert not np.array_equal(model.variables["dnn/block/batchnorm/moving_mean"], mean)


def test_stochastic_depth_resumes_exactly(in_tmp):
    x = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    y = np.random.default_rng(2).normal(size=(40, 2)).astype(np.float32)
    assert_resumes_exactly(spec("survival=0.5", extra="    epochs 6"), x, y, first_epochs=3)


def test_a_training_step_with_residual_blocks_allocates_no_arrays():
    import tracemalloc

    text = """
model b {
    input x[64]
    dense(128, activation=relu)
    repeat 2 {
        residual block(survival=0.5) {
            dense(128, activation=relu)
            batchnorm
            dense(128)
        }
    }
    residual(projection=true) {
        dense(64, activation=relu)
    }
    dense(10)
}
train {
    batch 200
}
"""
    model = dnnspec.compile_text(text)
    rng = np.random.default_rng(0)
    x = rng.random((400, 64), dtype=np.float32)
    y = rng.integers(0, 10, 400)
    model.fit(x, y, epochs=1)
    for _ in range(3):  # kept and dropped blocks alike
        tracemalloc.start()
        try:
            model.trainer.train_step(x[:200], y[:200], 0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 200 * 128 * 4 * 0.75, peak
    assert all(a.dtype == np.float32 for op in model.plan.ops for a in vars(op).values() if isinstance(a, np.ndarray))


# ---------------------------------------------------------------- caching, freezing, reuse
def test_frozen_prefix_cut_never_falls_inside_a_block():
    text = spec(width=4, top='freeze "dnn/dense|dnn/block/dense/"')
    plan = Plan(check_text(text))
    assert plan.first_trainable == 5
    assert plan.cacheable_prefix() == 2  # backed off to the block's begin
    stochastic = Plan(check_text(spec("survival=0.5", top='freeze "dnn/dense|dnn/block/dense/"')))
    assert stochastic.cacheable_prefix() == 2  # the cut is before the block's draw
    stochastic = Plan(check_text(spec("survival=0.5", top='freeze "dnn/dense|dnn/block"')))
    assert stochastic.cacheable_prefix() == 0  # a frozen block that drops is random: nothing cached
    whole = Plan(check_text(spec(top='freeze "dnn/dense|dnn/block"')))
    assert whole.cacheable_prefix() == whole.first_trainable == 8  # a frozen block is cacheable
    projected = Plan(check_text(spec("projection=true", width=4, top='freeze "dnn/dense|dnn/block/dense"')))
    assert projected.first_trainable == 6 and projected.cacheable_prefix() == 2  # the trainable add


def test_caching_a_frozen_residual_prefix_trains_like_no_caching():
    text = spec(extra="    epochs 2", top='freeze "dnn/dense|dnn/block"')
    x = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    y = np.random.default_rng(2).normal(size=(40, 2)).astype(np.float32)
    a = dnnspec.compile_text(text)
    a.fit(x, y)
    b = dnnspec.compile_text(text.replace("epochs 2", "epochs 2\n    cache_frozen false"))
    b.fit(x, y)
    for n, v in a.variables.items():
        np.testing.assert_allclose(v, b.variables[n], rtol=1e-5, atol=1e-6)
    assert not np.array_equal(a.variables["dnn/out/kernel"], dnnspec.compile_text(text).variables["dnn/out/kernel"])


def test_freeze_and_reuse_by_pattern_reach_block_variables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    y = np.random.default_rng(2).normal(size=(40, 2)).astype(np.float32)
    base = dnnspec.compile_text(spec("projection=true", width=5, extra="    epochs 2"))
    base.fit(x, y)
    base.save("base.h5")
    text = spec("projection=true", width=5, extra="    epochs 2",
                top='reuse "base.h5" scope="dnn/block/"\nfreeze "dnn/block/"')
    model = dnnspec.compile_text(text)
    block = [n for n in model.variables if n.startswith("dnn/block/")]
    assert "dnn/block/projection/kernel" in block and len(block) == 5
    for n in block:
        np.testing.assert_array_equal(model.variables[n], base.variables[n])
        assert not model.plan.infos[n].trainable
    before = {n: model.variables[n].copy() for n in model.variables}
    model.fit(x, y)
    for n in block:
        np.testing.assert_array_equal(model.variables[n], before[n])
    assert not np.array_equal(model.variables["dnn/out/kernel"], before["dnn/out/kernel"])


def test_diagnose_runs_on_a_residual_spec():
    from dnnspec.diagnose import measure, probe_batches

    plan = Plan(check_text(spec("survival=0.5, projection=true", width=6)))
    plan.initialize()
    plan.seed_ops()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=(64, 2)).astype(np.float32)
    result = measure(plan, probe_batches(x, y, 16, 4))
    layers = {row["layer"]: row for row in result["layers"]}
    assert {"dnn/block", "dnn/block/dense", "dnn/block/projection", "dnn/out"} <= set(layers)
    assert layers["dnn/block/projection"]["grad_norm"] > 0
    assert np.isfinite(result["loss"])


def test_layer_monitor_reads_only_written_buffers():
    from dnnspec.diagnose import layer_stats

    model = dnnspec.compile_text(spec("survival=0.5", extra="    monitor layers every=1"))
    x = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    y = np.random.default_rng(2).normal(size=(16, 2)).astype(np.float32)
    model.fit(x, y, epochs=1)
    (begin,) = begins(model.plan)
    for draw, dropped in ((0.99, True), (0.0, False)):
        begin.rng = Draws(draw)
        model.trainer.train_step(x[:8], y[:8], 0)
        stats = layer_stats(model.plan, 8)
        assert stats["dnn/block"]["mean"] is None  # the opening op's output is its input: no buffer
        assert np.isfinite(stats["dnn/block/add"]["std"]) and np.isfinite(stats["dnn/out"]["std"])
        body = stats["dnn/block/dense_1"]
        assert (body["mean"] is None) if dropped else np.isfinite(body["mean"])
        assert body["grad_norm"] == 0 if dropped else body["grad_norm"] > 0


def test_summary_and_plan_show_the_blocks(tmp_path):
    from click.testing import CliRunner

    from dnnspec.cli import main

    path = tmp_path / "r.dnn"
    path.write_text(spec("survival=0.5, projection=true", width=5))
    runner = CliRunner()
    summary = runner.invoke(main, ["summary", str(path)])
    assert summary.exit_code == 0, summary.output
    rows = {line.split("│")[1].strip(): line for line in summary.output.splitlines() if line.startswith("│")}
    assert "survival p=0.5" in rows["dnn/block"] and "projected 4 → 5" in rows["dnn/block/projection"]
    assert "20" in rows["dnn/block/projection"]  # the kernel's 4 x 5 parameters
    plan = runner.invoke(main, ["plan", str(path)])
    assert plan.exit_code == 0, plan.output
    assert "residual p=0.5" in plan.output and "add, projection 4->5 (inference: p=0.5)" in plan.output
