"""ONNX import: dnnspec's own exports and torch.onnx.export's graphs of MLPs read back with the
`onnx` package, checked against onnxruntime's outputs; anything else refused naming the node."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec.ckpt import interchange as ix
from dnnspec.errors import UserError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
TRAIN = "\ntrain {\n    loss softmax_cross_entropy\n    optimizer adam(lr=0.02)\n    batch 16\n    seed 3\n}\n"
INPUTS = (np.random.default_rng(1).normal(size=(40, 6)) * 2.0).astype(np.float32)
DEVIATIONS: dict[str, float] = {}  # measured, printed at the end (-s)


def _runtime(path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: INPUTS})
    return out


def _write_spec(path, tmp_path, *extra) -> tuple[dnnspec.Model, str]:
    from dnnspec.cli import main

    spec, ckpt = tmp_path / f"{path.stem}.dnn", tmp_path / f"{path.stem}.h5"
    r = CliRunner().invoke(main, ["ckpt", "import", str(path), "--write-spec", str(spec), "-o", str(ckpt), *extra])
    assert r.exit_code == 0, r.output
    return dnnspec.load_checkpoint(ckpt), r.output


def _outputs(model: dnnspec.Model, probabilities: bool) -> np.ndarray:
    return model.predict(INPUTS) if probabilities else model.predict_logits(INPUTS)


# ---------------------------------------------------------------- dnnspec's own exports
@pytest.fixture(scope="module")
def trained():
    from test_interchange import SPECS, _train

    return {name: (_train(spec), spec) for name, spec in SPECS.items()}


@pytest.mark.parametrize("variant", [{}, {"fold_batchnorm": True}, {"opset": 20, "probabilities": True}],
                         ids=["opset17", "folded", "opset20-probabilities"])
@pytest.mark.parametrize("name", ["bn_prelu_elu_dropout", "maxout_selu_noise", "smooth_gates"])
def test_dnnspec_exports_import_back(trained, tmp_path, name, variant):
    model, text = trained[name]
    path = ix.export_model(model.program, model.variables, "onnx", tmp_path / f"{name}.onnx", **variant)
    want = _runtime(path)
    probabilities = bool(variant.get("probabilities"))
    assert np.abs(_outputs(model, probabilities) - want).max() < TOL
    back, output = _write_spec(path, tmp_path)  # the spec the graph records, and its weights
    got = _outputs(back, probabilities)  # a final softmax became the loss's output function
    label = ",".join(f"{k}={v}" for k, v in variant.items()) or "opset=17"
    DEVIATIONS[f"dnnspec {name} {label}"] = float(np.abs(got - want).max())
    assert np.abs(got - want).max() < TOL
    if not variant:  # unfolded: the original spec takes the graph's weights, one to one
        fresh = dnnspec.compile_text(text + TRAIN)
        report = ix.import_into(fresh.program, fresh.variables, "onnx", path)
        assert "the ONNX graph" in report.pairing
        for var, value in model.variables.items():
            np.testing.assert_array_equal(fresh.variables[var], value, err_msg=var)


def test_the_written_spec_of_a_dnnspec_export_keeps_names_and_batchnorm(trained, tmp_path):
    model, _ = trained["maxout_selu_noise"]
    path = ix.export_model(model.program, model.variables, "onnx", tmp_path / "b.onnx")
    back, output = _write_spec(path, tmp_path)
    kinds = [op.kind for op in back.program.ops]
    assert kinds[:2] == ["maxout", "batchnorm"] and "alpha_dropout" not in kinds
    bn = next(op for op in back.program.ops if op.kind == "batchnorm").build()
    assert (bn.momentum, bn.epsilon) == (0.7, 1e-5)
    assert "dnn/m1/kernel" in back.variables and "dnn/hidden2/kernel" in back.variables
    assert "holds no dropout" in output


# ---------------------------------------------------------------- torch.onnx.export of MLPs
def _torch_mlps():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    nets = {
        "bn": nn.Sequential(nn.Flatten(), nn.Linear(6, 16), nn.BatchNorm1d(16, momentum=0.2), nn.ReLU(),
                            nn.Dropout(0.2), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Linear(12, 3)),
        "prelu": nn.Sequential(nn.Linear(6, 16), nn.PReLU(), nn.Linear(16, 12), nn.PReLU(12), nn.Linear(12, 3),
                               nn.Softmax(dim=1)),
        "gelu": nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 12), nn.GELU(approximate="tanh"),
                              nn.Linear(12, 8, bias=False), nn.SiLU(), nn.Linear(8, 8), nn.Softplus(), nn.ELU(0.5),
                              nn.LeakyReLU(0.2), nn.Linear(8, 8), nn.SELU(), nn.Sigmoid(), nn.Linear(8, 3)),
    }
    for net in nets.values():  # move the batch-norm statistics and PReLU slopes off their initial values
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(32, 6) * 3 + 1)
            for m in net.modules():
                if isinstance(m, nn.PReLU):
                    m.weight.uniform_(0.05, 0.5)
        net.eval()
    return torch, nets


@pytest.fixture(scope="module")
def mlps():
    return _torch_mlps()


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", ["bn", "prelu", "gelu"])
def test_torch_legacy_exports_import(mlps, tmp_path, name, opset):
    torch, nets = mlps
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nets[name], (torch.from_numpy(INPUTS[:4]),), str(path), dynamo=False, opset_version=opset,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    want = _runtime(path)
    back, _ = _write_spec(path, tmp_path)
    got = _outputs(back, probabilities=name == "prelu")  # it ends in Softmax
    DEVIATIONS[f"torch legacy {name} opset{opset}"] = float(np.abs(got - want).max())
    assert np.abs(got - want).max() < TOL
    kinds = [op.kind for op in back.program.ops]
    if name == "gelu" and opset == 13:  # GELU as Erf arithmetic, the tanh form as Tanh arithmetic
        assert kinds.count("gelu") == 2 and "swish" in kinds and "softplus" in kinds and "selu" in kinds
        gelus = [op.build().approximate for op in back.program.ops if op.kind == "gelu"]
        assert gelus == [False, True]
    if name == "bn":
        bn = [op.build() for op in back.program.ops if op.kind == "batchnorm"]
        assert [(b.momentum, b.epsilon) for b in bn] == [(0.8, 1e-5), (0.9, 1e-5)]  # torch momentum 0.2, 0.1


def test_torch_default_exporter(mlps, tmp_path):
    pytest.importorskip("onnxscript")  # torch.onnx.export's default (dynamo) exporter needs it
    torch, nets = mlps
    for name, net in nets.items():
        path = tmp_path / f"{name}-dynamo.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.from_numpy(INPUTS[:4]),), str(path), input_names=["x"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        want = _runtime(path)
        back, _ = _write_spec(path, tmp_path)
        got = _outputs(back, probabilities=name == "prelu")
        DEVIATIONS[f"torch dynamo {name}"] = float(np.abs(got - want).max())
        assert np.abs(got - want).max() < TOL


# ---------------------------------------------------------------- what is refused
def _graph(tmp_path, nodes, inits, out_width=3, name="g.onnx"):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", out_width])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


W = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)


@pytest.mark.parametrize("case", ["mish", "logsoftmax", "transpose", "hardswish"])
def test_unsupported_nodes_are_named(tmp_path, case):
    from onnx import helper

    gemm = helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="dense_in")
    if case == "mish":  # x * tanh(softplus(x)): elementwise, but no dnnspec activation
        nodes = [gemm, helper.make_node("Softplus", ["h"], ["sp"], name="mish/sp"),
                 helper.make_node("Tanh", ["sp"], ["t"], name="mish/tanh"),
                 helper.make_node("Mul", ["h", "t"], ["y"], name="mish/mul")]
        first = "node 'mish/sp' (Softplus)"
    elif case == "logsoftmax":
        nodes = [gemm, helper.make_node("LogSoftmax", ["h"], ["y"], name="out", axis=1)]
        first = "node 'out' (LogSoftmax)"
    elif case == "transpose":
        nodes = [gemm, helper.make_node("Relu", ["h"], ["r"], name="act"),
                 helper.make_node("Transpose", ["r"], ["y"], name="tr", perm=[1, 0])]
        first = "node 'tr' (Transpose)"
    else:
        nodes = [gemm, helper.make_node("HardSwish", ["h"], ["y"], name="hs")]
        first = "node 'hs' (HardSwish)"
    path = _graph(tmp_path, nodes, {"W": W, "b": np.zeros(3)})
    model = dnnspec.compile_text("model m {\n    input x[6]\n    dense d(3)\n}\n" + TRAIN)
    with pytest.raises(UserError) as info:
        ix.import_into(model.program, model.variables, "onnx", path)
    assert first in str(info.value) and str(path) in str(info.value)


def test_onnx_is_told_from_the_file_name_and_imports_into_a_spec(tmp_path):
    from onnx import helper

    path = _graph(tmp_path, [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="dense_in")],
                  {"W": W, "b": np.arange(3)})
    assert ix.guess_format(path, ix.IMPORT_FORMATS) == "onnx"
    spec = tmp_path / "m.dnn"
    spec.write_text("model m {\n    input x[6]\n    dense d(3)\n}\n" + TRAIN)
    from dnnspec.cli import main

    r = CliRunner().invoke(main, ["ckpt", "import", str(path), "--spec", str(spec), "-o", str(tmp_path / "m.h5")])
    assert r.exit_code == 0, r.output
    model = dnnspec.load_checkpoint(tmp_path / "m.h5")
    np.testing.assert_array_equal(model.variables["d/kernel"], W)
    np.testing.assert_array_equal(model.variables["d/bias"], np.arange(3, dtype=np.float32))
    assert np.abs(model.predict_logits(INPUTS) - _runtime(path)).max() < TOL


def test_onnx_weights_are_read_with_onnx_not_the_runtime(tmp_path, monkeypatch):
    import sys

    from onnx import helper

    path = _graph(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
                  {"W": W, "b": np.ones(3)})
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # importing it now fails
    model = dnnspec.compile_text("model m {\n    input x[6]\n    dense d(3)\n}\n" + TRAIN)
    report = ix.import_into(model.program, model.variables, "onnx", path)
    assert report.mapping() == {"W": "d/kernel", "b": "d/bias"}


def test_a_damaged_onnx_file_is_a_clean_error(trained, tmp_path):
    from test_interchange import SPECS

    model, _ = trained["bn_prelu_elu_dropout"]
    path = ix.export_model(model.program, model.variables, "onnx", tmp_path / "m.onnx")
    data = path.read_bytes()
    fresh = dnnspec.compile_text(SPECS["bn_prelu_elu_dropout"] + TRAIN)
    failed = 0
    for i, cut in enumerate(range(0, len(data), max(1, len(data) // 60))):
        for name, damaged in ((f"t{i}.onnx", data[:cut]), (f"o{i}.onnx", data[:cut] + b"\xff" * 8 + data[cut + 8:])):
            bad = tmp_path / name
            bad.write_bytes(damaged)
            try:
                ix.import_into(fresh.program, fresh.variables, "onnx", bad)
            except UserError as e:
                assert str(e).startswith(f"{bad}: "), e
                failed += 1
            bad.unlink()
    assert failed > 30


def test_print_measured_deviations():
    """Run last (file order): the largest deviation from onnxruntime per case, for the record (-s)."""
    for case, value in sorted(DEVIATIONS.items()):
        print(f"{case:<45} {value:.3g}")
