"""Importing is never a guess and never silent: layer order, strictness, NaN/Inf, file names.

Regression tests of the interchange issue: (1) a torch state_dict whose module names do not sort
in layer order, (2) leftover layers on either side, (5) non-finite weights, (6) `--code` files of
two formats overwriting each other, (7) a Keras config of `gelu(approximate=true)` that needed
`safe_mode=False`. Optional libraries are imported with pytest.importorskip.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import json
from collections import OrderedDict

import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec.ckpt import interchange as ix
from dnnspec.errors import CheckpointError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TRAIN = "\ntrain {\n    loss softmax_cross_entropy\n    seed 3\n}\n"
# three layers of equal shapes, named so that their sorted order is not the model's order
OUT_OF_ORDER = """
model m {
    input x[8]
    dense encoder(8, activation=tanh)
    dense decoder(8, activation=relu)
    dense head(8)
}
""" + TRAIN
INPUTS = np.random.default_rng(7).normal(size=(20, 8)).astype(np.float32)


def _cli(*args):
    from dnnspec.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def torch_net():
    """encoder -> tanh -> decoder -> relu -> head: named modules, as a user's nn.Module has them."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(encoder=nn.Linear(8, 8), act1=nn.Tanh(), decoder=nn.Linear(8, 8),
                                    act2=nn.ReLU(), head=nn.Linear(8, 8))).eval()
    with torch.no_grad():
        want = net(torch.from_numpy(INPUTS)).numpy()
    return net, want


def _save(net, path, metadata=None):
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(path), metadata=metadata)
    return path


