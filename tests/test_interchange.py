"""Interchange with the real libraries: dnnspec -> Keras 3 / PyTorch / onnxruntime / NumPy and back.

Each optional library is imported with pytest.importorskip, so a machine without an extra skips
those tests with the reason. Keras runs on its torch backend (set before keras is imported).
Models are trained a few steps first, so weights, PReLU slopes and batch-norm moving statistics
are not their initial values.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec.ckpt import interchange as ix
from dnnspec.errors import CheckpointError, UserError
from dnnspec.ops.base import ACTIVATIONS, LAYERS

# Keras on the torch backend with NumPy 2 warns about __array__(copy=...) in its own code.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TOL = 1e-5
TRAIN = """
train {
    loss softmax_cross_entropy
    optimizer adam(lr=0.02)
    batch 16
    seed 3
}
"""
# Between them the specs use every layer and activation of the catalogue (checked below).
SPECS = {
    "bn_prelu_elu_dropout": """
model a {
    input x[6]
    scope dnn {
        dense hidden1(16, activation=prelu)
        batchnorm bn(momentum=0.8)
        dropout(0.3)
        dense hidden2(12, activation=elu(alpha=0.7))
        dense outputs(3)
    }
}
""",
    "maxout_selu_noise": """
model b {
    input x[6]
    scope dnn {
        maxout m1(10, k=3)
        batchnorm bn(momentum=0.7, epsilon=1e-5, center=false)
        dense hidden2(12, use_bias=false, activation=selu)
        alpha_dropout(0.1)
        dense hidden3(10, activation=leaky_relu(alpha=0.1))
        gaussian_noise(0.2)
        dense outputs(3)
    }
}
""",
    "smooth_gates": """
