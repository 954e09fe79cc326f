"""`dnnspec diagnose`: per-layer statistics on the training plan, the verdict, variations, the
training hooks (LayerMonitor, TensorBoard). Generated data: a 64-feature npz written per test."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dnnspec import api
from dnnspec import diagnose as dg
from dnnspec.cli import main


def write_data(path: Path, features: int = 64, classes: int = 4, n: int = 1200, seed: int = 0) -> Path:
    """Pixel-like features in [0, 1) and labels from a random linear rule (Keras' npz layout)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n + 200, features)).astype(np.float32)
    y = np.argmax((x - 0.5) @ rng.standard_normal((features, classes)), axis=1)
    np.savez(path, x_train=x[:n], y_train=y[:n], x_test=x[n:], y_test=y[n:])
    return path


def deep_spec(data: Path, activation: str, init: str, depth: int = 9, bias: str = "zeros", extra: str = "") -> str:
    return f"""model deep {{
    input x[64]
    repeat {depth} {{
        dense hidden(100, activation={activation}, init={init}, bias_init={bias})
    }}
    dense outputs(4)
}}

data gen = npz(path="{data}", validation=200)

train {{
    optimizer sgd(lr=0.01)
    batch 64
    seed 3
{extra}}}
"""


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Small products: one BLAS thread is faster than a pool that must wake for each (and immune
    to a busy machine)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data") / "gen.npz")


def diagnosis(text: str, tmp: Path, steps: int = 0, **kw) -> list[dict]:
    path = tmp / "spec.dnn"
    path.write_text(text)
    return dg.diagnose_variations(dg.spec_variations(str(path), **kw), batches=6, steps=steps)


def kinds(phase: dict) -> dict[str, dict]:
    return {f["kind"]: f for f in phase["verdict"]}


# ---------------------------------------------------------------- the done criteria
def test_sigmoid_normal_init_vanishes_and_saturates(data, tmp_path):
    [rep] = diagnosis(deep_spec(data, "sigmoid", "normal(stddev=1.0)"), tmp_path)
    found = kinds(rep["init"])
    assert "vanishing" in found and "saturated" in found, found
    assert "hidden1" in found["vanishing"]["layers"]  # the lower layers, by name
    assert found["vanishing"]["message"].startswith("vanishing gradients: the gradient norm")
    assert "from outputs to hidden1" in found["vanishing"]["message"]
    sat = {r["name"]: r["saturated"] for r in rep["init"]["layers"]}
    assert min(sat[f"hidden{i}"] for i in range(2, 10)) > 0.3
    assert "hidden5" in found["saturated"]["layers"]


def test_relu_he_is_healthy(data, tmp_path):
    [rep] = diagnosis(deep_spec(data, "relu", "he_normal"), tmp_path)
    assert rep["init"]["verdict"] == [], rep["init"]["verdict"]
    assert dg.verdict_text([]) == "healthy"
    assert all(r["saturated"] is None for r in rep["init"]["layers"])  # not a saturating activation


def test_large_negative_bias_kills_relu_units(data, tmp_path):
    [rep] = diagnosis(deep_spec(data, "relu", "he_normal", depth=4, bias="constant(value=-3.0)"), tmp_path)
    dead = kinds(rep["init"])["dead"]
    assert "hidden2" in dead["layers"] and "% of hidden" in dead["message"] and "units are dead" in dead["message"]
    layers = {r["name"]: r for r in rep["init"]["layers"]}
    assert layers["hidden2"]["dead"] == 1.0


def test_glorot_sigmoid_vanishes_by_orders_of_magnitude(data, tmp_path):
    [rep] = diagnosis(deep_spec(data, "sigmoid", "glorot_uniform"), tmp_path)
    msg = kinds(rep["init"])["vanishing"]["message"]
    assert "×10⁻" in msg
    assert "saturated" not in kinds(rep["init"])


def test_exploding_and_shrinking_activations(data, tmp_path):
    [rep] = diagnosis(deep_spec(data, "relu", "normal(stddev=1.0)"), tmp_path)
    assert "exploding" in kinds(rep["init"])
    [rep] = diagnosis(deep_spec(data, "relu", "glorot_uniform"), tmp_path)
    assert "from hidden1 to hidden9" in kinds(rep["init"])["shrinking"]["message"]


# ---------------------------------------------------------------- it measures the training plan
def test_measured_outputs_are_the_plans_own(data, tmp_path):
    """Layer statistics equal Plan.forward(training=True, stop=k) on the same batch, and the
    gradients equal those of the plan's own backward (a model without random ops)."""
    text = deep_spec(data, "tanh", "glorot_uniform", depth=3).replace(
        "    dense outputs(4)", "    batchnorm\n    dense outputs(4)")
    model = api.compile_text(text)
    x, y = model.load_data().train
    batch = (x[:64], y[:64])
    result = dg.measure(model.plan, [batch])
    plan = model.plan
    groups = dg.layer_groups(plan)
    for g, row in zip(groups, result["layers"]):
        out = plan.forward(batch[0], training=True, stop=g.ops[-1] + 1).astype(np.float64)
        assert row["mean"] == pytest.approx(out.mean(), rel=1e-5, abs=1e-7)
        assert row["std"] == pytest.approx(out.std(), rel=1e-4, abs=1e-7)
    z = plan.forward(batch[0], training=True)
    plan.loss.forward(z, batch[1])
    plan.backward(plan.loss.backward())
    for g, row in zip(groups, result["layers"]):
        if g.kernel:
            assert row["grad_norm"] == pytest.approx(float(np.linalg.norm(plan.grads[g.kernel])), rel=1e-5)


def test_steps_train_a_copy_through_train_step(data, tmp_path, monkeypatch):
    from dnnspec.train.loop import Trainer

    calls = []
    original = Trainer.train_step

    def counting(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(Trainer, "train_step", counting)
    model = api.compile_text(deep_spec(data, "relu", "he_normal", depth=3))
    before = model.plan.theta.copy()
    x, y = model.load_data().train
    rep = dg.diagnose_model(model, dg.probe_batches(x, y, 64, 4), steps=5)
    assert len(calls) == 5
    np.testing.assert_array_equal(model.plan.theta, before)  # the model itself is not trained
    assert model.step == 0
    after = rep["after"]
    assert after["steps"] == 5 and len(after["losses"]) == 5
    ratios = [r["update_ratio"] for r in after["layers"] if r["kernel"]]
    assert all(0 < r < 0.1 for r in ratios), ratios


def test_diverging_steps_are_reported(data, tmp_path):
    [rep] = diagnosis(deep_spec(data, "relu", "normal(stddev=1.0)", depth=6), tmp_path, steps=3)
    assert kinds(rep["after"]).keys() & {"diverged", "updates_large", "not_finite", "exploding"}


def test_probe_batches_are_the_same_for_every_variation():
    x = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50)
    a = dg.probe_batches(x, y, 8, 3)
    b = dg.probe_batches(x, y, 8, 3)
    assert all(np.array_equal(p[0], q[0]) for p, q in zip(a, b))
    small = dg.probe_batches(x[:5], y[:5], 8, 3)  # smaller than a batch: wraps
    assert len(small) == 3 and len(small[0][0]) == 5


# ---------------------------------------------------------------- variations
def test_compare_items():
    assert dg.compare_items("init=normal(stddev=1),glorot_normal,he_normal") == [
        ("init=normal(stddev=1)", "init", "normal(stddev=1)"), ("glorot_normal", "init", "glorot_normal"),
        ("he_normal", "init", "he_normal")]
    assert dg.compare_items('bias_init=zeros,constant(value=-1)')[1] == ("constant(value=-1)", "bias_init",
                                                                          "constant(value=-1)")
    assert dg.split_items('a(b=1, c=2), "x,y", d') == ["a(b=1, c=2)", '"x,y"', "d"]


def test_compare_rewrites_every_layer_line_in_blocks_and_repeats(tmp_path):
    path = tmp_path / "b.dnn"
    path.write_text("""block pair(n) {
    dense(n, init=he_normal, use_bias=false)
    batchnorm
    elu
}

model m {
    input x[2]
    repeat 2 {
        pair p(8)
    }
    dense(8, 12)
    dense outputs(3)
}
""")
    vs = dg.spec_variations(str(path), compare="init=orthogonal,lecun_normal")
    assert [v.label for v in vs] == ["init=orthogonal", "lecun_normal"]
    for v, name in zip(vs, ("orthogonal", "lecun_normal")):
        inits = [op.component.kwargs["init"].name for op in v.program.ops if op.kind == "dense"]
        assert inits == [name] * 4  # two block instances, one positional `units`, the output layer
    assert "3 layer lines" in vs[0].change


def test_compare_key_no_layer_takes(tmp_path):
    from dnnspec.errors import UserError

    path = tmp_path / "m.dnn"
    path.write_text("model m {\n    input x[2]\n    dense(3)\n}\n")
    with pytest.raises(UserError, match="no layer of .* takes 'momentum'"):
        dg.spec_variations(str(path), compare="momentum=0.5")


def test_compare_set_is_one_override_per_column(data, tmp_path):
    reps = diagnosis(deep_spec(data, "relu", "he_normal", depth=2), tmp_path,
                     compare_sets=["train.batch=16", "train.batch=32"])
    assert [r["label"] for r in reps] == ["train.batch=16", "train.batch=32"]
    assert [r["batch_size"] for r in reps] == [16, 32]


# ---------------------------------------------------------------- the command
def test_cli_text_json_and_allow(data, tmp_path):
    spec = tmp_path / "s.dnn"
    spec.write_text(deep_spec(data, "sigmoid", "normal(stddev=1.0)"))
    runner = CliRunner()
    text = runner.invoke(main, ["diagnose", str(spec), "--batches", "3"])
    assert text.exit_code == 0, text.output
    assert "verdict: vanishing gradients" in text.stdout and "hidden9" in text.stdout
    assert "[W108]" in text.stderr and "[W101]" in text.stderr
    quiet = runner.invoke(main, ["diagnose", str(spec), "--batches", "3", "--allow", "W108", "--allow", "w101",
                                 "--json", "--steps", "2"])
    assert quiet.exit_code == 0, quiet.output
    assert "W108" not in quiet.stderr and "W101" not in quiet.stderr
    out = json.loads(quiet.stdout)
    [v] = out["variations"]
    assert v["init"]["healthy"] is False and v["after"]["steps"] == 2
    layer = v["init"]["layers"][0]
    for key in ("mean", "std", "saturated", "dead", "grad_norm", "grad_ratio", "variables", "histogram"):
        assert key in layer
    assert "update_ratio" in v["after"]["layers"][0]
    bad = runner.invoke(main, ["diagnose", str(spec), "--allow", "W999"])
    assert bad.exit_code == 1 and "no lint has that code" in bad.stderr


def test_cli_needs_data(tmp_path):
    spec = tmp_path / "s.dnn"
    spec.write_text("model m {\n    input x[2]\n    dense(3)\n}\n")
    result = CliRunner().invoke(main, ["diagnose", str(spec)])
    assert result.exit_code == 1 and "needs data" in result.stderr


def test_cli_plot_writes_figures_and_refuses_to_replace(data, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib import image

    spec = tmp_path / "s.dnn"
    spec.write_text(deep_spec(data, "sigmoid", "glorot_uniform", depth=2))
    figs = tmp_path / "figs"
    args = ["diagnose", str(spec), "--batches", "2", "--compare", "init=normal(stddev=1),glorot_normal,he_normal",
            "--plot", str(figs)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("== ") == 3
    for name in ("activations.png", "gradients.png"):
        img = image.imread(figs / name)
        assert img.shape[0] > 300 and img.shape[1] > 600
        assert img[..., :3].std() > 0.05  # not blank
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "without --force" in again.stderr
    assert "== " not in again.stdout  # refused before any work


def test_figure_objects_have_titles_labels_and_legends(data, tmp_path):
    pytest.importorskip("matplotlib")
    from dnnspec import plots

    reps = diagnosis(deep_spec(data, "relu", "he_normal", depth=3), tmp_path,
                     compare="init=glorot_normal,he_normal")
    fig = plots.activation_histograms(reps)
    assert fig._suptitle.get_text().startswith("Activations per layer")
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 2
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["init=glorot_normal", "he_normal"]
    grads = plots.gradient_norms(reps)
    ax = grads.axes[1]
    assert len(ax.get_legend().get_lines()) == 2 and ax.get_yscale() == "log" and ax.get_xlabel()
    plots.pyplot().close("all")


# ---------------------------------------------------------------- during training
def test_layer_stats_reads_the_step_just_run(data, tmp_path):
    """layer_stats (no forward of its own) reports what measure() computes for the same batch."""
    model = api.compile_text(deep_spec(data, "tanh", "glorot_uniform", depth=3))
    x, y = model.load_data().train
    xb, yb = x[:64], y[:64]
    plan = model.plan
    z = plan.forward(xb, training=True)
    plan.loss.forward(z, yb)
    plan.backward(plan.loss.backward())
    stats = dg.layer_stats(plan, rows=64)
    ref = {r["layer"]: r for r in dg.measure(plan, [(xb, yb)], keep_samples=False)["layers"]}
    assert list(stats) == list(ref)
    for name, s in stats.items():
        for key in ("mean", "std", "saturated", "grad_norm", "grad_ratio"):
            if ref[name][key] is None:
                assert s[key] is None, (name, key)
            else:
                assert s[key] == pytest.approx(ref[name][key], rel=1e-5, abs=1e-9), (name, key)


def test_layer_monitor_rows_every_n_steps(data, tmp_path):
    model = api.compile_text(deep_spec(data, "relu", "he_normal", depth=3, extra="    epochs 1\n"))
    monitor = dg.LayerMonitor(model.plan, every=5)
    rows = []

    def hook(trainer):
        row = monitor.on_step(trainer)
        if row is not None:
            rows.append(row)

    model.fit(on_step=hook)
    steps = [r["step"] for r in rows]
    assert steps and all(s % 5 == 0 for s in steps) and steps == sorted(steps)
    row = rows[-1]
    assert row["monitor"] == "layers" and row["epoch"] == 1
    first = row["layers"]["hidden1"]
    assert 0 < first["update_ratio"] < 0.1 and first["grad_norm"] > 0 and first["dead"] is not None
    json.dumps(rows)  # a log line each


def test_tensorboard_writer_events_read_back(tmp_path):
    pytest.importorskip("tensorboardX")
    hook = dg.tensorboard_writer(tmp_path / "tb")
    hook.epoch_end({"epoch": 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75, "lr": 0.01,
                    "seconds": 1.0})
    hook.epoch_end({"epoch": 2, "loss": 0.4, "accuracy": 0.85, "val_loss": 0.55, "lr": 0.01, "seconds": 1.0})
    hook.layer_stats(100, {"dnn/hidden1": {"grad_norm": 0.25, "dead": None, "update_ratio": 1e-3}})
    hook.close()
    [events] = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    scalars = read_scalars(events)
    assert scalars["loss/train"] == [(1, 0.5), (2, pytest.approx(0.4))]
    assert scalars["loss/val"][0] == (1, pytest.approx(0.6))
    assert scalars["accuracy/val"] == [(1, 0.75)]
    assert scalars["layers/grad_norm/dnn/hidden1"] == [(100, 0.25)]
    assert "layers/dead/dnn/hidden1" not in scalars and "seconds/train" in scalars


def read_scalars(path: Path) -> dict[str, list]:
    """tag -> [(step, value)]: tensorboard's own reader when installed, else the TFRecord frames
    decoded with tensorboardX's Event protobuf (CRCs checked with its crc32c)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        EventAccumulator = None
    if EventAccumulator is not None:
        acc = EventAccumulator(str(path))
        acc.Reload()
        return {t: [(e.step, pytest.approx(e.value)) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto.event_pb2 import Event

    def masked(data: bytes) -> int:
        c = crc32c(data)
        return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    out: dict[str, list] = {}
    raw = path.read_bytes()
    pos = 0
    while pos < len(raw):
        header = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", raw[pos + 8:pos + 12])
        assert hcrc == masked(header)
        data = raw[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])
        assert dcrc == masked(data)
        pos += 16 + length
        event = Event.FromString(data)
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, pytest.approx(v.simple_value)))
    return out


# ---------------------------------------------------------------- architecture
def test_nothing_below_imports_diagnose_or_plots():
    """diagnose and plots sit above api: no module of the library below them imports them."""
    from test_architecture import PKG, group, imports, module_name

    above = {"diagnose", "plots", "cli", "session"}
    wrong = []
    for path in sorted(PKG.rglob("*.py")):
        mine = group(module_name(path))
        if mine in above:
            continue
        for target, line in imports(path):
            if group(target) in ("diagnose", "plots"):
                wrong.append(f"{path.name}:{line}: {mine} imports {target}")
    assert not wrong, wrong


def test_compare_spec_puts_a_residual_net_beside_a_plain_one(data, tmp_path):
    pytest.importorskip("matplotlib")  # --plot
    plain = tmp_path / "plain.dnn"
    plain.write_text(deep_spec(data, "relu", "he_normal", depth=4))
    residual = tmp_path / "res.dnn"
    residual.write_text(deep_spec(data, "relu", "he_normal", depth=1).replace(
        "    dense outputs(4)",
        "    repeat 2 {\n        residual block(survival=0.5) {\n            dense(100, activation=relu)\n"
        "            dense(100, init=zeros)\n        }\n    }\n    dense outputs(4)"))
    out = tmp_path / "figs"
    result = CliRunner().invoke(main, ["diagnose", str(plain), "--compare-spec", str(residual), "--batches", "3",
                                       "--compare", "init=glorot_normal", "--json", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    reps = json.loads(result.stdout)["variations"]
    assert [r["label"] for r in reps] == ["init=glorot_normal", "res"]
    layers = [row["layer"] for row in reps[1]["init"]["layers"]]
    assert "block2/dense_1" in layers and "block2/add" in layers
    assert (out / "gradients.png").is_file()
    # --compare reaches the layers inside residual blocks too
    [rep] = dg.diagnose_variations(dg.spec_variations(str(residual), compare="init=glorot_normal"), batches=2)
    assert rep["change"].endswith("on 4 layer lines")