# ---------------------------------------------------------------- 1. layer order
def test_modules_named_out_of_order_and_equal_shapes_are_refused_with_the_map_hint(torch_net, tmp_path):
    net, _ = torch_net
    path = _save(net, tmp_path / "net.safetensors")
    model = dnnspec.compile_text(OUT_OF_ORDER)
    before = {n: v.copy() for n, v in model.variables.items()}
    with pytest.raises(CheckpointError) as info:
        ix.import_into(model.program, model.variables, "torch", path)
    message = str(info.value)
    assert "does not state the order" in message and "--map SOURCE=OP" in message and "--map-file" in message
    assert "decoder" in message and "encoder" in message and "head" in message
    for n, v in model.variables.items():  # nothing half-imported
        np.testing.assert_array_equal(v, before[n])
    spec = tmp_path / "m.dnn"
    spec.write_text(OUT_OF_ORDER)
    r = _cli("ckpt", "import", path, "--spec", spec, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "--map" in r.output and not (tmp_path / "m.h5").exists()


def test_map_pairs_them_and_the_report_shows_it(torch_net, tmp_path):
    net, want = torch_net
    path = _save(net, tmp_path / "net.safetensors")
    spec = tmp_path / "m.dnn"
    spec.write_text(OUT_OF_ORDER)
    args = ["ckpt", "import", path, "--spec", spec, "-o", tmp_path / "m.h5", "--map", "encoder=encoder",
            "--map", "decoder=decoder", "--map", "head=head"]
    r = _cli(*args)
    assert r.exit_code == 0, r.output
    assert "--map: encoder=encoder, decoder=decoder, head=head" in r.output
    assert "encoder.weight -> encoder/kernel" in r.output.replace("  ", " ").replace("  ", " ")
    model = dnnspec.load_checkpoint(tmp_path / "m.h5")
    assert np.abs(model.predict_logits(INPUTS) - want).max() < 1e-5
    # the same from a file, naming the spec's ops by a scope holding them
    (tmp_path / "map.json").write_text(json.dumps({"encoder": "encoder", "decoder": "decoder"}))
    r = _cli("ckpt", "import", path, "--spec", spec, "-o", tmp_path / "n.h5", "--map-file", tmp_path / "map.json")
    assert r.exit_code == 0, r.output  # head is then the only one left: its shapes leave one assignment
    assert "by --map (2) and by shape" in r.output
    again = dnnspec.load_checkpoint(tmp_path / "n.h5")
    assert np.abs(again.predict_logits(INPUTS) - want).max() < 1e-5
    r = _cli("ckpt", "import", path, "--spec", spec, "-o", tmp_path / "o.h5", "--map", "encoder=nothing")
    assert r.exit_code == 1 and "no dense op of the spec is named 'nothing'" in r.output
    r = _cli("ckpt", "import", path, "--spec", spec, "-o", tmp_path / "o.h5", "--map", "encoder")
    assert r.exit_code == 1 and "give SOURCE=OP" in r.output


def test_an_order_the_file_states_is_used(torch_net, tmp_path):
    net, want = torch_net
    order = json.dumps(["encoder", "decoder", "head"])  # what dnnspec's own exports write
    path = _save(net, tmp_path / "net.safetensors", {"dnnspec_order": order})
    model = dnnspec.compile_text(OUT_OF_ORDER)
    report = ix.import_into(model.program, model.variables, "torch", path)
    assert report.mapping()["encoder.weight"] == "encoder/kernel" and "dnnspec's metadata" in report.pairing
    assert np.abs(model.predict_logits(INPUTS) - want).max() < 1e-5


def test_sequential_indices_state_the_order(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    nn = torch.nn
    torch.manual_seed(1)
    layers = [m for _ in range(11) for m in (nn.Linear(8, 8), nn.Tanh())]  # modules 0 .. 21: 2 < 10 < 20
    net = nn.Sequential(*layers[:-1]).eval()
    path = _save(net, tmp_path / "deep.safetensors")
    body = "\n".join(f"    dense d{i}(8{', activation=tanh' if i < 10 else ''})" for i in range(11))
    model = dnnspec.compile_text(f"model deep {{\n    input x[8]\n{body}\n}}\n" + TRAIN)
    report = ix.import_into(model.program, model.variables, "torch", path)
    assert "nn.Sequential indices" in report.pairing and report.mapping()["20.weight"] == "d10/kernel"
    with torch.no_grad():
        want = net(torch.from_numpy(INPUTS)).numpy()
    assert np.abs(model.predict_logits(INPUTS) - want).max() < 1e-5


def test_unordered_modules_with_telling_shapes_pair_by_shape(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(2)
    shapes = {"head": (3, 12), "encoder": (16, 6), "decoder": (12, 16)}  # (out, in) as torch stores them
    tensors = {f"{n}.{p}": rng.normal(size=s if p == "weight" else s[:1]).astype(np.float32)
               for n, s in shapes.items() for p in ("weight", "bias")}
    st.save_file(tensors, str(tmp_path / "t.safetensors"))
    model = dnnspec.compile_text("model m {\n    input x[6]\n    dense a(16)\n    dense b(12)\n    dense c(3)\n}\n"
                                 + TRAIN)
    report = ix.import_into(model.program, model.variables, "torch", tmp_path / "t.safetensors")
    assert report.mapping()["encoder.weight"] == "a/kernel" and report.mapping()["head.bias"] == "c/bias"
    assert "by shape" in report.pairing and "exactly one assignment" in report.pairing
    np.testing.assert_array_equal(model.variables["b/kernel"], tensors["decoder.weight"].T)


# ---------------------------------------------------------------- 2. strict by default, --partial
def _dense_stack(widths, prefix="d") -> dnnspec.Model:
    body = "\n".join(f"    dense {prefix}{i}({w})" for i, w in enumerate(widths, 1))
    return dnnspec.compile_text(f"model s {{\n    input x[6]\n{body}\n}}\n" + TRAIN)


@pytest.mark.parametrize("fmt,name", [("keras", "f.weights.h5"), ("keras2", "f.h5"), ("npz", "f.npz")])
def test_a_file_layer_the_spec_lacks_is_an_error_unless_partial(tmp_path, fmt, name):
    source = _dense_stack([8, 8, 3])
    path = ix.export_model(source.program, source.variables, fmt, tmp_path / name)
    smaller = _dense_stack([8, 8])
    before = {n: v.copy() for n, v in smaller.variables.items()}
    with pytest.raises(CheckpointError) as info:
        ix.import_into(smaller.program, smaller.variables, fmt, path)
    assert "--partial" in str(info.value) and "file tensors with no place in the spec" in str(info.value)
    assert ("d3" in str(info.value)) if fmt != "keras" else "layers/dense_2/vars/0" in str(info.value)
    for n, v in smaller.variables.items():
        np.testing.assert_array_equal(v, before[n])
    report = ix.import_into(smaller.program, smaller.variables, fmt, path, partial=True)
    assert len(report.rows) == 4 and len(report.unused) == 2
    assert "source tensors not imported (--partial)" in report.text()
    np.testing.assert_array_equal(smaller.variables["d2/kernel"], source.variables["d2/kernel"])


def test_a_spec_variable_the_file_lacks_is_an_error_unless_partial(tmp_path):
    source = _dense_stack([8, 8])
    path = ix.export_model(source.program, source.variables, "npz", tmp_path / "f.npz")
    bigger = _dense_stack([8, 8, 3])
    with pytest.raises(CheckpointError, match="no tensor 'd3/kernel'"):
        ix.import_into(bigger.program, bigger.variables, "npz", path)
    init = bigger.variables["d3/kernel"].copy()
    report = ix.import_into(bigger.program, bigger.variables, "npz", path, partial=True)
    assert report.unfilled == ["d3/kernel", "d3/bias"] and "kept as initialized (--partial" in report.text()
    np.testing.assert_array_equal(bigger.variables["d3/kernel"], init)
    keras_file = ix.export_model(source.program, source.variables, "keras", tmp_path / "f.weights.h5")
    report = ix.import_into(bigger.program, bigger.variables, "keras", keras_file, partial=True)
    assert report.unfilled == ["d3/kernel", "d3/bias"]


def test_cli_strict_and_partial(tmp_path):
    source = _dense_stack([8, 8, 3])
    path = ix.export_model(source.program, source.variables, "keras", tmp_path / "f.weights.h5")
    spec = tmp_path / "s.dnn"
    spec.write_text("model s {\n    input x[6]\n    dense d1(8)\n    dense d2(8)\n}\n" + TRAIN)
    r = _cli("ckpt", "import", path, "--spec", spec, "-o", tmp_path / "s.h5")
    assert r.exit_code == 1 and "layers/dense_2/vars/0, layers/dense_2/vars/1" in r.output
    assert not (tmp_path / "s.h5").exists()
    r = _cli("ckpt", "import", path, "--spec", spec, "-o", tmp_path / "s.h5", "--partial")
    assert r.exit_code == 0, r.output
    assert "source tensors not imported (--partial): layers/dense_2/vars/0, layers/dense_2/vars/1" in r.output


def test_keras_optimizer_state_is_not_a_leftover(tmp_path):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(3)])
    net.compile(optimizer="adam", loss="mse")
    net.fit(np.zeros((8, 6), np.float32), np.zeros((8, 3), np.float32), epochs=1, verbose=0)
    net.save(tmp_path / "k.keras")
    model = _dense_stack([4, 3])
    report = ix.import_into(model.program, model.variables, "keras", tmp_path / "k.keras")
    assert not report.unused and any("optimizer state" in n for n in report.notes)


# ---------------------------------------------------------------- 5. NaN and Inf
def test_non_finite_weights_are_refused_naming_the_tensor_and_the_count(tmp_path):
    source = _dense_stack([8, 3])
    source.variables["d1/kernel"][0, :3] = np.nan
    source.variables["d2/bias"][1] = np.inf
    path = ix.export_model(source.program, source.variables, "npz", tmp_path / "bad.npz")
    model = _dense_stack([8, 3])
    before = model.variables["d2/kernel"].copy()
    with pytest.raises(CheckpointError) as info:
        ix.import_into(model.program, model.variables, "npz", path)
    message = str(info.value)
    assert "'d1/kernel' holds 3 non-finite values (3 NaN, 0 Inf) of 48" in message
    assert "'d2/bias' holds 1 non-finite value (0 NaN, 1 Inf) of 3" in message and "--allow-nonfinite" in message
    np.testing.assert_array_equal(model.variables["d2/kernel"], before)
    keras_file = ix.export_model(source.program, source.variables, "keras", tmp_path / "bad.weights.h5")
    with pytest.raises(CheckpointError, match=r"'layers/dense/vars/0' holds 3 non-finite"):
        ix.import_into(model.program, model.variables, "keras", keras_file)
    spec = tmp_path / "s.dnn"
    spec.write_text(model.program.canonical)
    r = _cli("ckpt", "import", keras_file, "--spec", spec, "-o", tmp_path / "s.h5")
    assert r.exit_code == 1 and "non-finite" in r.output
    r = _cli("ckpt", "import", keras_file, "--spec", spec, "-o", tmp_path / "s.h5", "--allow-nonfinite")
    assert r.exit_code == 0, r.output
    assert np.isnan(dnnspec.load_checkpoint(tmp_path / "s.h5").variables["d1/kernel"][0, 0])


# ---------------------------------------------------------------- 6. --code files named after the format
def test_code_files_of_two_formats_do_not_collide(tmp_path):
    model = _dense_stack([8, 3])
    ckpt = model.save(tmp_path / "m.h5")
    outs = {"keras": "x.weights.h5", "keras2": "x.h5", "torch": "x.safetensors"}
    if not _has("safetensors"):
        del outs["torch"]
    for fmt, name in outs.items():
        r = _cli("ckpt", "export", ckpt, "--to", fmt, "-o", tmp_path / name, "--code")
        assert r.exit_code == 0, r.output
        code = (tmp_path / f"x.{fmt}.py").read_text()
        assert code.startswith("# The dnnspec model") and name in code
    assert not (tmp_path / "x.py").exists()
    (tmp_path / "x.weights.h5").unlink()  # the existing code file alone is refused (check_output)
    r = _cli("ckpt", "export", ckpt, "--to", "keras", "-o", tmp_path / "x.weights.h5", "--code")
    assert r.exit_code == 1 and "x.keras.py exists" in r.output and "--force" in r.output
    r = _cli("ckpt", "export", ckpt, "--to", "keras", "-o", tmp_path / "x.weights.h5", "--code", "--force")
    assert r.exit_code == 0, r.output


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------- 7. gelu(approximate=true) in a Keras config
def test_the_tanh_gelu_config_loads_in_safe_mode(tmp_path):
    keras = pytest.importorskip("keras")
    from dnnspec.ckpt.interchange.keras import keras_config_json

    model = dnnspec.compile_text("model g {\n    input x[6]\n    dense h(8, activation=gelu(approximate=true))\n"
                                 "    dense out(3)\n}\n" + TRAIN)
    config = keras_config_json(model.program)
    rebuilt = keras.saving.deserialize_keras_object(json.loads(config), safe_mode=True)
    again = keras.models.model_from_json(config)  # safe mode is its default
    weights = ix.export_model(model.program, model.variables, "keras", tmp_path / "g.weights.h5")
    x = INPUTS[:, :6] * 3
    for net in (rebuilt, again):
        net.load_weights(weights)
        assert np.abs(net.predict(x, verbose=0) - model.predict_logits(x)).max() < 1e-5
    lam = rebuilt.get_layer("h_gelu")
    assert lam.function is keras.activations.gelu and lam.arguments == {"approximate": True}
    assert "lambda x" not in ix.model_code(model.program, "keras")