model c {
    input x[6]
    scope dnn {
        dropconnect dc(12, rate=0.2, activation=gelu)
        batchnorm bn(momentum=0.5, scale=false)
        dense h2(12, activation=swish)
        dense h3(12, activation=tanh)
        dense h4(12, activation=sigmoid)
        dense h5(12, activation=softplus)
        dense h6(12, activation=rrelu)
        dense h7(12, activation=gelu(approximate=true))
        dense h8(12, activation=relu)
        dense h9(12, activation=linear)
        activity_regularization(l1=0.01, l2=0.01)
        softmax
        dense outputs(3)
    }
}
""",
}


def _train(spec: str, seed: int = 0) -> dnnspec.Model:
    model = dnnspec.compile_text(spec + TRAIN)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(96, model.program.input_width)).astype(np.float32)
    y = rng.integers(0, 3, size=96)
    model.fit(x, y, epochs=2)
    return model


@pytest.fixture(scope="module")
def trained() -> dict[str, dnnspec.Model]:
    return {name: _train(spec) for name, spec in SPECS.items()}


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return (np.random.default_rng(1).normal(size=(40, 6)) * 2.0).astype(np.float32)


def _max_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def _exec(code: str) -> dict:
    scope: dict = {}
    exec(compile(code, "<generated>", "exec"), scope)
    return scope


# ---------------------------------------------------------------- coverage of the catalogue
def test_specs_use_every_catalogue_entry_and_the_training_moved_the_statistics(trained):
    used = {op.kind for m in trained.values() for op in m.program.ops}
    assert used >= {*LAYERS.all_names(), *ACTIVATIONS.all_names()} - _aliases()
    bn = trained["bn_prelu_elu_dropout"].variables
    assert np.abs(bn["dnn/bn/moving_mean"]).max() > 1e-2 and np.abs(bn["dnn/bn/moving_variance"] - 1).max() > 1e-2
    assert np.abs(bn["dnn/hidden1/alpha"] - 0.25).max() > 1e-4


def _aliases() -> set[str]:
    canonical = {e.name for reg in (LAYERS, ACTIVATIONS) for e in reg.entries()}
    return {*LAYERS.all_names(), *ACTIVATIONS.all_names()} - canonical


@pytest.mark.parametrize("table", ["keras", "torch", "onnx"])
def test_every_catalogue_entry_has_an_export_rule(table):
    from dnnspec.ckpt.interchange import keras, onnx, torch

    rules = {"keras": keras.KERAS_LAYERS, "torch": torch.TORCH_MODULES, "onnx": onnx.ONNX_OPS}[table]
    missing = {e.name for reg in (LAYERS, ACTIVATIONS) for e in reg.entries()} - set(rules)
    assert not missing, f"no {table} export rule for {sorted(missing)}"


# ---------------------------------------------------------------- dnnspec -> Keras 3
@pytest.mark.parametrize("name", SPECS)
def test_keras3_weights_load_into_the_generated_model(trained, inputs, tmp_path, name):
    pytest.importorskip("keras")
    model = trained[name]
    path = ix.export_model(model.program, model.variables, "keras", tmp_path / "m.weights.h5")
    k = _exec(ix.model_code(model.program, "keras", weights=str(path)))["model"]
    assert _max_diff(k.predict(inputs, verbose=0), model.predict_logits(inputs)) < TOL


def test_keras3_file_layout_and_probabilities(trained, inputs, tmp_path):
    pytest.importorskip("keras")
    model = trained["bn_prelu_elu_dropout"]
    path = ix.export_model(model.program, model.variables, "keras", tmp_path / "p.weights.h5", probabilities=True)
    with h5py.File(path) as f:  # keyed by class and occurrence, as Keras writes
        assert f["layers/dense_1/vars"].attrs["name"] == "dnn_hidden2"
        np.testing.assert_array_equal(f["layers/batch_normalization/vars/2"][()], model.variables["dnn/bn/moving_mean"])
        np.testing.assert_array_equal(f["layers/p_re_lu/vars/0"][()], model.variables["dnn/hidden1/alpha"])
    k = _exec(ix.model_code(model.program, "keras", weights=str(path), probabilities=True))["model"]
    bn = k.get_layer("dnn_bn")
    assert (bn.momentum, bn.epsilon) == (0.8, 1e-3)  # Keras' momentum convention is dnnspec's
    assert k.get_layer("dnn_dropout").rate == 0.3
    probs = k.predict(inputs, verbose=0)
    assert _max_diff(probs, model.predict(inputs)) < TOL
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_keras_config_json_rebuilds_the_model(trained, inputs, tmp_path):
    keras = pytest.importorskip("keras")
    from dnnspec.ckpt.interchange.keras import keras_config_json

    model = trained["maxout_selu_noise"]
    config = keras_config_json(model.program)
    assert json.loads(config)["class_name"] == "Sequential"
    k = keras.models.model_from_json(config)
    k.load_weights(ix.export_model(model.program, model.variables, "keras", tmp_path / "c.weights.h5"))
    assert _max_diff(k.predict(inputs, verbose=0), model.predict_logits(inputs)) < TOL


# ---------------------------------------------------------------- dnnspec -> legacy Keras 2 layout
def test_keras2_layout_is_the_legacy_one_and_keras_loads_it(trained, inputs, tmp_path):
    pytest.importorskip("keras")
    model = trained["bn_prelu_elu_dropout"]
    path = ix.export_model(model.program, model.variables, "keras2", tmp_path / "m.h5")
    with h5py.File(path) as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[:3] == ["dnn_hidden1", "dnn_hidden1_prelu", "dnn_bn"] and "dnn_dropout" in names
        assert [w.decode() for w in f["dnn_bn"].attrs["weight_names"]] == [
            "dnn_bn/gamma:0", "dnn_bn/beta:0", "dnn_bn/moving_mean:0", "dnn_bn/moving_variance:0"]
        np.testing.assert_array_equal(f["dnn_hidden1/dnn_hidden1/kernel:0"][()], model.variables["dnn/hidden1/kernel"])
        assert len(f["dnn_dropout"].attrs["weight_names"]) == 0
    code = ix.model_code(model.program, "keras2", weights=str(path))
    k = _exec(code)["model"]  # Keras 3 reads the legacy layout by layer order
    assert _max_diff(k.predict(inputs, verbose=0), model.predict_logits(inputs)) < TOL


def test_keras_file_names_are_checked(trained, tmp_path):
    model = trained["bn_prelu_elu_dropout"]
    with pytest.raises(UserError, match=r"\*\.weights\.h5"):
        ix.export_model(model.program, model.variables, "keras", tmp_path / "m.h5")
    with pytest.raises(UserError, match="must end in .h5"):
        ix.export_model(model.program, model.variables, "keras2", tmp_path / "m.weights.h5")


# ---------------------------------------------------------------- dnnspec -> PyTorch
@pytest.mark.parametrize("name", SPECS)
def test_torch_state_dict_loads_into_the_generated_sequential(trained, inputs, tmp_path, name):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    model = trained[name]
    path = ix.export_model(model.program, model.variables, "torch", tmp_path / "m.safetensors", step=model.step)
    net = _exec(ix.model_code(model.program, "torch", weights=str(path)))["model"]  # load_state_dict is strict
    with torch.no_grad():
        out = net(torch.from_numpy(inputs)).numpy()
    assert _max_diff(out, model.predict_logits(inputs)) < TOL


def test_torch_names_layouts_and_batch_counter(trained, tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    model = trained["bn_prelu_elu_dropout"]
    path = ix.export_model(model.program, model.variables, "torch", tmp_path / "m.safetensors", step=model.step)
    sd = load_file(str(path))
    v = model.variables
    np.testing.assert_array_equal(sd["0.weight"], v["dnn/hidden1/kernel"].T)  # Linear weight = kernel.T
    np.testing.assert_array_equal(sd["1.weight"], v["dnn/hidden1/alpha"])
    np.testing.assert_array_equal(sd["2.running_var"], v["dnn/bn/moving_variance"])
    assert sd["2.num_batches_tracked"].dtype == np.int64 and int(sd["2.num_batches_tracked"]) == 12  # 2 epochs x 6
    assert "3.weight" not in sd and "4.weight" in sd  # dropout is module 3, without parameters


def test_torch_batchnorm_keeps_updating_its_statistics_like_dnnspec(trained, inputs, tmp_path):
    """torch momentum = 1 - dnnspec's (Keras') momentum; torch averages the unbiased variance."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    model = trained["bn_prelu_elu_dropout"]  # batchnorm(momentum=0.8) after dense + prelu
    path = ix.export_model(model.program, model.variables, "torch", tmp_path / "m.safetensors", step=model.step)
    net = _exec(ix.model_code(model.program, "torch", weights=str(path)))["model"]
    with torch.no_grad():
        h = net[:2](torch.from_numpy(inputs))
        net[2].train()
        net[2](h)
    h = h.numpy().astype(np.float64)
    mm, mv = model.variables["dnn/bn/moving_mean"], model.variables["dnn/bn/moving_variance"]
    np.testing.assert_allclose(net[2].running_mean.numpy(), 0.8 * mm + 0.2 * h.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net[2].running_var.numpy(), 0.8 * mv + 0.2 * h.var(0, ddof=1), rtol=1e-5, atol=1e-6)
    assert int(net[2].num_batches_tracked) == 13


