"""`dnnspec ckpt import --write-spec`: a checked, formatted spec from what a model file records.

Shipped specs are exported to each format (Keras archives through Keras itself), imported back
with --write-spec, and the written spec with its checkpoint must predict what the original did,
pass `dnnspec fmt --check`, and work with `dnnspec eval` and `run --reuse` at once.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec.ckpt import interchange as ix

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning",
                                        "ignore:You are saving your model as an HDF5 file")
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["quickstart.dnn", "mnist_bn_elu.dnn"]  # batch norm + ELU (+ dropout); the second 784 -> 300 -> 100 -> 10
TOL = 1e-5
DEVIATIONS: dict[str, float] = {}


def _cli(*args, cwd=None):
    from dnnspec.cli import main

    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


def _randomized(name: str) -> dnnspec.Model:
    """The shipped spec with weights and batch-norm statistics that are not their initial values."""
    model = dnnspec.compile_file(ROOT / "specs" / name, apply_reuse=False)
    rng = np.random.default_rng(len(name))
    for var, value in model.variables.items():
        if var.endswith("moving_variance"):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
        elif var.endswith("gamma"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        else:
            value[...] = rng.normal(0.0, 0.3, value.shape)
    return model


@pytest.fixture(scope="module")
def shipped():
    return {name: _randomized(name) for name in SHIPPED}


def _inputs(model) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(32, model.program.input_width)).astype(np.float32)


def _export(model, fmt: str, folder: Path) -> Path:
    """A file of `fmt` that records the model: dnnspec's own export, or Keras' own archives."""
    if fmt in ("torch", "onnx"):
        pytest.importorskip({"torch": "safetensors", "onnx": "onnx"}[fmt])
        suffix = ix.FORMATS[fmt].suffix
        return ix.export_model(model.program, model.variables, fmt, folder / f"m{suffix}", step=model.step)
    keras = pytest.importorskip("keras")
    from dnnspec.ckpt.interchange.keras import keras_config_json

    net = keras.models.model_from_json(keras_config_json(model.program))
    net.load_weights(ix.export_model(model.program, model.variables, "keras", folder / "w.weights.h5"))
    path = folder / ("m.keras" if fmt == "keras" else "m.h5")
    net.save(path)  # a .keras archive (config.json) or a legacy whole-model .h5 (model_config)
    return path


@pytest.mark.parametrize("fmt", ["torch", "onnx", "keras", "keras2"])
@pytest.mark.parametrize("name", SHIPPED)
def test_write_spec_round_trip(shipped, tmp_path, name, fmt):
    model = shipped[name]
    path = _export(model, fmt, tmp_path)
    spec, ckpt = tmp_path / "w.dnn", tmp_path / "w.h5"
    r = _cli("ckpt", "import", path, "--from", fmt, "--write-spec", spec, "-o", ckpt)
    assert r.exit_code == 0, r.output
    assert f"wrote {spec}" in r.output
    x = _inputs(model)
    back = dnnspec.load_checkpoint(ckpt)
    deviation = float(np.abs(back.predict_logits(x) - model.predict_logits(x)).max())
    DEVIATIONS[f"{name} via {fmt}"] = deviation
    assert deviation < TOL
    assert _cli("fmt", "--check", spec).exit_code == 0
    text = spec.read_text()
    assert text.startswith("# Written by `dnnspec ckpt import") and "batchnorm(momentum=0.9)" in text
    has_dropout = any(op.kind == "dropout" for op in model.program.ops)
    assert ("dropout(" in text) == (has_dropout and fmt != "onnx")  # ONNX inference graphs hold no dropout
    again = dnnspec.compile_file(spec)  # a checkpoint of the written spec restores strictly
    again.restore(__import__("dnnspec.ckpt.hdf5", fromlist=["load"]).load(ckpt), strict=True)
    if fmt == "torch":  # dnnspec's metadata keeps the scoped names
        assert set(back.variables) == set(model.variables)


def test_written_spec_evaluates_and_trains_at_once(shipped, tmp_path):
    """With --spec the written spec takes its data and train settings: eval gives the original's numbers."""
    pytest.importorskip("safetensors")
    model = shipped["quickstart.dnn"]
    original = model.save(tmp_path / "orig.h5")
    path = _export(model, "torch", tmp_path)
    spec, ckpt = tmp_path / "w.dnn", tmp_path / "w.h5"
    r = _cli("ckpt", "import", path, "--write-spec", spec, "-o", ckpt, "--spec", ROOT / "specs" / "quickstart.dnn")
    assert r.exit_code == 0, r.output
    assert "differs" not in r.output and f"`dnnspec eval {spec} -c {ckpt}` evaluates it" in r.output
    text = spec.read_text()
    assert "data spirals = spirals(" in text and "let width" not in text  # the let only the model used
    ours = _cli("eval", spec, "-c", ckpt, "--json", "--split", "val")
    theirs = _cli("eval", ROOT / "specs" / "quickstart.dnn", "-c", original, "--json", "--split", "val")
    assert ours.exit_code == 0 and theirs.exit_code == 0, ours.output + theirs.output
    a, b = json.loads(ours.output)["val"], json.loads(theirs.output)["val"]
    assert abs(a["loss"] - b["loss"]) < 1e-5 and a["accuracy"] == b["accuracy"]
    r = _cli("run", spec, "--reuse", ckpt, "-q", "--set", "train.epochs=1", "--json", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "loaded" in r.output or json.loads(r.output.strip().splitlines()[-1])["epochs_run"] == 1


def test_a_file_without_a_model_needs_the_spec(shipped, tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import load_file, save_file

    model = shipped["quickstart.dnn"]
    exported = _export(model, "torch", tmp_path)
    plain = tmp_path / "plain.safetensors"
    save_file(load_file(str(exported)), str(plain))  # a user's state_dict: no metadata
    r = _cli("ckpt", "import", plain, "--write-spec", tmp_path / "w.dnn", "-o", tmp_path / "w.h5")
    assert r.exit_code == 1 and "no activations" in r.output and "--spec SPEC" in r.output
    assert not (tmp_path / "w.dnn").exists() and not (tmp_path / "w.h5").exists()
    r = _cli("ckpt", "import", plain, "--write-spec", tmp_path / "w.dnn", "-o", tmp_path / "w.h5",
             "--spec", ROOT / "specs" / "quickstart.dnn")
    assert r.exit_code == 0, r.output
    assert "does not record the model" in r.output and "nn.Sequential indices" in r.output
    assert _cli("fmt", "--check", tmp_path / "w.dnn").exit_code == 0
    x = _inputs(model)
    assert np.abs(dnnspec.load_checkpoint(tmp_path / "w.h5").predict_logits(x) - model.predict_logits(x)).max() < TOL
    # the written spec is replaced only with --force, and a spec dnnspec did not write never
    r = _cli("ckpt", "import", plain, "--write-spec", tmp_path / "w.dnn", "-o", tmp_path / "v.h5",
             "--spec", ROOT / "specs" / "quickstart.dnn")
    assert r.exit_code == 1 and "w.dnn exists" in r.output and "--force" in r.output
    mine = tmp_path / "mine.dnn"
    mine.write_text((ROOT / "specs" / "quickstart.dnn").read_text())
    r = _cli("ckpt", "import", plain, "--write-spec", mine, "-o", tmp_path / "v.h5", "--force",
             "--spec", ROOT / "specs" / "quickstart.dnn")
    assert r.exit_code == 1 and "not a spec dnnspec wrote" in r.output
    assert mine.read_text() == (ROOT / "specs" / "quickstart.dnn").read_text()


def test_config_and_spec_mismatches_are_all_named(tmp_path):
    keras = pytest.importorskip("keras")
    L = keras.layers
    net = keras.Sequential([keras.Input((6,)), L.Dense(16, activation="relu", name="hidden"),
                            L.BatchNormalization(epsilon=1e-3, name="bn"), L.Dropout(0.3, name="drop"),
                            L.Dense(3, name="out")])
    net.save(tmp_path / "k.keras")
    spec = tmp_path / "s.dnn"
    spec.write_text("model s {\n    input x[6]\n    dense h(16, use_bias=false, activation=elu)\n"
                    "    batchnorm(epsilon=1e-5)\n    dropout(0.5)\n    dense out(3)\n}\n")
    r = _cli("ckpt", "import", tmp_path / "k.keras", "--spec", spec, "-o", tmp_path / "s.h5")
    assert r.exit_code == 1 and not (tmp_path / "s.h5").exists()
    out = r.output
    assert "describe different models" in out
    assert "op 'h': use_bias=false in the spec, use_bias=true in Dense 'hidden'" in out
    assert "op 'h' is elu(alpha=1) in the spec, but Dense 'hidden' is relu" in out
    assert "epsilon=1e-05 in the spec, epsilon=0.001 in BatchNormalization 'bn'" in out
    # a matching spec imports; a dropout rate differs only in training: a note
    spec.write_text("model s {\n    input x[6]\n    dense h(16, activation=relu)\n    batchnorm\n    dropout(0.5)\n"
                    "    dense out(3)\n}\n")
    r = _cli("ckpt", "import", tmp_path / "k.keras", "--spec", spec, "-o", tmp_path / "s.h5")
    assert r.exit_code == 0, r.output
    assert "differs only in training: op 'dropout': rate=0.5 in the spec, rate=0.3" in r.output


def test_a_keras2_model_config_is_read(tmp_path):
    """A whole-model Keras 2 .h5: model_config in Keras 2's own form (batch_input_shape, activation names)."""
    source = dnnspec.compile_text("model k {\n    input x[6]\n    dense d1(8)\n    dense d2(3)\n}\n")
    path = ix.export_model(source.program, source.variables, "keras2", tmp_path / "k2.h5")
    layers = [{"class_name": "Dense", "config": {"name": "d1", "units": 8, "activation": "selu", "use_bias": True,
                                                 "batch_input_shape": [None, 6]}},
              {"class_name": "LeakyReLU", "config": {"name": "leaky", "alpha": 0.3}},
              {"class_name": "Dense", "config": {"name": "d2", "units": 3, "activation": "softmax",
                                                 "use_bias": True}}]
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "k2", "layers": layers}})
        names = [n.decode() for n in f.attrs["layer_names"]]
    assert names == ["d1", "d2"]  # dnnspec's keras2 export names layers after the ops
    r = _cli("ckpt", "import", path, "--write-spec", tmp_path / "k2.dnn", "-o", tmp_path / "k2.ckpt.h5")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "k2.dnn").read_text()
    assert "model k2 {" in text and "dense d1(8, activation=selu)" in text and "leaky_relu leaky(alpha=0.3)" in text
    assert "dense d2(3)" in text and "loss softmax_cross_entropy" in text and "ends in softmax" in r.output
    x = _inputs(source)
    back = dnnspec.load_checkpoint(tmp_path / "k2.ckpt.h5")
    h = x @ source.variables["d1/kernel"] + source.variables["d1/bias"]
    h = 1.0507009873554805 * np.where(h > 0, h, 1.6732632423543772 * np.expm1(np.minimum(h, 0)))
    h = np.where(h >= 0, h, 0.3 * h) @ source.variables["d2/kernel"] + source.variables["d2/bias"]
    assert np.abs(back.predict_logits(x) - h).max() < 1e-4


def test_unsupported_keras_layers_are_named(tmp_path):
    source = dnnspec.compile_text("model k {\n    input x[6]\n    dense d1(3)\n}\n")
    path = ix.export_model(source.program, source.variables, "keras2", tmp_path / "k.h5")
    layers = [{"class_name": "Dense", "config": {"name": "d1", "units": 3, "activation": "hard_sigmoid",
                                                 "batch_input_shape": [None, 6]}}]
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": layers}})
    r = _cli("ckpt", "import", path, "--write-spec", tmp_path / "k.dnn", "-o", tmp_path / "k.ckpt.h5")
    assert r.exit_code == 1 and "Dense 'd1': activation 'hard_sigmoid' has no dnnspec equivalent" in r.output
    spec = tmp_path / "s.dnn"
    spec.write_text("model k {\n    input x[6]\n    dense d1(3)\n}\n")
    r = _cli("ckpt", "import", path, "--spec", spec, "-o", tmp_path / "k.ckpt.h5")  # weights alone still import
    assert r.exit_code == 0 and "the model is not described" in r.output


def test_print_measured_deviations():
    for case, value in sorted(DEVIATIONS.items()):
        print(f"{case:<35} {value:.3g}")
