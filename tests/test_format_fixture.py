"""Format stability: the committed version-1 checkpoint must keep loading, with the same outputs.

tests/fixtures/ckpt_v1.h5 was written once by tests/fixtures/make_ckpt_v1.py when format
version 1 was current; ckpt_v1_expected.npz holds inputs and the predictions of the model then.
Never regenerate them to make this test pass: a failure means old checkpoints stopped loading.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import dnnspec
from dnnspec.ckpt import hdf5, tools

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CKPT = FIXTURES / "ckpt_v1.h5"
NAMES = ["dnn/hidden1/kernel", "dnn/hidden1/bias", "dnn/bn1/gamma", "dnn/bn1/beta", "dnn/bn1/moving_mean",
         "dnn/bn1/moving_variance", "dnn/outputs/kernel", "dnn/outputs/bias"]


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURES / "ckpt_v1_expected.npz") as z:
        return {k: z[k] for k in z.files}


def test_fixture_is_small_and_version_1():
    assert CKPT.stat().st_size < 100_000
    with h5py.File(CKPT, "r") as f:
        assert f.attrs["format"] == "dnnspec" and int(f.attrs["format_version"]) == 1


def test_version_1_checkpoint_gives_the_stored_predictions(expected):
    model = dnnspec.load_checkpoint(CKPT)
    np.testing.assert_allclose(model.predict(expected["inputs"]), expected["probabilities"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.predict_logits(expected["inputs"]), expected["logits"], rtol=0, atol=1e-6)


def test_stored_predictions_follow_from_the_stored_weights(expected):
    """An independent float64 forward pass over the raw HDF5 datasets (no dnnspec code): dense with a
    (fan_in, fan_out) kernel, ReLU, batch norm in inference mode (eps 1e-3 inside the sqrt, as the
    spec says), dense, softmax. Checks both the fixture and what the v1 layout means."""
    with h5py.File(CKPT, "r") as f:
        v = {n: f["variables"][n][()].astype(np.float64) for n in NAMES}
    x = expected["inputs"].astype(np.float64)
    h = np.maximum(x @ v["dnn/hidden1/kernel"] + v["dnn/hidden1/bias"], 0.0)
    h = (h - v["dnn/bn1/moving_mean"]) / np.sqrt(v["dnn/bn1/moving_variance"] + 1e-3)
    h = h * v["dnn/bn1/gamma"] + v["dnn/bn1/beta"]
    z = h @ v["dnn/outputs/kernel"] + v["dnn/outputs/bias"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(expected["logits"], z, rtol=0, atol=1e-5)
    np.testing.assert_allclose(expected["probabilities"], p, rtol=0, atol=1e-5)


def test_version_1_training_state_and_collections_load():
    model = dnnspec.load_checkpoint(CKPT)
    c = hdf5.load(CKPT)
    assert list(c.variables) == NAMES
    assert c.optimizer["name"] == "momentum" and c.optimizer["step"] == 6
    assert set(c.optimizer["slots"]["b"]) == {n for n in NAMES if "moving" not in n}
    assert model.trainer.updater.t == 6 and len(model.history) == 2 == c.state["epoch"]
    assert c.collections == {"important": ["x", "dnn/hidden1", "dnn/outputs/kernel", "accuracy"]}
    assert [n for n, _ in model.collection("important")] == [
        "x", "dnn/hidden1/kernel", "dnn/hidden1/bias", "dnn/outputs/kernel", "accuracy"]
    for n in NAMES:
        assert model.variables[n].tobytes() == c.variables[n].value.tobytes()


def test_version_1_layout_is_as_documented():
    with h5py.File(CKPT, "r") as f:
        assert f["variables/dnn/hidden1/kernel"].shape == (4, 5) and f["variables/dnn/hidden1/kernel"].fletcher32
        assert json.loads(f["variables"].attrs["order"]) == NAMES
        assert not bool(f["variables/dnn/bn1/moving_mean"].attrs["trainable"])
        assert f["optimizer/slots/b/dnn/outputs/kernel"].shape == (5, 3)
        assert json.loads(f["state"].attrs["epoch"]) == 2
        assert len(f["history/loss"]) == 2


def test_version_1_fixture_verifies_clean():
    assert tools.verify(CKPT) == []