# ---------------------------------------------------------------- dnnspec -> ONNX
@pytest.mark.parametrize("variant", [{}, {"fold_batchnorm": True}, {"opset": 20, "probabilities": True}],
                         ids=["opset17", "folded", "opset20-probabilities"])
@pytest.mark.parametrize("name", SPECS)
def test_onnx_graph_runs_in_onnxruntime(trained, inputs, tmp_path, name, variant):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = trained[name]
    path = ix.export_model(model.program, model.variables, "onnx", tmp_path / "m.onnx", **variant)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": inputs})
    want = model.predict(inputs) if variant.get("probabilities") else model.predict_logits(inputs)
    assert _max_diff(out, want) < TOL
    ops = {n.op_type for n in __import__("onnx").load(str(path)).graph.node}
    assert "Dropout" not in ops
    if variant.get("fold_batchnorm"):
        assert "BatchNormalization" not in ops
    elif variant.get("opset") == 20 and name == "smooth_gates":
        assert "Gelu" in ops


# ---------------------------------------------------------------- NumPy
def test_npz_round_trip_by_scoped_name(trained, inputs, tmp_path):
    model = trained["maxout_selu_noise"]
    path = ix.export_model(model.program, model.variables, "npz", tmp_path / "m.npz")
    with np.load(path) as data:
        assert set(data.files) == set(model.variables)
    fresh = dnnspec.compile_text(SPECS["maxout_selu_noise"] + TRAIN)
    report = ix.import_into(fresh.program, fresh.variables, "npz", path)
    assert len(report.rows) == len(model.variables) and not report.unused
    assert _max_diff(fresh.predict_logits(inputs), model.predict_logits(inputs)) == 0.0


