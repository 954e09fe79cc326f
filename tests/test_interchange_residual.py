"""Residual specs in the real libraries: Keras (a functional model with Add), PyTorch (a module
that adds) and onnxruntime (Add, and Mul by the survival probability) give dnnspec's inference
outputs; the importers refuse what they cannot pair with a clear error. Each library is
imported with pytest.importorskip."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import numpy as np
import pytest

import dnnspec
from dnnspec.ckpt import interchange as ix
from dnnspec.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TOL = 1e-5
SPEC = """
model r {
    input x[6]
    scope dnn {
        dense(8, activation=relu)
        residual block(survival=0.6) {
            dense(8, activation=elu)
            batchnorm(momentum=0.8)
            dense(8)
        }
        relu
        residual down(projection=true, survival=0.5, decay=none) {
            dense(5, activation=tanh)
            residual inner {
                batchnorm(momentum=0.8)
                dense(5)
            }
        }
        dense outputs(3)
    }
}
train {
    optimizer adam(lr=0.02)
    batch 16
    seed 3
}
"""


@pytest.fixture(scope="module")
def trained() -> dnnspec.Model:
    model = dnnspec.compile_text(SPEC)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, size=96), epochs=3)
    assert np.abs(model.variables["dnn/block/batchnorm/moving_mean"]).max() > 1e-2  # the statistics moved
    return model


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return (np.random.default_rng(1).normal(size=(40, 6)) * 2.0).astype(np.float32)


def _run(code: str) -> dict:
    scope: dict = {}
    exec(compile(code, "<generated>", "exec"), scope)
    return scope


def _max_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def test_a_stochastic_block_is_not_the_identity_at_inference(trained, inputs):
    # the test below would not see the scaling by p if the body contributed nothing
    add = next(op for op in trained.plan.ops if op.name == "dnn/block/add")
    assert add.survival < 1
    z = trained.plan.forward(inputs, False, stop=8)
    skip = trained.plan.forward(inputs, False, stop=2)
    assert _max_diff(z, skip) > 1e-2


@pytest.mark.parametrize("fmt,file", [("keras", "m.weights.h5"), ("keras2", "m.h5")])
def test_keras_functional_model_with_add(trained, inputs, tmp_path, fmt, file):
    pytest.importorskip("keras")
    path = ix.export_model(trained.program, trained.variables, fmt, tmp_path / file)
    code = ix.model_code(trained.program, fmt, weights=str(path))
    assert "keras.Model(inputs, h" in code and "layers.Add(" in code and "layers.Rescaling(" in code
    k = _run(code)["model"]
    assert [type(la).__name__ for la in k.layers].count("Add") == 3
    assert _max_diff(k.predict(inputs, verbose=0), trained.predict_logits(inputs)) < TOL


def test_keras_probabilities(trained, inputs, tmp_path):
    pytest.importorskip("keras")
    path = ix.export_model(trained.program, trained.variables, "keras", tmp_path / "p.weights.h5",
                           probabilities=True)
    k = _run(ix.model_code(trained.program, "keras", weights=str(path), probabilities=True))["model"]
    assert _max_diff(k.predict(inputs, verbose=0), trained.predict(inputs)) < TOL


def test_torch_module_that_adds(trained, inputs, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    path = ix.export_model(trained.program, trained.variables, "torch", tmp_path / "m.safetensors", step=trained.step)
    net = _run(ix.model_code(trained.program, "torch", weights=str(path)))["model"]  # strict load_state_dict
    with torch.no_grad():
        out = net(torch.from_numpy(inputs)).numpy()
    assert _max_diff(out, trained.predict_logits(inputs)) < TOL
    assert net[4].projection.weight.shape == (5, 8) and net[4].p == 0.5
    # training mode: the body runs with probability p per call, else only the skip is returned
    block = net[2]
    block.train()
    h = net[:2](torch.from_numpy(inputs)).detach()
    with torch.no_grad():
        outs = [block(h) for _ in range(200)]
    skipped = sum(bool(torch.equal(o, h)) for o in outs)
    assert 0 < skipped < 200


@pytest.mark.parametrize("variant", [{}, {"fold_batchnorm": True}, {"opset": 20, "probabilities": True}],
                         ids=["opset17", "folded", "opset20-probabilities"])
def test_onnx_graph_with_add(trained, inputs, tmp_path, variant):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = ix.export_model(trained.program, trained.variables, "onnx", tmp_path / "m.onnx", **variant)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": inputs})
    want = trained.predict(inputs) if variant.get("probabilities") else trained.predict_logits(inputs)
    assert _max_diff(out, want) < TOL
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Add") >= 3 and "MatMul" in ops and "Mul" in ops


@pytest.mark.parametrize("fmt,file", [("onnx", "m.onnx"), ("torch", "m.safetensors")])
def test_importing_into_a_residual_spec_is_a_clear_error(trained, tmp_path, fmt, file):
    pytest.importorskip("onnx" if fmt == "onnx" else "safetensors")
    path = ix.export_model(trained.program, trained.variables, fmt, tmp_path / file, step=trained.step)
    fresh = dnnspec.compile_text(SPEC)
    with pytest.raises(UserError, match="residual"):
        ix.import_into(fresh.program, fresh.variables, fmt, path)


def test_npz_by_variable_name_round_trips_a_residual_spec(trained, inputs, tmp_path):
    path = ix.export_model(trained.program, trained.variables, "npz", tmp_path / "m.npz")
    fresh = dnnspec.compile_text(SPEC)
    ix.import_into(fresh.program, fresh.variables, "npz", path)
    np.testing.assert_array_equal(fresh.predict_logits(inputs), trained.predict_logits(inputs))