@pytest.mark.parametrize("fmt,file", [("keras", "m.weights.h5"), ("keras2", "m.h5"), ("torch", "m.safetensors")])
def test_export_then_import_is_exact(trained, inputs, tmp_path, fmt, file):
    if fmt == "torch":
        pytest.importorskip("safetensors")
    for name, model in trained.items():
        path = ix.export_model(model.program, model.variables, fmt, tmp_path / f"{name}-{file}", step=model.step)
        fresh = dnnspec.compile_text(SPECS[name] + TRAIN)
        ix.import_into(fresh.program, fresh.variables, fmt, path)
        for var, value in model.variables.items():
            np.testing.assert_array_equal(fresh.variables[var], value, err_msg=f"{name}: {var}")


# ---------------------------------------------------------------- Keras -> dnnspec
KERAS_SOURCE_SPEC = """
model k {
    input x[6]
    scope dnn {
        dense hidden1(16)
        batchnorm bn
        prelu
        dropout(0.3)
        dense hidden2(12, activation=elu)
        dense outputs(3)
    }
}
"""


@pytest.fixture(scope="module")
def keras_trained():
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    L = keras.layers
    net = keras.Sequential([keras.Input((6,)), L.Dense(16), L.BatchNormalization(), L.PReLU(), L.Dropout(0.3),
                            L.Dense(12, activation="elu"), L.Dense(3)])
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(96, 6)).astype(np.float32), rng.integers(0, 3, 96)
    net.compile(optimizer=keras.optimizers.Adam(0.02),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return net


def test_a_keras_trained_model_predicts_the_same_here(keras_trained, inputs, tmp_path):
    path = tmp_path / "k.weights.h5"
    keras_trained.save_weights(path)
    model = dnnspec.compile_text(KERAS_SOURCE_SPEC + TRAIN)
    report = ix.import_into(model.program, model.variables, "keras", path)
    assert report.mapping()["layers/batch_normalization/vars/3"] == "dnn/bn/moving_variance"
    assert report.mapping()["layers/dense_2/vars/0"] == "dnn/outputs/kernel"
    assert np.abs(model.variables["dnn/bn/moving_mean"]).max() > 1e-3  # Keras' training moved them
    assert _max_diff(model.predict_logits(inputs), keras_trained.predict(inputs, verbose=0)) < TOL
    keras_trained.save(tmp_path / "k.keras")  # the whole-model archive holds the same weights file
    again = dnnspec.compile_text(KERAS_SOURCE_SPEC + TRAIN)
    report = ix.import_into(again.program, again.variables, "keras", tmp_path / "k.keras")
    assert any("optimizer state" in n for n in report.notes) and not report.unused
    for n, v in model.variables.items():
        np.testing.assert_array_equal(again.variables[n], v)


def test_a_keras_legacy_h5_file_imports(keras_trained, inputs, tmp_path):
    try:  # Keras 3 still writes the legacy layout, with weight names like sequential/dense/kernel
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    except ImportError:
        pytest.skip("this Keras has no legacy HDF5 writer")
    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, keras_trained)
    model = dnnspec.compile_text(KERAS_SOURCE_SPEC + TRAIN)
    report = ix.import_into(model.program, model.variables, "keras2", path)
    assert any("legacy" in n for n in report.notes)
    assert _max_diff(model.predict_logits(inputs), keras_trained.predict(inputs, verbose=0)) < TOL


def test_keras_import_of_lower_layers_only_then_frozen(keras_trained, inputs, tmp_path):
    path = tmp_path / "k.weights.h5"
    keras_trained.save_weights(path)
    spec = KERAS_SOURCE_SPEC.replace("dense outputs(3)", "dense outputs(4)") + TRAIN + '\nfreeze "dnn/hidden1|dnn/bn"\n'
    model = dnnspec.compile_text(spec)
    init_out = model.variables["dnn/outputs/kernel"].copy()
    with pytest.raises(CheckpointError, match=r"file tensors with no place in the spec: .*layers/dense_2/vars/0"):
        ix.import_into(model.program, model.variables, "keras", path, scope="dnn/(hidden1|bn)/")  # strict
    report = ix.import_into(model.program, model.variables, "keras", path, scope="dnn/(hidden1|bn)/", partial=True)
    assert {r.target for r in report.rows} == {"dnn/hidden1/kernel", "dnn/hidden1/bias", "dnn/bn/gamma",
                                               "dnn/bn/beta", "dnn/bn/moving_mean", "dnn/bn/moving_variance"}
    assert "dnn/outputs/kernel" in report.kept and "layers/dense_2/vars/0" in report.unused
    np.testing.assert_array_equal(model.variables["dnn/outputs/kernel"], init_out)
    np.testing.assert_array_equal(model.variables["dnn/hidden1/kernel"], keras_trained.layers[0].kernel.numpy())
    before = {n: model.variables[n].copy() for n in ("dnn/hidden1/kernel", "dnn/bn/moving_mean")}
    model.fit(inputs, np.arange(len(inputs)) % 4, epochs=1)
    for n, v in before.items():
        np.testing.assert_array_equal(model.variables[n], v)


# ---------------------------------------------------------------- PyTorch -> dnnspec
TORCH_SOURCE_SPEC = KERAS_SOURCE_SPEC.replace("batchnorm bn", "batchnorm bn(epsilon=1e-5)")


@pytest.mark.parametrize("shared_slope", [True, False], ids=["PReLU()", "PReLU(16)"])
def test_a_torch_trained_model_predicts_the_same_here(inputs, tmp_path, shared_slope):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.PReLU(1 if shared_slope else 16), nn.Dropout(0.3),
                        nn.Linear(16, 12), nn.ELU(), nn.Linear(12, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    path = tmp_path / "t.safetensors"
    st.save_file(net.state_dict(), str(path))
    model = dnnspec.compile_text(TORCH_SOURCE_SPEC + TRAIN)
    report = ix.import_into(model.program, model.variables, "torch", path)
    rows = {r.source: r for r in report.rows}
    assert rows["0.weight"].target == "dnn/hidden1/kernel" and rows["0.weight"].transposed
    assert rows["1.running_var"].target == "dnn/bn/moving_variance" and not rows["1.running_var"].transposed
    assert ("one shared slope" in rows["2.weight"].note) == shared_slope
    assert "1.num_batches_tracked (not needed)" in report.ignored and not report.unused
    with torch.no_grad():
        want = net(torch.from_numpy(inputs)).numpy()
    assert _max_diff(model.predict_logits(inputs), want) < TOL


def test_a_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    path = tmp_path / "t.safetensors"
    st.save_file({"0.weight": rng.normal(size=(16, 6)).astype(np.float32), "0.bias": np.zeros(16, np.float32)},
                 str(path))
    model = dnnspec.compile_text("model m {\n input x[6]\n dense hidden(8)\n}\n" + TRAIN)
    before = model.variables["hidden/kernel"].copy()
    with pytest.raises(CheckpointError) as e:
        ix.import_into(model.program, model.variables, "torch", path)
    message = str(e.value)
    assert "'0.weight'" in message and "(16, 6)" in message and "(6, 16)" in message and "(6, 8)" in message
    assert "'hidden/kernel'" in message
    np.testing.assert_array_equal(model.variables["hidden/kernel"], before)  # nothing half-imported


def _dense_stack(widths) -> dnnspec.Model:
    body = "\n".join(f"    dense d{i}({w})" for i, w in enumerate(widths, 1))
    return dnnspec.compile_text(f"model s {{\n    input x[6]\n{body}\n}}\n" + TRAIN)


def test_missing_layers_and_bad_scopes_are_clear_errors(tmp_path):
    source = _dense_stack([8, 8, 8])
    three = ix.export_model(source.program, source.variables, "keras", tmp_path / "three.weights.h5")
    four = _dense_stack([8, 8, 8, 3])
    with pytest.raises(CheckpointError, match=r"op 'd4' is dense layer #4 of the spec, but the source has only 3"):
        ix.import_into(four.program, four.variables, "keras", three)
    report = ix.import_into(four.program, four.variables, "keras", three, scope="d[123]/")  # lower layers only: fine
    assert report.kept == ["d4/kernel", "d4/bias"]
    with pytest.raises(UserError, match="matches no variable"):
        ix.import_into(four.program, four.variables, "keras", three, scope="encoder/")
    with pytest.raises(UserError, match="invalid scope pattern"):
        ix.import_into(four.program, four.variables, "keras", three, scope="d(")


# ---------------------------------------------------------------- extras and imports
def test_a_missing_extra_says_which_to_install(trained, tmp_path, monkeypatch):
    model = trained["bn_prelu_elu_dropout"]
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(UserError, match=r"exporting to onnx needs the 'onnx' extra: pip install 'dnnspec\[onnx\]'"):
        ix.export_model(model.program, model.variables, "onnx", tmp_path / "m.onnx")
    with pytest.raises(UserError, match=r"pip install 'dnnspec\[torch\]'"):
        ix.export_model(model.program, model.variables, "torch", tmp_path / "m.safetensors", step=model.step)
    from dnnspec.ckpt.interchange.keras import keras_config_json

    with pytest.raises(UserError, match=r"pip install 'dnnspec\[keras\]'"):
        keras_config_json(model.program)
    ix.export_model(model.program, model.variables, "keras", tmp_path / "m.weights.h5")  # only h5py needed


def test_dnnspec_imports_no_optional_library():
    code = ("import sys, dnnspec.ckpt.interchange as ix, dnnspec.cli.interchange\n"
            "from dnnspec.ckpt.interchange import keras, torch, onnx, npz\n"
            "bad = [m for m in ('keras', 'torch', 'onnx', 'onnxruntime', 'safetensors') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


# ---------------------------------------------------------------- the CLI
def test_cli_export_and_import(trained, inputs, tmp_path):
    from dnnspec.cli.interchange import export_cmd, import_cmd

    model = trained["bn_prelu_elu_dropout"]
    ckpt = model.save(tmp_path / "a.h5")
    runner = CliRunner()
    out = tmp_path / "a.weights.h5"
    r = runner.invoke(export_cmd, [str(ckpt), "--to", "keras", "-o", str(out), "--code"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and "model.load_weights(" in (tmp_path / "a.keras.py").read_text()
    spec = tmp_path / "a.dnn"
    spec.write_text(SPECS["bn_prelu_elu_dropout"] + TRAIN)
    args = [str(out), "--spec", str(spec), "-o", str(tmp_path / "b.h5"), "--scope", "dnn/hidden"]
    r = runner.invoke(import_cmd, args)
    assert r.exit_code == 1 and "--partial" in r.output  # the file's bn and outputs layers have no place
    r = runner.invoke(import_cmd, [*args, "--partial"])
    assert r.exit_code == 0, r.output
    assert "layers/dense/vars/0" in r.output and "-> dnn/hidden1/kernel" in r.output
    assert "kept as initialized" in r.output
    again = dnnspec.load_checkpoint(tmp_path / "b.h5")
    np.testing.assert_array_equal(again.variables["dnn/hidden2/kernel"], model.variables["dnn/hidden2/kernel"])
    assert not np.array_equal(again.variables["dnn/bn/moving_mean"], model.variables["dnn/bn/moving_mean"])
    r = runner.invoke(import_cmd, [str(out), "--spec", str(spec), "-o", str(tmp_path / "c.h5"), "--scope", "nothing"])
    assert r.exit_code == 1 and "error: scope 'nothing' matches no variable" in r.output
    r = runner.invoke(export_cmd, [str(ckpt), "--to", "onnx", "-o", str(tmp_path / "a.onnx"), "--code"])
    assert r.exit_code == 1 and "--code" in r.output
